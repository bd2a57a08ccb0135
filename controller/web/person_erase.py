"""``POST /api/v1/admin/erase {"phone"|"person"}`` (role ``admin``): a person's erasure
(PIPL Art. 47; ``controller.services.persons.erase``). The answer and the export-log
entry name the person id, never the number."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from controller.services.admin import AdminError, resolve_person
from controller.services.persons import erase
from controller.web.auth import PRINCIPAL, requires
from controller.web.resources import ARCHIVE, CLOCK, LIVE, PERSON_KEY, STORE


@requires("admin")
async def handle_erase(request: web.Request) -> web.Response:
    app = request.app
    try:  # JSON is UTF-8 (RFC 8259 §8.1), whatever the charset parameter says
        args: Any = json.loads((await request.read()).decode("utf-8"))
    except (ValueError, RecursionError):
        raise AdminError(400, "bad_json", "the body is not JSON") from None
    if not isinstance(args, dict):
        raise AdminError(400, "bad_json", "the body is a JSON object")
    for key in ("phone", "person"):
        if args.get(key) is not None and not isinstance(args[key], str):
            raise AdminError(400, "bad_request", f"'{key}' is a string")
    pid = resolve_person(
        phone=args.get("phone"), person=args.get("person"), person_key=app[PERSON_KEY]
    )
    who = f"token:{request[PRINCIPAL].name}"
    answer = await erase(app[STORE], app[ARCHIVE], app[LIVE].config, pid, who=who, now=app[CLOCK]())
    return web.json_response(answer, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/admin/erase", handle_erase)
