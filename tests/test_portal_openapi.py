"""docs/openapi.yaml documents every route of the HTTP app, and nothing that is not one."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from controller.config import Config, load_config
from controller.services.archiver import Archiver
from controller.services.enforcer import Enforcer
from controller.services.live import LiveConfig
from controller.services.metrics import MemoryWatch
from controller.services.portal.service import Portal
from controller.services.signing import Signer
from controller.storage.archive import Archive, archive_root
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from controller.web.app import make_app
from controller.web.resources import Resources
from tests.support.portal_kit import write_portal_config

OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"


def documented() -> set[tuple[str, str]]:
    """(METHOD, path) pairs under ``paths:`` (the file's two-space layout, no YAML library)."""
    text = OPENAPI.read_text("utf-8")
    assert text.startswith("openapi: 3.1")
    section = text.split("\npaths:\n", 1)[1].split("\ncomponents:\n", 1)[0]
    out, path = set(), ""
    for line in section.splitlines():
        if m := re.fullmatch(r"  (/\S*):", line):
            path = m.group(1)
        elif m := re.fullmatch(r"    (get|post|put|patch|delete):", line):
            out.add((m.group(1).upper(), path))
    return out


def routed(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        if isinstance(route.resource, web.StaticResource):
            path += "/{filename}"
        out.add((route.method, path))
    return out


async def idle_resources(config: Config) -> Resources:
    """Every resource the routes use, built but none started (Redis is never reached)."""
    live = LiveConfig(config)
    store = Store(client_from_url(config.redis.url))
    enforcer = Enforcer(config, store)
    archive = Archive(archive_root(config))
    signer = Signer(b"p" * 32)

    async def ready() -> dict[str, bool]:
        return {}

    return Resources(
        live=live,
        store=store,
        enforcer=enforcer,
        archive=archive,
        archiver=Archiver(store, archive, lambda: live.config),
        portal=Portal(live, store, person_key=b"k" * 32, signer=signer, enforcer=enforcer),
        memory=MemoryWatch(store),
        person_key=b"k" * 32,
        clock=lambda: 0.0,
        readiness=ready,
        portal_signer=signer,
    )


async def test_every_route_is_documented(tmp_path: Path) -> None:
    config = load_config(write_portal_config(tmp_path, "redis://127.0.0.1:1/0"))
    resources = await idle_resources(config)
    app = make_app(config.http, resources)  # routes only: nothing is started
    routes, docs = routed(app), documented()
    assert routes - docs == set(), "routes missing from docs/openapi.yaml"
    assert docs - routes == set(), "docs/openapi.yaml names routes the app does not have"
    await resources.portal.close()
    await resources.store.close()
