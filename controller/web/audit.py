"""The audit export over HTTP (role ``audit``): ``GET /api/v1/audit/export``. The query,
the records and the export log are ``controller.services.audit``."""

from __future__ import annotations

import asyncio
from datetime import datetime

from aiohttp import web

from controller.services.audit import export, parse_query
from controller.web import audit_who
from controller.web.auth import PRINCIPAL, requires
from controller.web.resources import ARCHIVE, ARCHIVER, CLOCK, LIVE, PERSON_KEY


@requires("audit")
async def handle_export(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/audit/export?from=&to=[&phone=][&mac=][&format=csv|json]`` (role audit)."""
    app = request.app
    config = app[LIVE].config
    principal = request[PRINCIPAL]
    q = parse_query(dict(request.query), config)  # PeriodError: a 400 (web.errors)
    await app[ARCHIVER].flush()
    who = f"token:{principal.name}"
    body = await asyncio.to_thread(
        export, app[ARCHIVE], config, app[PERSON_KEY], who, q, app[CLOCK]()
    )
    first = datetime.fromtimestamp(q.since, config.quota.timezone).date().isoformat()
    return web.Response(
        body=body,
        headers={
            "Content-Type": "application/json; charset=utf-8"
            if q.format == "json"
            else "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="citywifi-audit-{first}.{q.format}"',
            "Cache-Control": "no-store",
        },
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/audit/export", handle_export)
    audit_who.add_routes(app)  # GET /api/v1/audit/who
