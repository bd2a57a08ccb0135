"""The composition root: config -> Redis (embedded or external) -> store -> services ->
RADIUS ports + HTTP.

``Controller`` is what ``citywifi serve`` runs (``run_forever``) and what integration
tests start in process; every resource is built, started and stopped in one place and
passed down to what uses it (the RADIUS service its observers, the web app one typed
resource per ``AppKey``). This is the one module that imports every layer; nothing
imports it but the commands that run a server (``main``, ``worker``). See
docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web

from controller.cli import logs
from controller.cli.runtime import freeze_startup_objects, run
from controller.cli.startup import EXIT_CONFIG, EXIT_OSERR, StartupError, binding, explain
from controller.cli.supervisor import default_workers, serve_workers
from controller.cli.systemd import Notifier
from controller.config import Config, ConfigError, load_config
from controller.config.reload import adopt, changes, counts, restart_needed
from controller.services import reload_status
from controller.services.archiver import Archiver
from controller.services.eap_service import eap_logins
from controller.services.enforcer import Enforcer
from controller.services.live import LiveConfig
from controller.services.metrics import MemoryWatch, OnlineStats, reload_result
from controller.services.nas_stats import NasStats
from controller.services.natlog import NatLogListener
from controller.services.portal.service import Portal
from controller.services.radius_service import RadiusService
from controller.services.signing import Signer
from controller.services.tasks import cancel_and_wait
from controller.services.trace import Tracer
from controller.storage.archive import Archive, archive_root
from controller.storage.keyfiles import load_person_key, load_portal_key
from controller.storage.redis_conn import connect_store, embedded_for
from controller.storage.store import Store, StoreUnavailable
from controller.web.app import make_app, make_metrics_app
from controller.web.http_edge import ConnectionGuard, EdgeError, GuardedSite
from controller.web.resources import Resources
from radius.core import Role
from radius.radsec import RadsecListener, open_radsec, server_context
from radius.server import RadiusEndpoint, open_endpoint

log = structlog.get_logger("citywifi")


class Controller:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        reuse_port: bool = False,  # a worker of `serve --workers N` shares its ports
        natlog_owner: bool = True,  # runs the NAT-log listener ([natlog] listen): one process
    ) -> None:
        self.live = LiveConfig(config)  # config + registry in force; SIGHUP swaps both
        self.natlog_owner = natlog_owner
        self.natlog: NatLogListener | None = None  # [natlog] listen: the UDP NAT-log listener
        self._natlog_task: asyncio.Task[None] | None = None
        self._natlog_stop = asyncio.Event()
        self.clock = clock
        self.reuse_port = reuse_port
        self.embedded = embedded_for(config.redis)
        self.person_key = load_person_key(config.security.person_key, config.redis.data_dir)
        # the portal's tokens (NAS context, device cookie, CSRF): one signer, one key file
        self.portal_signer = Signer(
            load_portal_key(config.portal.cookie_key, config.redis.data_dir)
        )
        self.store: Store | None = None
        self.service: RadiusService | None = None
        self.enforcer: Enforcer | None = None
        self.archive = Archive(archive_root(config))  # usage ledger + audit log (reports)
        self.archiver: Archiver | None = None  # drains the outbox into the archive
        self.online: OnlineStats | None = None  # city-wide online gauges, counted in Redis
        self.nas_stats: NasStats | None = None  # per-NAS counters, flushed to Redis
        self.memory: MemoryWatch | None = None  # Redis memory vs its budget (load shedding)
        self.tracer: Tracer | None = None  # the per-client RADIUS trace (citywifi trace)
        self._reloading = asyncio.Lock()
        self.endpoints: list[RadiusEndpoint] = []
        self.radsec: RadsecListener | None = None  # [radsec] enabled: RFC 6614 over TLS
        self.runners: list[web.AppRunner] = []  # the citizen listener, then /metrics's
        self.http_port = 0
        self.metrics_port = 0  # http.metrics_bind's listener (0: none)
        self._watch: asyncio.Task[None] | None = None
        self._health: asyncio.Task[None] | None = None  # Store.watch_health (Status-Server)

    @property
    def config(self) -> Config:
        return self.live.config

    @property
    def runner(self) -> web.AppRunner | None:
        """The citizen listener's runner (its app: ``runner.app``)."""
        return self.runners[0] if self.runners else None

    @property
    def auth_port(self) -> int:
        return self.endpoints[0].port

    @property
    def acct_port(self) -> int:
        return self.endpoints[1].port

    async def start(self) -> None:
        cfg = self.config
        self.store = store = await connect_store(cfg, self.embedded)
        self.online = OnlineStats(
            store, clock=self.clock, clients=lambda: [c.id for c in self.config.clients]
        )
        self.online.start()
        self.nas_stats = NasStats(store, lambda: self.config, clock=self.clock)
        self.nas_stats.start()
        self.memory = MemoryWatch(store)
        with contextlib.suppress(StoreUnavailable):
            await self.memory.poll()  # shedding knows the budget from the first request
        self.memory.start()
        self.enforcer = Enforcer(cfg, self.store, clock=self.clock)
        self.service = RadiusService(
            cfg,
            self.store,
            person_key=self.person_key,
            clock=self.clock,
            # after each recorded report: the due index, then the NAS's last-seen time
            observers=(self.enforcer, self.online),
            # EAP-TTLS logins (docs/eap.md): only with [passpoint] enabled
            eap=eap_logins(cfg.passpoint, store.redis) if cfg.passpoint.enabled else None,
        )
        await self.enforcer.start()
        self.archiver = Archiver(self.store, self.archive, lambda: self.config, clock=self.clock)
        self.archiver.start()
        portal = Portal(
            self.live,
            store,
            person_key=self.person_key,
            signer=self.portal_signer,
            clock=self.clock,
            enforcer=self.enforcer,
        )
        self.tracer = Tracer(
            store,
            lambda: [c.id for c in self.config.clients],
            configured=lambda: [c.id for c in self.config.clients if c.trace],
        )
        self.tracer.start()
        if cfg.natlog.listen and self.natlog_owner:
            await self._start_natlog(cfg)
        ports: tuple[tuple[Role, int], ...] = (
            ("auth", cfg.radius.auth_port),
            ("acct", cfg.radius.acct_port),
        )
        for role, port in ports:
            with binding(f"RADIUS {role}", cfg.radius.bind, port, "udp"):
                endpoint = await open_endpoint(
                    role,
                    self.service,
                    cfg.radius.bind,
                    port,
                    dedup_window=cfg.radius.dedup_window,
                    max_in_flight=cfg.radius.max_in_flight,
                    reuse_port=self.reuse_port,
                    can_record=store.health.can_record,  # RFC 5997 §4.2
                    on_packet=self.tracer.observe,
                )
            self.endpoints.append(endpoint)
        if cfg.radsec.enabled:
            self.radsec = await self._open_radsec(cfg, store)
        path = self.endpoints[0].core.data_path  # which codec runs, and why (issue 16)
        log.info(
            "radius.data_path",
            compiled=path.compiled,
            reason=path.reason,
            batch_io=path.batch_io is not None,  # recvmmsg/sendmmsg (radius.batch_socket)
        )
        self._health = asyncio.ensure_future(store.watch_health())
        # Redis and the RADIUS sockets are open now: the fd budget counts them
        try:
            guard = ConnectionGuard.from_settings(cfg.http, cfg.portal.trusted_proxies)
        except EdgeError as exc:  # e.g. no file descriptors left for HTTP
            raise StartupError(str(exc), EXIT_OSERR) from exc
        resources = Resources(
            live=self.live,
            store=store,
            enforcer=self.enforcer,
            archive=self.archive,
            archiver=self.archiver,
            portal=portal,
            memory=self.memory,
            person_key=self.person_key,
            clock=self.clock,
            readiness=self.readiness,
            portal_signer=self.portal_signer,
        )
        self.http_port = await self._listen(
            "HTTP", make_app(cfg.http, resources), cfg.http.bind, cfg.http.port, guard
        )
        if cfg.http.metrics_bind:
            self.metrics_port = await self._listen(
                "HTTP metrics",
                make_metrics_app(cfg.http, self.readiness),
                cfg.http.metrics_bind,
                cfg.http.metrics_port,
                guard,
            )
        if self.embedded is not None:  # also one found running (left by a killed serve)
            self._watch = asyncio.ensure_future(self.embedded.watch())
        frozen = freeze_startup_objects()
        log.info(
            "serve.ready",
            gc_frozen=frozen,
            auth_port=self.auth_port,
            acct_port=self.acct_port,
            http_port=self.http_port,
            **({"radsec_port": self.radsec.port} if self.radsec else {}),
            **({"metrics_port": self.metrics_port} if self.metrics_port else {}),
            redis="embedded" if self.embedded else "external",
        )

    async def _start_natlog(self, cfg: Config) -> None:
        """The NAT-log listener (docs/audit.md) in this process: its UDP sockets, and
        its writer until ``stop``."""
        listener = NatLogListener(self.archive, cfg, self.clock)
        with binding("NAT log", cfg.natlog.bind, cfg.natlog.syslog_port, "udp"):
            await listener.start()
        self.natlog = listener
        if not cfg.natlog.exporters:
            log.warning("natlog.no_exporters")  # every datagram is dropped until a reload
        self._natlog_task = asyncio.ensure_future(listener.run(self._natlog_stop))

    async def _open_radsec(self, cfg: Config, store: Store) -> RadsecListener:
        """The RadSec listener (docs/radius.md): the same service and trace as UDP;
        the enforcer's Disconnect/CoA go down a client's connection when it asks for it."""
        rs = cfg.radsec
        assert rs.certificate and rs.private_key and rs.ca_certificates  # check-config's
        assert self.service is not None and self.tracer is not None
        try:
            context = server_context(rs.certificate, rs.private_key, rs.ca_certificates)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise StartupError(
                f"[radsec]: cannot load the certificates: {exc}", EXIT_CONFIG
            ) from exc
        with binding("RadSec", rs.bind, rs.port, "tcp"):
            listener = await open_radsec(
                self.service,
                context,
                rs.bind,
                rs.port,
                idle_timeout=rs.idle_timeout,
                max_in_flight=rs.max_in_flight,
                dedup_window=cfg.radius.dedup_window,
                reuse_port=self.reuse_port,
                can_record=store.health.can_record,
                on_packet=self.tracer.observe,
            )
        if self.enforcer is not None and self.enforcer.dae is not None:
            self.enforcer.dae.channels = listener.channel_for
        return listener

    def _reload_radsec_certificates(self, config: Config) -> None:
        """SIGHUP: read the RadSec certificate files again (a renewed certificate, a CA
        added); new connections use them, open ones keep theirs."""
        rs = config.radsec
        if self.radsec is None or not (rs.certificate and rs.private_key and rs.ca_certificates):
            return
        try:
            self.radsec.context = server_context(rs.certificate, rs.private_key, rs.ca_certificates)
        except (OSError, ValueError) as exc:
            log.error("radsec.certificates_not_reloaded", error=str(exc))

    async def _listen(
        self, name: str, app: web.Application, host: str, port: int, guard: ConnectionGuard
    ) -> int:
        """Serve ``app`` on ``host:port`` behind the connection guard; the bound port
        (a port that cannot be bound is a ``StartupError`` naming it, controller.cli.startup)."""
        runner = web.AppRunner(
            app, access_log=None, keepalive_timeout=self.config.http.keepalive_timeout
        )
        await runner.setup()
        self.runners.append(runner)
        site = GuardedSite(runner, host, port, guard, reuse_port=self.reuse_port)
        with binding(name, host, port, "tcp"):
            await site.start()
        return site.port

    async def readiness(self) -> dict[str, bool]:
        """Redis answers (within 2 s: a hung Redis is not ready), scripts, sockets."""
        store_ok = False
        if self.store is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    store_ok = await self.store.ping()
        return {
            "redis": store_ok,
            "scripts": bool(self.store and self.store.scripts_loaded),
            "radius": len(self.endpoints) == 2 and all(e.transport for e in self.endpoints),
        }

    async def reload(self, path: Path) -> bool:
        """SIGHUP: read the file again (in a thread: big registries must not stall RADIUS)
        and swap it in; an invalid file is refused, every problem logged as check-config
        words it, and the running config kept. Open sessions live in Redis: untouched."""
        async with self._reloading:  # SIGHUPs in a row apply in order
            try:
                loaded = await asyncio.to_thread(load_config, path)
            except ConfigError as exc:
                reload_result(False)
                for problem in exc.problems:
                    log.error("config.reload_refused", problem=str(problem))
                at = int(self.clock())
                await reload_status.record(
                    self.store, reload_status.refused(at, str(path), [str(p) for p in exc.problems])
                )
                return False
            except Exception as exc:  # unreadable file, …: keep running on the old one
                reload_result(False)
                words = f"{path}: {type(exc).__name__}: {exc}"
                log.error("config.reload_refused", problem=words)
                at = int(self.clock())
                await reload_status.record(
                    self.store, reload_status.refused(at, str(path), [words])
                )
                return False
            old = self.config
            new = adopt(old, loaded)  # sockets, Redis, keys, logging, SMS: as running
            if self.service is not None:
                self.service.apply_config(new)
            if self.enforcer is not None:
                self.enforcer.apply_config(new)
            if self.natlog is not None:
                self.natlog.apply_config(new)
            self.live.swap(new)  # the portal, APIs and archiver read it from here
            if self.tracer is not None:
                self.tracer.follow_config()  # [[clients]] trace = true, as now configured
            self._reload_radsec_certificates(new)
            reload_result(True)
            diff = changes(old, new)
            log.info("config.reloaded", **counts(new), changes=diff)
            pending = restart_needed(old, loaded)
            if pending:
                log.warning("config.restart_needed", keys=pending)
            await reload_status.record(  # for the console's registry page, every worker's
                self.store,
                reload_status.applied(int(self.clock()), str(path), diff, pending, counts(new)),
            )
            return True

    async def stop(self) -> None:
        """Stop taking requests, let in-flight accounting finish, close Redis."""
        await cancel_and_wait(self._watch)
        await cancel_and_wait(self._health)
        # Take no new requests (dropped as overload), finish in-flight ones, then close:
        # a request Redis recorded during the drain still gets its answer, which a
        # closed socket would swallow (uvloop's UDP transport cannot pause reading).
        for endpoint in self.endpoints:
            endpoint.max_in_flight = 0
        if self.radsec is not None:
            await self.radsec.stop()
        for endpoint in self.endpoints:
            await endpoint.drain()
        for endpoint in self.endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()
        if self.tracer is not None:
            await self.tracer.stop()  # writes what the last packets traced
        if self.enforcer is not None:
            # Before the HTTP side: closing its DAE socket ends the retries that an
            # in-flight logout/admin disconnect would otherwise make cleanup wait for.
            await self.enforcer.stop()  # releases its leases, flushes the due index
        for runner in self.runners:
            await runner.cleanup()
        if self.archiver is not None:
            await self.archiver.stop()  # a last drain of the outbox
        if self.natlog is not None:
            self._natlog_stop.set()  # writes what it holds
            if self._natlog_task is not None:
                with contextlib.suppress(Exception):
                    await self._natlog_task
            self.natlog.close()
        if self.online is not None:
            await self.online.stop()
        if self.nas_stats is not None:
            await self.nas_stats.stop()  # writes what the last requests counted
        if self.memory is not None:
            await self.memory.stop()
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
    on_stopping: Callable[[], None] | None = None,  # systemd: STOPPING=1
    natlog_owner: bool = True,  # `serve --workers N`: the first worker only
) -> None:
    controller = Controller(config, reuse_port=reuse_port, natlog_owner=natlog_owner)
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()
    hup_early = asyncio.Event()
    # SIGHUP's default action ends the process: catch it from the start (a `systemctl
    # reload` right after start, or a supervisor forwarding one) and reload once serving.
    loop.add_signal_handler(signal.SIGHUP, hup_early.set)

    def hup() -> None:
        task = asyncio.ensure_future(controller.reload(config.source))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    try:
        await controller.start()
    except BaseException:  # a port taken, Redis down: release what did start (embedded Redis)
        await controller.stop()
        raise
    loop.add_signal_handler(signal.SIGHUP, hup)
    if hup_early.is_set():
        hup()
    if on_ready is not None:
        on_ready(controller)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if on_stopping is not None:
            on_stopping()
        await controller.stop()


