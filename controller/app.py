"""Wiring: config -> Redis (embedded or external) -> store -> RADIUS ports + HTTP.

``Controller`` is what ``citywifi serve`` runs and what integration tests start in
process; every resource is started and stopped in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web

from controller.archive import Archive, Archiver, archive_root
from controller.config import Config, ConfigError, load_config
from controller.enforcer import Enforcer
from controller.http import make_app
from controller.identity import load_person_key
from controller.radius_service import RadiusService
from controller.redis_conn import client_from_url, embedded_for
from controller.redis_embedded import EmbeddedRedis
from controller.store import Store, StoreUnavailable
from radius.server import RadiusEndpoint, open_endpoint

log = structlog.get_logger("citywifi")

STARTUP_REDIS_WAIT = 30.0


async def connect_store(config: Config, embedded: EmbeddedRedis | None) -> Store:
    """Connect and load the Lua scripts, waiting for an external Redis to come up."""
    url = config.redis.url or (await asyncio.to_thread(embedded.start) if embedded else "")
    store = Store(client_from_url(url))
    deadline = time.monotonic() + STARTUP_REDIS_WAIT
    while True:
        try:
            await store.load_scripts()
            return store
        except StoreUnavailable as exc:
            if time.monotonic() > deadline:
                await store.close()
                raise
            log.warning("redis.waiting", error=str(exc))
            await asyncio.sleep(1.0)


class Controller:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        reuse_port: bool = False,  # a worker of `serve --workers N` shares its ports
    ) -> None:
        self.config = config
        self.clock = clock
        self.reuse_port = reuse_port
        self.embedded = embedded_for(config.redis)
        self.person_key = load_person_key(config.security.person_key, config.redis.data_dir)
        self.store: Store | None = None
        self.service: RadiusService | None = None
        self.enforcer: Enforcer | None = None
        self.archive = Archive(archive_root(config))  # usage ledger + audit log (reports)
        self.archiver: Archiver | None = None  # drains the outbox into the archive
        self.endpoints: list[RadiusEndpoint] = []
        self.runner: web.AppRunner | None = None
        self.http_port = 0
        self._watch: asyncio.Task[None] | None = None

    @property
    def auth_port(self) -> int:
        return self.endpoints[0].port

    @property
    def acct_port(self) -> int:
        return self.endpoints[1].port

    async def start(self) -> None:
        cfg = self.config
        self.store = await connect_store(cfg, self.embedded)
        self.service = RadiusService(cfg, self.store, clock=self.clock)
        self.enforcer = Enforcer(cfg, self.store, clock=self.clock)
        self.service.accounted = self.enforcer.accounted
        await self.enforcer.start()
        self.archiver = Archiver(self.store, self.archive, lambda: self.config, clock=self.clock)
        self.archiver.start()
        for role, port in (("auth", cfg.radius.auth_port), ("acct", cfg.radius.acct_port)):
            self.endpoints.append(
                await open_endpoint(
                    role,
                    self.service,
                    cfg.radius.bind,
                    port,
                    dedup_window=cfg.radius.dedup_window,
                    max_in_flight=cfg.radius.max_in_flight,
                    reuse_port=self.reuse_port,
                )
            )
        self.runner = web.AppRunner(make_app(self), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(
            self.runner, cfg.http.bind, cfg.http.port, reuse_port=self.reuse_port or None
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else cfg.http.port
        if self.embedded is not None and self.embedded.owned:
            self._watch = asyncio.ensure_future(self.embedded.watch())
        log.info(
            "serve.ready",
            auth_port=self.auth_port,
            acct_port=self.acct_port,
            http_port=self.http_port,
            redis="embedded" if self.embedded else "external",
        )

    async def readiness(self) -> dict[str, bool]:
        store_ok = self.store is not None and await self.store.ping()
        return {
            "redis": store_ok,
            "scripts": bool(self.store and self.store.scripts_loaded),
            "radius": len(self.endpoints) == 2 and all(e.transport for e in self.endpoints),
        }

    def reload(self, path: Path) -> bool:
        """SIGHUP: load the file again; keep the old config if the new one is invalid."""
        try:
            new = load_config(path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config.reload_refused", problem=str(problem))
            return False
        assert self.service is not None
        self.service.apply_config(new)
        if self.enforcer is not None:
            self.enforcer.apply_config(new)
        self.config = new
        log.info("config.reloaded", venues=len(new.venues), clients=len(new.clients))
        return True

    async def stop(self) -> None:
        """Stop taking requests, let in-flight accounting finish, close Redis."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for endpoint in self.endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()
        for endpoint in self.endpoints:
            await endpoint.drain()
        if self.enforcer is not None:
            # Before the HTTP side: closing its DAE socket ends the retries that an
            # in-flight logout/admin disconnect would otherwise make cleanup wait for.
            await self.enforcer.stop()  # releases its leases, flushes the due index
        if self.runner is not None:
            await self.runner.cleanup()
        if self.archiver is not None:
            await self.archiver.stop()  # a last drain of the outbox
        if self.store is not None:
            await self.store.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
        log.info("serve.stopped")


async def run_forever(
    config: Config,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[Controller], None] | None = None,  # a worker tells its supervisor
) -> None:
    controller = Controller(config, reuse_port=reuse_port)
    await controller.start()
    if on_ready is not None:
        on_ready(controller)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, controller.reload, config.source)
    try:
        await stop.wait()
    finally:
        await controller.stop()
