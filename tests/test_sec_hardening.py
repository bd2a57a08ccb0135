"""Issue 13, HTTP and storage hardening: each test performs the finding's attack against a
live server (a ``citywifi serve`` process, or an in-process controller on real sockets)
with a real redis-server, and fails on the code before the fix.

- 05: slow and idle connections (a bounded slowloris with the fd limit lowered);
- 06: Redis's memory budget (the embedded server's ``maxmemory``; the portal sheds load
  first, RADIUS accounting still fits);
- 12: one corrupt archive file (quarantined; reports, sealing and the retention trim go on);
- 13: edge dates (400 with the JSON error everywhere, never a 5xx);
- 14: data files owner-only whatever the umask; ``/metrics`` on its own listener.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import redis

from controller.cli import main as citywifi
from controller.cli.serve import Controller
from controller.config import Config, load_config
from tests.conftest import SECRET, write_config
from tests.support.portal_kit import portal_tables
from tests.support.radclient import radclient
from tests.support.redis_proc import RedisProcess, free_port, until, wait_until
from tests.test_reports_helpers import SH, TOKENS, Clock, city_config, drain, use

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: city, clock, ctl

ROOT = Path(__file__).resolve().parent.parent
CITYWIFI = [sys.executable, "-m", "controller.cli"]


# --------------------------------------------------------------------------- a live serve


def live_config(
    directory: Path,
    redis_url: str,
    *,
    http: str = "",
    redis_keys: str = "",
    extra: str = "",
    level: str = "warning",
) -> tuple[Path, dict[str, int]]:
    """The test city with concrete loopback ports (so that the test knows them before
    ``serve`` is up) and extra keys in ``[http]`` and ``[redis]``."""
    ports = {
        "auth": free_port(socket.SOCK_DGRAM),
        "acct": free_port(socket.SOCK_DGRAM),
        "http": free_port(),
    }
    path = write_config(directory, redis_url, extra=extra)
    text = path.read_text()
    text = text.replace("auth_port = 0", f"auth_port = {ports['auth']}")
    text = text.replace("acct_port = 0", f"acct_port = {ports['acct']}")
    text = text.replace(
        '[http]\nbind = "127.0.0.1"\nport = 0\n',
        f'[http]\nbind = "127.0.0.1"\nport = {ports["http"]}\n{http}\n',
    )
    text = text.replace(f'url = "{redis_url}"\n', f'url = "{redis_url}"\n{redis_keys}\n')
    text = text.replace('level = "warning"', f'level = "{level}"')
    path.write_text(text)
    return path, ports


class Serve:
    """``citywifi serve --workers 1`` in its own process; ``setup`` runs in the child
    before exec (lower the fd limit, set the umask)."""

    def __init__(self, config: Path, http_port: int, setup: Callable[[], None]) -> None:
        self.http_port = http_port
        self.proc = subprocess.Popen(
            [*CITYWIFI, "serve", "--workers", "1", "--config", str(config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            preexec_fn=setup,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(self._healthy, 40, interval=0.1, what="serve answering /healthz")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, "serve exited:\n" + "".join(self.lines)
        try:
            return get("127.0.0.1", self.http_port, "/healthz")[0] == 200
        except OSError:
            return False

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@contextlib.contextmanager
def serving(config: Path, http_port: int, setup: Callable[[], None]) -> Iterator[Serve]:
    serve = Serve(config, http_port, setup)
    try:
        yield serve
    finally:
        serve.stop()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def read_all(s: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until the peer closes (or ``timeout``); a reset ends it too."""
    s.settimeout(timeout)
    out = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := s.recv(65536):
            out += chunk
    return out


