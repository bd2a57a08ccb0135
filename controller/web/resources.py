"""The resources the HTTP routes use, one typed ``web.AppKey`` each.

The composition root (``controller.cli.serve``) builds every resource and hands them to
``make_app``, which stores each under its key (``Resources.install``, the one place); a
handler reads exactly the ones it needs (``request.app[STORE]``, not ``portal.store``), so
no route reaches through one object to another and none imports the root. The config
and registry are read from ``LIVE`` at each request: a SIGHUP reload swaps them there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from controller.services.archiver import Archiver
from controller.services.enforcer import Enforcer
from controller.services.live import LiveConfig
from controller.services.metrics import MemoryWatch
from controller.services.portal.service import Portal
from controller.services.signing import Signer
from controller.storage.archive import Archive
from controller.storage.store import Store

Clock = Callable[[], float]
Readiness = Callable[[], Awaitable[dict[str, bool]]]  # check name -> passed

LIVE: web.AppKey[LiveConfig] = web.AppKey("live", LiveConfig)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
ENFORCER: web.AppKey[Enforcer] = web.AppKey("enforcer", Enforcer)
ARCHIVE: web.AppKey[Archive] = web.AppKey("archive", Archive)
ARCHIVER: web.AppKey[Archiver] = web.AppKey("archiver", Archiver)
PORTAL: web.AppKey[Portal] = web.AppKey("portal", Portal)
MEMORY: web.AppKey[MemoryWatch] = web.AppKey("memory", MemoryWatch)
PERSON_KEY: web.AppKey[bytes] = web.AppKey("person_key", bytes)
PORTAL_SIGNER: web.AppKey[Signer] = web.AppKey("portal_signer", Signer)  # the portal key's
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
READINESS: web.AppKey[Readiness] = web.AppKey("readiness")


@dataclass(frozen=True, slots=True)
class Resources:
    """What ``make_app`` puts under the keys above (built by the composition root)."""

    live: LiveConfig
    store: Store
    enforcer: Enforcer
    archive: Archive
    archiver: Archiver
    portal: Portal
    memory: MemoryWatch
    person_key: bytes
    clock: Clock
    readiness: Readiness
    portal_signer: Signer

    def install(self, app: web.Application) -> None:
        app[LIVE] = self.live
        app[STORE] = self.store
        app[ENFORCER] = self.enforcer
        app[ARCHIVE] = self.archive
        app[ARCHIVER] = self.archiver
        app[PORTAL] = self.portal
        app[MEMORY] = self.memory
        app[PERSON_KEY] = self.person_key
        app[CLOCK] = self.clock
        app[READINESS] = self.readiness
        app[PORTAL_SIGNER] = self.portal_signer