def cmd_serve(config_path: Path, workers: int | None = None) -> int:
    """Serve until SIGTERM; exit 0 then, else with ``controller.cli.startup``'s code and
    line."""
    notifier = Notifier.from_environ()  # before any child process inherits $NOTIFY_SOCKET
    try:
        config = load_config(config_path)
    except ConfigError as exc:  # placeholder secrets included: serve refuses to start
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        notifier.status(f"failed: {len(exc.problems)} problem(s) in {config_path}")
        return EXIT_CONFIG
    logs.configure_logging(config.log)
    log = structlog.get_logger("citywifi")
    for warning in config.warnings:
        log.warning("config.warning", problem=str(warning))
    if workers is None:
        workers = default_workers()
    try:
        if workers > 1:
            return serve_workers(config, workers, notifier=notifier)
        run(_serve_one(config, notifier))
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        error = explain(exc, config)
        if error is None:
            raise
        log.error("serve.start_failed", error=str(error), exit_code=error.exit_code)
        notifier.status(f"failed: {error}")
        return error.exit_code
    return 0


async def _serve_one(config: Config, notifier: Notifier) -> None:
    """``serve --workers 1``: one process; READY=1 once its sockets and Redis are up."""
    watchdog = notifier.start_watchdog()  # from the start: waiting for Redis takes a while

    def ready(controller: Controller) -> None:
        notifier.ready(
            f"serving: RADIUS auth {controller.auth_port}/udp, acct {controller.acct_port}/udp,"
            f" HTTP {controller.http_port}/tcp, "
            f"{'embedded' if controller.embedded else 'external'} Redis"
        )

    try:
        await run_forever(config, on_ready=ready, on_stopping=notifier.stopping)
    finally:
        await cancel_and_wait(watchdog)