def get(host: str, port: int, path: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
    with connect(port, source) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return status_of(read_all(s))


def status_of(response: bytes) -> tuple[int, bytes]:
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    return (int(m.group(1)) if m else 0), response.partition(b"\r\n\r\n")[2]


def closed_by_server(s: socket.socket) -> bool:
    """The server closed (or reset) ``s``: readable, and reading ends in EOF."""
    if not select.select([s], [], [], 0)[0]:
        return False
    read_all(s, 0.5)
    return True


def lower_fd_limit(n: int) -> Callable[[], None]:
    def setup() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return setup


# --------------------------------------------------------------------------- finding 05


def test_finding_05_slowloris_is_cut_off_and_leaves_fds_for_the_archive(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """200 fds for the whole process; 200 silent or dribbling connections from four
    sources. Before: every one was accepted and held for the hour aiohttp keeps an idle
    connection by default, until accept() and the archive's writes failed with EMFILE.
    Now: at most 40 per source and the total below the fd limit minus the reserve, the
    rest answered 429/503 at once; while they are held an Access-Request's audit record
    is still archived; every held one is cut off at the head deadline (408); then new
    connections are served; a dribbled body gets 408 and an idle keep-alive is closed."""
    head, body, idle = 6.0, 2.0, 2.0
    config, ports = live_config(
        tmp_path,
        redis_proc.url,
        http=(
            f"header_timeout = {head}\nbody_timeout = {body}\nkeepalive_timeout = {idle}\n"
            "max_connections_per_ip = 40\nreserved_fds = 64"
        ),
        extra="[reports]\narchive_gather = 0\n",  # the audit part written at once
    )
    audit_dir = tmp_path / "var" / "archive" / "audit"
    with serving(config, ports["http"], lower_fd_limit(200)) as serve:
        start = time.monotonic()
        held: list[socket.socket] = []
        answers: dict[str, list[int]] = {}
        for n, source in enumerate(("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")):
            for i in range(50):
                s = connect(ports["http"], source)
                if (n + i) % 2:
                    s.sendall(b"GET /portal HTTP/1.1\r\nHost: portal\r\n")  # never finished
                held.append(s)
        # the refusals are written at accept: collect them as they arrive, until every
        # source's cap (at most 40 held, so 10 refusals each) and the total cap (a 503
        # for .4, fewer than 136 held) have answered, or the deadline (then the
        # assertions below say what)
        open_ones = list(held)
        sources = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            all(len(answers.get(src, [])) >= 10 for src in sources)
            and 503 in answers.get("127.0.0.4", [])
            and len(open_ones) < 200 - 64  # the total cap leaves descriptors free
        ):
            readable = set(select.select(open_ones, [], [], 0.05)[0])
            for s in readable:
                source = s.getsockname()[0]
                answers.setdefault(source, []).append(status_of(read_all(s, 1))[0])
                s.close()
            open_ones = [s for s in open_ones if s not in readable]
        accepted = {src: 50 - len(answers.get(src, [])) for src in answers}
        assert all(n <= 40 for n in accepted.values()), accepted
        assert answers["127.0.0.1"] == [429] * 10, answers  # the per-source cap
        assert 503 in answers["127.0.0.4"], answers  # the total cap: below the fd limit
        statuses = {status for got in answers.values() for status in got}
        assert statuses <= {429, 503, 0}, answers  # 0: reset before the answer arrived
        assert len(open_ones) < 200 - 64, len(open_ones)
        # a fresh source meanwhile gets a clear answer, not a hang
        assert get("127.0.0.1", ports["http"], "/healthz", "127.0.0.9")[0] in (200, 503)

        # the archive still gets descriptors: an Access-Request's audit record is written
        reply = radclient(
            ports["auth"], "auth", SECRET, {"User-Name": "nobody", "User-Password": "x"}
        )
        assert reply.code == "Access-Reject", reply.output
        wait_until(
            lambda: any(audit_dir.glob("*/part-*.parquet")),
            head - 1.5,
            interval=0.1,
            what="an audit part written while the connections are held",
        )
        assert time.monotonic() - start < head  # ... before the edge let any of them go
        assert not any(closed_by_server(s) for s in open_ones[:5])

        # dribbling does not help: every held connection is cut off at the head deadline
        deadline = time.monotonic() + head + 5
        while open_ones and time.monotonic() < deadline:
            for s in list(open_ones):
                with contextlib.suppress(OSError):
                    s.send(b"X")  # one more header byte
                if closed_by_server(s):
                    open_ones.remove(s)
                    s.close()
            time.sleep(0.5)
        assert not open_ones, f"{len(open_ones)} connections still held"
        assert get("127.0.0.1", ports["http"], "/healthz")[0] == 200

        # a body that trickles in is answered 408; an idle keep-alive connection is closed
        with connect(ports["http"]) as s:
            s.sendall(
                b"POST /api/v1/otp HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            t0 = time.monotonic()
            status, _ = status_of(read_all(s, body + 5))
            assert status == 408 and time.monotonic() - t0 < body + 3
        with connect(ports["http"]) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n")
            t0 = time.monotonic()
            response = read_all(s, idle + 5)
            assert status_of(response)[0] == 200 and time.monotonic() - t0 < idle + 3
        assert serve.proc.poll() is None
        assert not any("Too many open files" in line for line in serve.lines), serve.lines


# --------------------------------------------------------------------------- finding 06


def test_finding_06_portal_sheds_load_before_redis_budget_accounting_fits() -> None:
    """The embedded Redis had no ``maxmemory``: per-request state could grow it until the
    host ran out. Now it has a budget (noeviction) and, above ``memory_high_water`` of it,
    the portal answers 503 while RADIUS accounting is still recorded and answered."""
    base = Path(tempfile.mkdtemp(prefix="cw6-", dir="/tmp"))  # a short unix socket path
    try:
        config, ports = live_config(
            base,
            "",
            redis_keys='maxmemory = "8mb"\nmemory_high_water = 0.5',
            extra=portal_tables(),
        )
        with serving(config, ports["http"], lambda: None):
            sock = base / "var" / "redis" / "redis.sock"
            r = redis.Redis(unix_socket_path=str(sock))
            assert r.config_get("maxmemory") == {"maxmemory": str(8 << 20)}
            assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            otp = json.dumps({"phone": "13800138061", "nas_id": "nas-local"})
            assert post_json(ports["http"], "/api/v1/otp", otp)[0] == 202

            for i in range(50):  # what a flood of per-request state does: ~5 MB
                r.set(f"filler:{i}", b"x" * (100 << 10))
            wait_until(
                lambda: post_json(ports["http"], "/api/v1/otp", otp)[0] == 503,
                15,
                interval=0.5,
                what="the portal shedding load",
            )
            assert json.loads(post_json(ports["http"], "/api/v1/otp", otp)[1])["error"] == "busy"
            assert get("127.0.0.1", ports["http"], "/portal?nas_id=nas-local")[0] == 503
            assert get("127.0.0.1", ports["http"], "/healthz")[0] == 200
            metrics = get("127.0.0.1", ports["http"], "/metrics")[1].decode()
            limit = re.search(r"^citywifi_redis_memory_max_bytes (\S+)$", metrics, re.M)
            used = re.search(r"^citywifi_redis_memory_used_bytes (\S+)$", metrics, re.M)
            assert limit and float(limit.group(1)) == 8 << 20, metrics
            assert used and float(used.group(1)) > 4 << 20

            for status_type in ("Start", "Stop"):  # quota writes still fit
                reply = radclient(
                    ports["acct"],
                    "acct",
                    SECRET,
                    {
                        "Acct-Status-Type": status_type,
                        "Acct-Session-Id": "mem-1",
                        "Acct-Session-Time": 60,
                        "User-Name": "someone",
                        "Calling-Station-Id": "AA-BB-CC-00-06-01",
                    },
                )
                assert reply.code == "Accounting-Response", reply.output
            r.delete(*(f"filler:{i}" for i in range(50)))
            wait_until(
                lambda: post_json(ports["http"], "/api/v1/otp", otp)[0] != 503,
                15,
                interval=0.5,
                what="the portal back",
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def post_json(port: int, path: str, body: str) -> tuple[int, bytes]:
    data = body.encode()
    with connect(port) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        return status_of(read_all(s))


# --------------------------------------------------------------------------- finding 12


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PAR1" + os.urandom(300))  # starts like Parquet, is not
    return path


def quarantined_total(ctl: Controller) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("citywifi_archive_quarantined_files_total") or 0.0


async def http_get(ctl: Controller, path: str, token: str, **params: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{ctl.http_port}{path}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        return resp.status, await resp.read()


async def test_finding_12_corrupt_archive_file_is_quarantined_and_work_goes_on(
    ctl: Controller, clock: Clock, redis_proc: RedisProcess
) -> None:
    """One unreadable ``part-*.parquet`` made the subsidy report and the audit export a 500
    and made maintenance raise before the audit trim. Now the file is moved to
    ``quarantine/`` and counted, the report, the export, sealing and the trim go on, and
    the trim runs on its own schedule even with Redis down."""
    await use(ctl, "A", "station", 3600, "q1")
    await drain(ctl)
    archive = ctl.archive.root
    day = "2025-11-10"
    bad_part = corrupt(archive / "sessions" / day / "part-1762747200000-0badf11e.parquet")
    bad_audit = corrupt(archive / "audit" / day / "part-1762747200000-0badf11e.parquet")
    before = quarantined_total(ctl)

    status, body = await http_get(
        ctl, "/api/v1/reports/subsidy", TOKENS["reports"], **{"from": day, "to": day}
    )
    assert status == 200, body
    assert b"station" in body  # the good rows are still there
    status, body = await http_get(
        ctl, "/api/v1/audit/export", TOKENS["audit"], **{"from": day, "to": day}
    )
    assert status == 200, body
    assert not bad_part.exists() and not bad_audit.exists()
    assert (archive / "quarantine" / "sessions" / day / bad_part.name).exists()
    assert (archive / "quarantine" / "audit" / day / bad_audit.name).exists()
    assert quarantined_total(ctl) == before + 2

    # maintenance: a closed day with a corrupt part is sealed without it, and the audit
    # trim removes a day past retention even though that day's file is corrupt too
    bad_part = corrupt(archive / "sessions" / day / "part-1762747200001-0badf11e.parquet")
    old = (datetime(2025, 11, 10, tzinfo=SH) - timedelta(days=90)).date().isoformat()
    corrupt(archive / "audit" / old / "part-1754800000000-0badf11e.parquet")
    clock.set(datetime(2025, 11, 20, 12, 0, tzinfo=SH))
    assert ctl.archiver is not None
    ctl.archiver.maintain(clock(), wait=True)
    assert (archive / "sessions" / day / "sealed.parquet").exists()
    assert not bad_part.exists() and not (archive / "audit" / old).exists()
    status, body = await http_get(
        ctl, "/api/v1/reports/subsidy", TOKENS["reports"], **{"from": day, "to": day}
    )
    assert status == 200 and b"station" in body

    # the trim's own schedule: Redis down (the outbox cannot drain), still trimmed
    redis_proc.stop()
    older = (datetime(2025, 11, 10, tzinfo=SH) - timedelta(days=91)).date().isoformat()
    corrupt(archive / "audit" / older / "part-1754700000000-0badf11e.parquet")
    ctl.archiver.trim_every = 0.2
    await until(lambda: not (archive / "audit" / older).exists(), 10, what="the audit trim")
    redis_proc.start()


# --------------------------------------------------------------------------- finding 13


async def test_finding_13_edge_dates_are_400_with_the_json_error(
    ctl: Controller, clock: Clock
) -> None:
    """``from=0001-01-01``, ``to=9999-12-31``, a report of the month 9999-12 and a block
    ``until=0001-01-01`` were 500s (the date arithmetic overflowed). Now every date goes
    through one bounded parser: 400 and ``{"error", "message"}``, on every endpoint."""
    await use(ctl, "A", "station", 60, "d1")
    pid = await use(ctl, "A", "station", 60, "d2")
    base = f"http://127.0.0.1:{ctl.http_port}"
    audit, reports, admin = TOKENS["audit"], TOKENS["reports"], TOKENS["admin"]
    edge = [
        "0001-01-01",
        "9999-12-31",
        "9999-12-31T23:59:59+14:00",
        "0001-01-01T00:00-12:00",
        "1969-12-31",
        "2026-W01-1",
        "20261201",
        "２０２６-１２-０１",
        "2026-02-30",
        "",
        " ",
        "2026-12-01T25:00",
        "x" * 5000,
    ]
    cases: list[tuple[str, str, str, dict[str, Any]]] = []
    for value in edge:
        for other in ("2025-11-10", "9999-12-31"):
            for path, token in (
                ("/api/v1/audit/export", audit),
                ("/api/v1/reports/subsidy", reports),
            ):
                cases.append(("GET", path, token, {"from": value, "to": other}))
                cases.append(("GET", path, token, {"from": other, "to": value}))
        cases.append(("POST", "/api/v1/admin/block", admin, {"person": pid, "until": value}))
    cases += [
        (
            "GET",
            "/api/v1/reports/subsidy",
            reports,
            {"from": "9999-12-01", "to": "9999-12-31", "group": group},
        )
        for group in ("venue", "venue_type", "district", "operator")
    ]
    cases += [
        ("POST", "/api/v1/admin/block", admin, {"person": pid, "days": days})
        for days in (1e308, "Infinity", True, 2.5, "１", "-1", 10**30, [], {})
    ]
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/v1/admin/block",
            data='{"person": "' + pid + '", "days": Infinity}',
            headers={"Authorization": f"Bearer {admin}"},
        ) as resp:
            assert resp.status == 400, await resp.text()
        for method, path, token, params in cases:
            headers = {"Authorization": f"Bearer {token}"}
            if method == "GET":
                ctx = http.get(base + path, params=params, headers=headers)
            else:
                ctx = http.post(base + path, json=params, headers=headers)
            async with ctx as resp:
                text = await resp.text()
                assert resp.status == 400, (method, path, params, resp.status, text)
                answer = json.loads(text)
                assert set(answer) == {"error", "message"} and answer["message"], answer
    status, body = await http_get(
        ctl,
        "/api/v1/audit/export",
        audit,
        **{"from": "0001-01-01", "to": "2025-11-10"},
    )
    assert (status, json.loads(body)["error"]) == (400, "bad_date")


def test_finding_13_edge_dates_from_the_commands(tmp_path: Path, redis_proc: RedisProcess) -> None:
    """The commands share the parser: exit 2 and one line naming the parameter."""
    config = str(city_config(tmp_path, redis_proc.url))
    out = str(tmp_path / "out")
    for argv in (
        ["report", "subsidy", "--from", "9999-12-01", "--to", "9999-12-31", "--group", "district"],
        ["report", "subsidy", "--from", "0001-01-01", "--to", "0001-01-31"],
        ["audit", "export", "--from", "0001-01-01", "--to", "9999-12-31"],
    ):
        assert citywifi([*argv, "--config", config, "--out", out, "--no-drain"]) == 2
    assert citywifi(["admin", "block", "--config", config, "--person", "0" * 20,
                     "--until", "0001-01-01"]) == 2  # fmt: skip
    assert not Path(out).exists()


# --------------------------------------------------------------------------- finding 14


def test_finding_14_data_files_are_owner_only_whatever_the_umask() -> None:
    """Outside systemd (umask 022, here 000: the worst) the AOF, ``sms.jsonl`` and their
    directories came out world-readable. Now files are 0600 and directories 0700."""
    base = Path(tempfile.mkdtemp(prefix="cw14-", dir="/tmp"))
    try:
        config, ports = live_config(
            base, "", extra=portal_tables(sms='backend = "file"\npath = "var/sms/sms.jsonl"')
        )
        with serving(config, ports["http"], lambda: os.umask(0)) as serve:
            otp = json.dumps({"phone": "13800138062", "nas_id": "nas-local"})
            assert post_json(ports["http"], "/api/v1/otp", otp)[0] == 202
            reply = radclient(
                ports["auth"], "auth", SECRET, {"User-Name": "nobody", "User-Password": "x"}
            )
            assert reply.code == "Access-Reject"
            var = base / "var"
            wait_until(
                lambda: any((var / "archive" / "audit").glob("*/part-*.parquet")),
                15,
                interval=0.1,
                what="an audit part",
            )
            assert serve.stop() == 0  # the AOF flushed
        made = [p for p in var.rglob("*") if not p.is_socket()]
        assert any(p.name == "sms.jsonl" for p in made)
        assert any("appendonly" in p.name for p in made if p.is_file())
        loose = {
            str(p.relative_to(base)): oct(stat.S_IMODE(p.stat().st_mode))
            for p in [var, *made]
            if stat.S_IMODE(p.stat().st_mode) & 0o077
        }
        assert loose == {}, loose
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_finding_14_metrics_on_their_own_listener(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """``/metrics`` was served to citizens on the portal's listener. With
    ``[http] metrics_bind`` it is served only there (with the health checks)."""
    text = write_config(tmp_path, redis_proc.url).read_text()
    text = text.replace(
        '[http]\nbind = "127.0.0.1"\nport = 0\n',
        '[http]\nbind = "127.0.0.1"\nport = 0\nmetrics_bind = "127.0.0.1"\nmetrics_port = 0\n',
    )
    (tmp_path / "citywifi.toml").write_text(text)
    config: Config = load_config(tmp_path / "citywifi.toml")
    ctl = Controller(config)
    await ctl.start()
    try:
        assert ctl.metrics_port and ctl.metrics_port != ctl.http_port
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ctl.http_port}/metrics") as resp:
                assert resp.status == 404
            async with http.get(f"http://127.0.0.1:{ctl.http_port}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{ctl.metrics_port}/metrics") as resp:
                assert resp.status == 200 and "citywifi_redis_memory_max_bytes" in (
                    await resp.text()
                )
            async with http.get(f"http://127.0.0.1:{ctl.metrics_port}/portal") as resp:
                assert resp.status == 404  # the portal is not on the metrics listener
    finally:
        await ctl.stop()
