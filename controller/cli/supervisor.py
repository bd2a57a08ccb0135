"""``citywifi serve --workers N``: one supervisor process and N worker processes.

Every worker is a whole controller (``controller.cli.serve.run_forever``) that binds the RADIUS
UDP ports and the HTTP port with SO_REUSEPORT, so the kernel spreads packets and
connections over the workers (UDP by the sender's address and port, so a NAS's
retransmission reaches the same worker and its duplicate cache). The workers share
nothing but Redis, so a worker can die without taking sessions with it.

The supervisor owns what exists once per machine: the embedded Redis (started before the
workers, which are told its URL), the person-id key file, the Prometheus multi-process
directory (``PROMETHEUS_MULTIPROC_DIR``, emptied at start, so ``/metrics`` on any worker
sums all of them), and the ports (a configured 0 is turned into one concrete port).
It restarts a worker that dies (with back-off when it keeps dying), forwards SIGHUP,
and on SIGTERM/SIGINT stops the workers (each drains its in-flight accounting) before
stopping the embedded Redis.

Each worker has a pipe to the supervisor on which it writes one line when it is
serving (``R``) or when it cannot start (``F<exit code> <reason>``: a port taken, Redis
unreachable, an invalid config). The supervisor then stops, saying which worker failed
and why, and exits with that worker's code (``controller.cli.startup``); under systemd it
says READY=1 only once every worker serves (``controller.cli.systemd``).

Workers are spawned (a fresh interpreter: ``python -m controller.cli.worker``), not
forked, so nothing of the supervisor's state (event loop, Redis connections, the
prometheus value class chosen at import) leaks into them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import structlog
from prometheus_client import multiprocess

from controller.cli.startup import EXIT_SOFTWARE
from controller.cli.systemd import Notifier
from controller.config import REDIS_URL_ENV, Config
from controller.services.tasks import cancel_and_wait
from controller.storage.keyfiles import load_person_key
from controller.storage.redis_conn import embedded_for

log = structlog.get_logger("citywifi.supervisor")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKER_ENV = "CITYWIFI_WORKER"  # index of the worker, for its logs
READY_FD_ENV = "CITYWIFI_READY_FD"  # the worker writes "R" here once it serves, or why not
SUPERVISOR_ENV = "CITYWIFI_SUPERVISOR_PID"
STOP_TIMEOUT = 20.0  # a worker gets this long after SIGTERM (it drains in ≤ 5 s)
START_TIMEOUT = 60.0  # a worker that is not serving by then is killed and restarted
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 10.0
STABLE_AFTER = 10.0  # a worker that ran this long resets the back-off
PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True, slots=True)
class Ports:
    auth: int
    acct: int
    http: int


def _reserve(host: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """A socket in the port's SO_REUSEPORT group, holding a port-0 choice until workers bind."""
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    return sock


def resolve_ports(config: Config) -> tuple[Ports, list[socket.socket]]:
    """Concrete ports for every worker to share, and the sockets reserving port-0 picks."""
    held: list[socket.socket] = []

    def pick(host: str, port: int, kind: socket.SocketKind) -> int:
        if port:
            return port
        sock = _reserve(host, 0, kind)
        held.append(sock)
        return int(sock.getsockname()[1])

    r = config.radius
    ports = Ports(
        auth=pick(r.bind, r.auth_port, socket.SOCK_DGRAM),
        acct=pick(r.bind, r.acct_port, socket.SOCK_DGRAM),
        http=pick(config.http.bind, config.http.port, socket.SOCK_STREAM),
    )
    return ports, held


def reset_multiproc_dir(path: Path) -> None:
    """Empty the metrics directory: files of a previous run would be summed in."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerStart:
    """How a worker's start ended: serving, or its exit code and the reason."""

    index: int
    ok: bool
    exit_code: int = 0
    error: str = ""


