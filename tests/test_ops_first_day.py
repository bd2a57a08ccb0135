"""An operations team's first day (issue 14, items 9-12), as the operator meets it.

Each test runs the real ``citywifi`` command as a subprocess (real sockets, the
embedded or a real external redis-server, a test-made systemd notify socket) and reads
what an operator reads: the exit code, stderr, systemd's notifications.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from controller.cli.startup import EXIT_OSERR, EXIT_UNAVAILABLE
from controller.storage.redis_embedded import env_pid_alive
from tests.conftest import write_config
from tests.support.redis_proc import RedisProcess, free_port, until, wait_until

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CITYWIFI = [sys.executable, "-m", "controller.cli"]
CONFIG_ENV = "CITYWIFI_CONFIG"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [*CITYWIFI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def events(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def city(tmp_path: Path, redis_url: str = "", **ports: int) -> Path:
    """A test city with the given ports (0: any), logging at info (what an operator sees)."""
    path = write_config(tmp_path, redis_url)
    text = path.read_text().replace('level = "warning"', 'level = "info"')
    for key, name in (("auth_port", "auth"), ("acct_port", "acct"), ("port", "http")):
        text = re.sub(rf"(?m)^{key} = 0$", f"{key} = {ports.get(name, 0)}", text)
    path.write_text(text)
    return path


def embedded_redis_gone(tmp_path: Path) -> bool:
    redis_dir = tmp_path / "var" / "redis"
    pid_file = redis_dir / "redis.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else 0
    return not (redis_dir / "redis.sock").exists() and not (pid and env_pid_alive(pid))


# ------------------------------------------------------------------- item 9: a taken port


@pytest.mark.parametrize(
    ("workers", "taken"),
    [(1, "acct"), (2, "acct"), (1, "http"), (2, "auth")],
    ids=["one-process-udp", "supervisor-udp", "one-process-tcp", "supervisor-udp-auth"],
)
def test_item_09_a_taken_port_fails_fast_naming_it_and_stops_the_embedded_redis(
    tmp_path: Path, workers: int, taken: str
) -> None:
    kind = socket.SOCK_STREAM if taken == "http" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as squatter:  # another program has the port
        squatter.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            squatter.listen()
        port = squatter.getsockname()[1]
        config = city(tmp_path, **{taken: port})
        started = time.monotonic()
        out = run_cli("serve", "--config", str(config), "--workers", str(workers), timeout=60)
        took = time.monotonic() - started
    assert out.returncode == EXIT_OSERR, out.stderr
    assert took < 30, f"took {took:.1f} s to give up"
    proto = "tcp" if taken == "http" else "udp"
    failed = [e for e in events(out.stderr) if e["event"].endswith("start_failed")]
    assert failed, out.stderr
    for event in failed:
        assert f"127.0.0.1:{port}/{proto}" in event["error"], event
        assert "address already in use" in event["error"], event
        assert event["exit_code"] == EXIT_OSERR
    if workers > 1:  # the supervisor passes its worker's cause on, and which worker it was
        (sup,) = [e for e in failed if e["event"] == "supervisor.start_failed"]
        assert sup["worker"] in range(workers)
    assert "Traceback" not in out.stderr
    assert embedded_redis_gone(tmp_path), "the embedded redis-server was left running"


# ---------------------------------------------------------- item 12: errors an operator meets


def test_item_12_redis_unreachable_at_start_is_one_line_and_exit_69(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens here
    url = f"redis://:s3cret-redis-password@127.0.0.1:{closed}/0"
    config = city(tmp_path, url)
    config.write_text(
        config.read_text().replace('data_dir = "var"', 'data_dir = "var"\nstartup_wait = 1')
    )
    for workers in ("1", "2"):
        out = run_cli("serve", "--config", str(config), "--workers", workers)
        assert out.returncode == EXIT_UNAVAILABLE, out.stderr
        assert "Traceback" not in out.stderr
        failed = [e for e in events(out.stderr) if e["event"].endswith("start_failed")]
        assert failed and all(f"127.0.0.1:{closed}" in e["error"] for e in failed), out.stderr
        assert "s3cret-redis-password" not in out.stderr  # the password is redacted
    out = run_cli(
        "issue-login", "--config", str(config), "--phone", "13800138000", "--client", "nas-local"
    )
    assert out.returncode == EXIT_UNAVAILABLE, out.stderr
    (line,) = out.stderr.strip().splitlines()[-1:]
    assert line.startswith("citywifi issue-login: Redis") and "Traceback" not in out.stderr


def test_item_12_version(tmp_path: Path) -> None:
    out = run_cli("--version")
    assert out.returncode == 0, out.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert out.stdout.strip() == f"citywifi {project['version']}"


def test_item_12_config_comes_from_the_environment_or_etc(tmp_path: Path) -> None:
    config = city(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    # --config is no longer required: $CITYWIFI_CONFIG names the file
    out = run_cli("check-config", env={CONFIG_ENV: str(config)})
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr
    out = run_cli(
        "admin", "sessions", "--person", "0" * 20, env={CONFIG_ENV: str(tmp_path / "nope.toml")}
    )
    assert out.returncode == 1 and "cannot read config file" in out.stderr, out.stderr
    # none of the three: a usage error that names all of them
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    out = subprocess.run(
        [*CITYWIFI, "serve"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )
    if not Path("/etc/citywifi/citywifi.toml").exists():
        assert out.returncode == 2, out.stderr
        assert CONFIG_ENV in out.stderr and "/etc/citywifi/citywifi.toml" in out.stderr
    # and the help says where it looks
    for command in (["serve"], ["issue-login"], ["admin", "sessions"], ["report", "subsidy"]):
        help_text = " ".join(run_cli(*command, "--help").stdout.split())
        assert CONFIG_ENV in help_text and "/etc/citywifi/citywifi.toml" in help_text, command
    # the order: --config, then the variable, then the system-wide file if it exists
    from controller.config import config_path

    etc = tmp_path / "etc-citywifi.toml"
    given = tmp_path / "given.toml"
    assert config_path(given, {CONFIG_ENV: "x.toml"}, etc) == given
    assert config_path(None, {CONFIG_ENV: "x.toml"}, etc) == Path("x.toml")
    assert config_path(None, {}, etc) is None
    etc.write_text("")
    assert config_path(None, {}, etc) == etc


def test_item_12_admin_commands_do_not_start_the_enforcer(tmp_path: Path) -> None:
    config = city(tmp_path)  # embedded Redis: the command starts it for its duration
    for action in ("sessions", "disconnect", "unblock"):
        out = run_cli("admin", action, "--config", str(config), "--person", "0" * 20)
        assert out.returncode == 0, out.stderr
        assert "enforcer.started" not in out.stderr, f"admin {action}: {out.stderr}"
    assert embedded_redis_gone(tmp_path)


# --------------------------------------------- item 13: monitoring that survives a restart


class Serving:
    """``citywifi serve --workers 1`` on fixed ports, stopped by SIGTERM."""

    def __init__(self, config: Path, http_port: int) -> None:
        self.http_port = http_port
        self.proc = subprocess.Popen(
            [*CITYWIFI, "serve", "--config", str(config), "--workers", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.stderr: list[str] = []
        threading.Thread(
            target=lambda: self.stderr.extend(self.proc.stderr or []), daemon=True
        ).start()
        wait_until(self.ready, 30, 0.05, "serve ready")

    def ready(self) -> bool:
        assert self.proc.poll() is None, "".join(self.stderr)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2):
                return True
        except OSError:
            return False

    def metric(self, name: str, **labels: str) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    return float(sample.value)
        return None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


async def test_item_13_client_last_seen_survives_a_restart_and_costs_one_write_a_second(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    from tests.conftest import SECRET
    from tests.support.pyrad_client import RadiusClient

    ports = {"auth": free_port(socket.SOCK_DGRAM), "acct": free_port(socket.SOCK_DGRAM)}
    ports["http"] = free_port()
    config = city(tmp_path, redis_proc.url, **ports)
    watch = redis.Redis(port=redis_proc.port)
    writes: list[float] = []  # ZADDs to the last-seen key, seen by MONITOR
    stop_watching = threading.Event()

    def monitor() -> None:
        with redis.Redis(port=redis_proc.port).monitor() as m:
            for command in m.listen():
                if "stats:client_seen" in command["command"] and "ZADD" in command["command"]:
                    writes.append(time.monotonic())
                if stop_watching.is_set():
                    return

    first = Serving(config, ports["http"])
    try:
        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        started = time.monotonic()
        async with RadiusClient(("127.0.0.1", ports["acct"]), SECRET.encode()) as c:
            for i in range(60):  # a busy NAS: many reports a second
                reply = await c.request(
                    c.acct_request(
                        Acct_Status_Type="Interim-Update",
                        Acct_Session_Id=f"s-{i % 5}",
                        Acct_Session_Time=60 + i,
                        User_Name=f"walk-in-{i % 5}",
                    ),
                    timeout=2.0,
                    retries=2,
                )
                assert reply is not None
        busy = time.monotonic() - started
        await until(lambda: watch.zscore("cw:stats:client_seen", "nas-local"), 10, "last seen")
        seen = watch.zscore("cw:stats:client_seen", "nas-local")
        assert seen is not None and abs(seen - time.time()) < 10
        await asyncio.sleep(1.5)  # a flush or two more, if it wrote per packet
        stop_watching.set()
        watch.ping()
        watcher.join(5)
        assert 1 <= len(writes) <= busy + 3, f"{len(writes)} writes for 60 packets in {busy:.1f} s"
    finally:
        assert first.stop() == 0
    # a restart: the process counters start from nothing, the last-seen time does not
    second = Serving(config, ports["http"])
    try:
        assert second.metric("citywifi_radius_client_requests_total", client="nas-local") is None
        gauge = "citywifi_radius_client_last_seen_timestamp_seconds"
        await until(lambda: second.metric(gauge, client="nas-local") is not None, 20, gauge)
        assert second.metric(gauge, client="nas-local") == watch.zscore(
            "cw:stats:client_seen", "nas-local"
        )
        assert second.metric(gauge, client="nas-local-2") is None  # never heard: no series
    finally:
        assert second.stop() == 0


# ------------------------------------------------- item 10: the systemd install and notify

SYSTEMD = DEPLOY / "systemd"


def unit(name: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze missing")
def test_item_10_units_verify_and_promise_readiness_and_a_watchdog(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on the units as shipped (binaries pointed at this
    machine's), with no complaint about them; Type=notify with a watchdog; the user
    exists in the sysusers file and the unit no longer uses DynamicUser."""
    binaries = {
        "/opt/citywifi/bin/citywifi": str(Path(sys.executable).parent / "citywifi"),
        "/usr/bin/redis-server": str(Path(sys.executable).parent / "redis-server"),
    }
    names = ["citywifi.service", "redis-citywifi.service"]
    for name in names:
        text = (SYSTEMD / name).read_text()
        for shipped, here in binaries.items():
            text = text.replace(shipped, here)
        (tmp_path / name).write_text(text)
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [
        line for line in (out.stdout + out.stderr).splitlines() if any(n in line for n in names)
    ]
    assert out.returncode == 0 and not complaints, out.stdout + out.stderr
    service = unit("citywifi.service")["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30s" and service["Restart"] == "on-failure"
    assert "DynamicUser" not in service and service["User"] == service["Group"] == "citywifi"
    assert "78" in service["RestartPreventExitStatus"].split()  # an invalid config stays failed
    users = (SYSTEMD / "citywifi.sysusers").read_text().splitlines()
    assert any(line.split()[:2] == ["u", "citywifi"] for line in users)
    redis_service = unit("redis-citywifi.service")["Service"]
    assert redis_service["LoadCredential"] == "redis.conf:/etc/citywifi/redis.conf"
    assert "%d/redis.conf" in redis_service["ExecStart"] and "ExecStop" not in redis_service


def as_user(uid: int, gid: int, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or not all(map(shutil.which, ("setpriv", "systemd-sysusers"))),
    reason="needs root, setpriv and systemd-sysusers (CI has them)",
)
def test_item_10_the_installed_config_is_readable_by_the_service_user_only() -> None:
    """The documented install, in a throw-away root: the sysusers file makes the user,
    the config is copied in with a strict umask, the tmpfiles file sets owners and modes.
    The service's uid then reads the config and CSVs but cannot change them, nor read
    the env file; the layout the old docs made (root:root 0750/0640) it could not read."""
    root = Path(tempfile.mkdtemp(prefix="citywifi-root-"))
    try:
        root.chmod(0o755)  # /tmp/pytest-of-root is 0700: the service user must get here
        for rel, source in (
            ("usr/lib/sysusers.d/citywifi.conf", "citywifi.sysusers"),
            ("usr/lib/tmpfiles.d/citywifi.conf", "citywifi.tmpfiles"),
        ):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text((SYSTEMD / source).read_text())
        (root / "etc").mkdir(mode=0o755)
        made = subprocess.run(
            ["systemd-sysusers", f"--root={root}"], capture_output=True, text=True, timeout=30
        )
        assert made.returncode == 0, made.stderr
        entry = next(
            line.split(":")
            for line in (root / "etc/passwd").read_text().splitlines()
            if line.startswith("citywifi:")
        )
        uid, gid = int(entry[2]), int(entry[3])
        assert uid != 0 and entry[6] == "/usr/sbin/nologin"
        etc = root / "etc/citywifi"
        old = os.umask(0o077)  # what an administrator's root shell may well have
        try:
            etc.mkdir()
            for name in ("citywifi.toml", "venues.example.csv", "env"):
                (etc / name).write_text("# test\n")
        finally:
            os.umask(old)
        made = subprocess.run(
            ["systemd-tmpfiles", f"--root={root}", "--create"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert made.returncode == 0, made.stderr
        for name in ("citywifi.toml", "venues.example.csv"):
            read = as_user(uid, gid, "cat", str(etc / name))
            assert read.returncode == 0, f"{name}: {read.stderr}"
        assert as_user(uid, gid, "sh", "-c", f"echo x >> {etc / 'citywifi.toml'}").returncode
        assert as_user(uid, gid, "touch", str(etc / "new.toml")).returncode
        assert "Permission denied" in as_user(uid, gid, "cat", str(etc / "env")).stderr
        assert (root / "var/lib/citywifi").stat().st_uid == uid  # the data directory
        # the layout the old instructions made: the service user is refused
        os.chown(etc, 0, 0)
        os.chown(etc / "citywifi.toml", 0, 0)
        refused = as_user(uid, gid, "cat", str(etc / "citywifi.toml"))
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
    finally:
        shutil.rmtree(root)


class NotifySocket:
    """A ``$NOTIFY_SOCKET`` as systemd makes it: datagrams with the sender's credentials."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)
        self.messages: list[tuple[int, dict[str, str], float]] = []  # (pid, fields, at)

    def drain(self) -> None:
        creds = struct.calcsize("3i")
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds))
            except BlockingIOError:  # all read: the pings keep coming, never wait for them
                return
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:creds])[0]
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((pid, fields, time.monotonic()))

    def has(self, key: str) -> bool:
        self.drain()
        return any(key in fields for _, fields, _ in self.messages)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_item_10_serve_says_ready_pings_the_watchdog_and_says_stopping(
    tmp_path: Path, workers: int
) -> None:
    ports = {"auth": free_port(socket.SOCK_DGRAM), "acct": free_port(socket.SOCK_DGRAM)}
    ports["http"] = free_port()
    config = city(tmp_path, **ports)  # embedded Redis: READY=1 waits for it too
    notify = NotifySocket(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "300000"}
    proc = subprocess.Popen(
        [*CITYWIFI, "serve", "--config", str(config), "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    try:
        wait_until(lambda: notify.has("READY") or proc.poll() is not None, 60, what="READY=1")
        # said once everything serves: the HTTP port answers /readyz and RADIUS is bound
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/readyz", timeout=5) as r:
            assert json.loads(r.read())["status"] == "ready"
        (ready,) = [f for _, f, _ in notify.messages if "READY" in f]
        assert ready["READY"] == "1" and f"auth {ports['auth']}/udp" in ready["STATUS"]
        at = next(t for _, f, t in notify.messages if "READY" in f)
        wait_until(
            lambda: (
                notify.has("WATCHDOG")
                and sum("WATCHDOG" in f and t > at for _, f, t in notify.messages) >= 3
            ),
            10,
            what="three watchdog pings after READY=1",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        wait_until(lambda: notify.has("STOPPING"), 5, what="STOPPING=1")
        # only the main process speaks (NotifyAccess=main): never a worker or redis-server
        assert {pid for pid, _, _ in notify.messages} == {proc.pid}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_item_10_a_failed_start_tells_systemd_why_and_never_ready(
    tmp_path: Path, workers: int
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        config = city(tmp_path, auth=port)
        notify = NotifySocket(tmp_path)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
        out = subprocess.run(
            [*CITYWIFI, "serve", "--config", str(config), "--workers", str(workers)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
    assert out.returncode == EXIT_OSERR, out.stderr
    notify.drain()
    notify.close()
    assert not any("READY" in f for _, f, _ in notify.messages)
    statuses = [f["STATUS"] for _, f, _ in notify.messages if "STATUS" in f]
    assert statuses and statuses[-1].startswith("failed: ")
    assert f"127.0.0.1:{port}/udp" in statuses[-1], statuses
