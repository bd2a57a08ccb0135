"""HTTP edge: health, readiness and metrics now; portal and APIs join here."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

if TYPE_CHECKING:
    from controller.app import Controller

CONTROLLER: web.AppKey[Controller] = web.AppKey("controller")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[CONTROLLER].readiness()
    ok = all(checks.values())
    body: dict[str, object] = {"status": "ready" if ok else "not ready", "checks": checks}
    if not ok:  # why, for the load balancer's log and the operator
        body["failing"] = [name for name, passed in checks.items() if not passed]
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # a worker of `serve --workers N`: sum every worker's metric files, not just ours
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = await asyncio.to_thread(generate_latest, registry)
    else:
        body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(controller: Controller) -> web.Application:
    app = web.Application()
    app[CONTROLLER] = controller
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    from controller.portal import add_routes as add_portal_routes  # portal, APIs, RFC 8908

    add_portal_routes(app, controller)
    from controller.audit import add_routes as add_audit_routes  # audit export (role audit)
    from controller.reports.http import add_routes as add_report_routes  # reports + page

    add_report_routes(app)
    add_audit_routes(app)
    from controller.admin import add_routes as add_admin_routes  # role admin

    add_admin_routes(app)
    return app