def parse_start(index: int, line: bytes) -> WorkerStart:
    """A worker's line on its ready pipe: ``R``, or ``F<code> <reason>`` (see module)."""
    text = line.decode(errors="replace").strip()
    if text == "R":
        return WorkerStart(index, True)
    code, _, reason = text[1:].partition(" ") if text.startswith("F") else ("", "", "")
    if not code.isdigit():
        return WorkerStart(index, False, EXIT_SOFTWARE, "exited before serving")
    return WorkerStart(index, False, int(code), reason)


@dataclasses.dataclass
class WorkerSlot:
    index: int
    pid: int | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    quick_deaths: int = 0


class Supervisor:
    def __init__(self, config: Config, workers: int, notifier: Notifier | None = None) -> None:
        self.config = config
        self.workers = workers
        self.notifier = notifier or Notifier()
        self.embedded = embedded_for(config.redis)
        self.metrics_dir = config.redis.data_dir.resolve() / "metrics"
        self.slots = [WorkerSlot(i) for i in range(workers)]
        self.stopping = asyncio.Event()
        self.env: dict[str, str] = {}
        self.ports: Ports | None = None

    def _command(self) -> list[str]:
        assert self.ports is not None
        return [
            sys.executable,
            "-m",
            "controller.cli.worker",
            "--config",
            str(self.config.source),
            "--auth-port",
            str(self.ports.auth),
            "--acct-port",
            str(self.ports.acct),
            "--http-port",
            str(self.ports.http),
        ]

    async def _spawn(self, slot: WorkerSlot) -> asyncio.Future[WorkerStart]:
        """Start the worker of ``slot``; the future says whether it serves, or why not."""
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        env = {**self.env, WORKER_ENV: str(slot.index), READY_FD_ENV: str(write_fd)}
        try:
            slot.process = await asyncio.create_subprocess_exec(
                *self._command(),
                env=env,
                pass_fds=(write_fd,),
                stdin=asyncio.subprocess.DEVNULL,
                process_group=0,  # a terminal's Ctrl-C reaches only us; we stop them in order
            )
        finally:
            os.close(write_fd)
        slot.pid = slot.process.pid
        ready: asyncio.Future[WorkerStart] = loop.create_future()

        def readable() -> None:
            loop.remove_reader(read_fd)
            try:
                data = os.read(read_fd, 4096)  # one write of under PIPE_BUF: all of it
            except OSError:
                data = b""
            finally:
                os.close(read_fd)
            if not ready.done():
                ready.set_result(parse_start(slot.index, data))

        loop.add_reader(read_fd, readable)
        log.info("worker.started", worker=slot.index, pid=slot.pid, restarts=slot.restarts)
        return ready

    def _reaped(self, slot: WorkerSlot, code: int | None) -> None:
        pid, slot.pid, slot.process = slot.pid, None, None
        if pid is not None:
            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
        how = {"signal": -code} if code is not None and code < 0 else {"code": code}
        level = log.info if self.stopping.is_set() else log.error
        level("worker.exited", worker=slot.index, pid=pid, **how)

    async def _keep(self, slot: WorkerSlot, first: asyncio.Future[WorkerStart]) -> None:
        """Keep ``slot``'s worker running until we stop; ``first`` is the started one's."""
        ready = first
        while True:
            assert slot.process is not None
            started = time.monotonic()
            code = await slot.process.wait()
            if not ready.done():  # died without a word (killed, crashed before its pipe)
                how = f"signal {-code}" if code < 0 else f"code {code}"
                exit_code = code if code > 0 else EXIT_SOFTWARE
                ready.set_result(
                    WorkerStart(slot.index, False, exit_code, f"exited with {how} before serving")
                )
            self._reaped(slot, code)
            if self.stopping.is_set():
                return
            if time.monotonic() - started >= STABLE_AFTER:
                slot.quick_deaths = 0
            slot.quick_deaths += 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (slot.quick_deaths - 1))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
                return
            slot.restarts += 1
            ready = await self._spawn(slot)

    def _signal_all(self, sig: signal.Signals) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(sig)

    def _reload(self) -> None:
        """SIGHUP: each worker re-reads the file (and keeps its config if it is invalid)."""
        log.info("supervisor.reload", workers=sum(s.process is not None for s in self.slots))
        self._signal_all(signal.SIGHUP)

    def _prepare(self) -> list[socket.socket]:
        cfg = self.config
        load_person_key(cfg.security.person_key, cfg.redis.data_dir)  # created once, here
        reset_multiproc_dir(self.metrics_dir)
        self.env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
        self.env[MULTIPROC_ENV] = str(self.metrics_dir)
        self.env[SUPERVISOR_ENV] = str(os.getpid())
        if self.embedded is not None:
            self.env[REDIS_URL_ENV] = self.embedded.start()  # workers connect, never own
        self.ports, held = resolve_ports(cfg)
        return held

    def _stop(self) -> None:
        if not self.stopping.is_set():
            self.notifier.stopping()
        self.stopping.set()

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; the failing worker's exit code if they could not start.

        Raises what ``controller.cli.startup.explain`` words (an embedded Redis that does not
        start, a key file it may not write) when the supervisor's own preparation fails."""
        loop = asyncio.get_running_loop()
        watchdog = self.notifier.start_watchdog()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        watch: asyncio.Future[None] | None = None
        keepers: list[asyncio.Task[None]] = []
        held: list[socket.socket] = []
        status = 0
        try:
            held = await asyncio.to_thread(self._prepare)
            if self.embedded is not None:  # also one found running
                watch = asyncio.ensure_future(self.embedded.watch())
            firsts = [await self._spawn(slot) for slot in self.slots]
            keepers = [
                asyncio.ensure_future(self._keep(s, f))
                for s, f in zip(self.slots, firsts, strict=True)
            ]
            failed = await self._first_start(firsts)
            for sock in held:
                sock.close()  # every worker is bound now: the port stays in the group
            if failed is None:
                assert self.ports is not None
                redis = "embedded" if self.embedded else "external"
                log.info(
                    "supervisor.ready",
                    workers=self.workers,
                    auth_port=self.ports.auth,
                    acct_port=self.ports.acct,
                    http_port=self.ports.http,
                    redis=redis,
                )
                self.notifier.ready(
                    f"serving: {self.workers} workers, RADIUS auth {self.ports.auth}/udp, "
                    f"acct {self.ports.acct}/udp, HTTP {self.ports.http}/tcp, {redis} Redis"
                )
                await self.stopping.wait()
            else:
                log.error(
                    "supervisor.start_failed",
                    workers=self.workers,
                    worker=failed.index,
                    error=failed.error,
                    exit_code=failed.exit_code,
                )
                self.notifier.status(f"failed: worker {failed.index}: {failed.error}")
                status = failed.exit_code
        finally:
            self.stopping.set()
            await self._stop_workers(keepers)
            for sock in held:
                sock.close()
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            if self.embedded is not None:
                await asyncio.to_thread(self.embedded.stop)
            await cancel_and_wait(watchdog)
            log.info("supervisor.stopped")
        return status

    async def _first_start(self, firsts: list[asyncio.Future[WorkerStart]]) -> WorkerStart | None:
        """None once every first worker serves; else the first that failed (or hung)."""
        try:
            async with asyncio.timeout(START_TIMEOUT):
                for ready in asyncio.as_completed(firsts):
                    start = await ready
                    if not start.ok:
                        return start
        except TimeoutError:
            late = next((i for i, f in enumerate(firsts) if not f.done()), 0)
            return WorkerStart(late, False, EXIT_SOFTWARE, f"not serving after {START_TIMEOUT:g} s")
        return None

    async def _stop_workers(self, keepers: list[asyncio.Task[None]]) -> None:
        self._signal_all(signal.SIGTERM)
        if not keepers:
            return
        _, pending = await asyncio.wait(keepers, timeout=STOP_TIMEOUT)
        if pending:
            log.error("worker.stop_timeout", workers=len(pending))
            self._signal_all(signal.SIGKILL)
            await asyncio.wait(pending)


def serve_workers(config: Config, workers: int, notifier: Notifier | None = None) -> int:
    """The supervisor's entry point (``citywifi serve --workers N``, N > 1)."""
    return asyncio.run(Supervisor(config, workers, notifier).run())
