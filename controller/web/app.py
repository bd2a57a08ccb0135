"""HTTP edge: the citizen listener (portal, APIs, health) and, when ``http.metrics_bind``
is set, a separate listener for ``/metrics`` that need not face citizens.

Both apps run behind ``controller.web.http_edge`` (connection caps, head and body
deadlines). The citizen app also sheds load when Redis is near its memory budget
(``shed_for_memory``). The routes of each feature are mounted from their own module
(``portal``, ``reports``, ``audit``, ``admin``); the resources they use are given by
the composition root (``controller.web.resources``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)

from controller.config import HttpSettings
from controller.services.errors import RequestError
from controller.services.metrics import RedisMemory
from controller.storage.metered import REDIS_TIMES
from controller.web import admin, audit, person_erase, reports
from controller.web.console import routes as console
from controller.web.errors import errors, render_json
from controller.web.http_edge import body_deadline
from controller.web.portal import profile as portal_profile
from controller.web.portal import routes as portal
from controller.web.resources import LIVE, MEMORY, PORTAL, READINESS, Readiness, Resources
from radius.metrics import RADIUS

# Routes operators need most when Redis is full (and that write nothing per request):
# never shed. Everything else is citizen traffic that may write per-request state.
NEVER_SHED: Final = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/reports",
    "/api/v1/reports/",
    "/api/v1/audit/",
    "/api/v1/admin/",
    "/console",
)
BUSY: Final = RequestError(
    "busy",
    503,
    "服务繁忙，请稍后再试 / the service is busy; please try again shortly",
    retry_after=30,
)
SHED = Counter(
    "citywifi_http_shed_total",
    "Citizen requests answered 503 because Redis was above redis.memory_high_water",
)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[READINESS]()
    ok = all(checks.values())
    body: dict[str, object] = {"status": "ready" if ok else "not ready", "checks": checks}
    if not ok:  # why, for the load balancer's log and the operator
        body["failing"] = [name for name, passed in checks.items() if not passed]
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # a worker of `serve --workers N`: sum every worker's metric files, not just ours;
        # ours first get what our RADIUS counters counted since their last fold (the
        # others' fold once a second: radius.metrics), here on the loop, not the thread;
        # the same for the store's Redis timings (controller.storage.metered)
        RADIUS.fold()
        REDIS_TIMES.fold()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = await asyncio.to_thread(generate_latest, registry)
    else:
        body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def sheds(path: str, memory: RedisMemory | None, high_water: float) -> bool:
    """Whether a request for ``path`` is refused to keep Redis's last ``1 - high_water``
    of its budget for RADIUS accounting and quota (``noeviction``: at the budget every
    write fails, accounting too). Pure."""
    if memory is None or memory.limit <= 0 or memory.share < high_water:
        return False
    return not path.startswith(NEVER_SHED)


@web.middleware
async def shed_for_memory(request: web.Request, handler: Any) -> web.StreamResponse:
    memory = request.app[MEMORY].latest
    if sheds(request.path, memory, request.app[LIVE].config.redis.memory_high_water):
        SHED.inc()
        return render_json(request, BUSY)
    response: web.StreamResponse = await handler(request)
    return response


def make_app(http: HttpSettings, resources: Resources) -> web.Application:
    """The citizen listener's app: portal, APIs, health; ``/metrics`` too unless it has
    a listener of its own (``http.metrics_bind``)."""
    app = web.Application(middlewares=[body_deadline(http.body_timeout), shed_for_memory, errors])
    resources.install(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if not http.metrics_bind:
        app.router.add_get("/metrics", metrics)
    portal.add_routes(app)  # portal, APIs, RFC 8908
    portal_profile.add_routes(app)  # GET /api/v1/profile (docs/eap.md)
    reports.add_routes(app)  # reports API + page (role reports)
    audit.add_routes(app)  # audit export (role audit)
    admin.add_routes(app)  # role admin
    person_erase.add_routes(app)  # POST /api/v1/admin/erase (role admin, PIPL)
    console.add_routes(app)  # operations console (named accounts)
    app.cleanup_ctx.append(_close_portal)
    return app


async def _close_portal(app: web.Application) -> AsyncIterator[None]:
    """The portal's background disconnects and SMS backend end with the app."""
    yield
    await app[PORTAL].close()


def make_metrics_app(http: HttpSettings, readiness: Readiness) -> web.Application:
    """The ``http.metrics_bind`` listener's app: ``/metrics`` and the health checks."""
    app = web.Application(middlewares=[body_deadline(http.body_timeout), errors])
    app[READINESS] = readiness
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
