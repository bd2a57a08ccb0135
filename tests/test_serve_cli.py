"""The README path: ``citywifi serve`` with the example config and embedded Redis, driven
by ``citywifi issue-login`` and FreeRADIUS's radclient, as an operator would."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from tests.support.clocks import midday_zone
from tests.support.radclient import RadReply, radclient
from tests.support.redis_proc import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
CITYWIFI = [sys.executable, "-m", "controller.cli"]
SECRET = "testing123"  # the example's loopback client


def example_copy(directory: Path) -> tuple[Path, dict[str, int]]:
    for name in ("citywifi.example.toml", "venues.example.csv", "access_points.example.csv"):
        shutil.copy(ROOT / "deploy" / name, directory / name)
    ports = {
        "auth": free_port(socket.SOCK_DGRAM),
        "acct": free_port(socket.SOCK_DGRAM),
        "http": free_port(),
    }
    path = directory / "citywifi.example.toml"
    text = path.read_text()
    text = re.sub(r"(?m)^auth_port = 1812", f"auth_port = {ports['auth']}", text)
    text = re.sub(r"(?m)^acct_port = 1813", f"acct_port = {ports['acct']}", text)
    text = re.sub(r"(?m)^port = 8080", f"port = {ports['http']}", text)
    text = re.sub(r'(?m)^bind = "0.0.0.0"', 'bind = "127.0.0.1"', text)
    path.write_text(text)
    return path, ports


class Serve:
    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [*CITYWIFI, "serve", "--config", str(config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "serve.ready" in line:
                self.ready.set()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


@contextlib.contextmanager
def serving(config: Path) -> Iterator[Serve]:
    """``citywifi serve`` on ``config``, ready (its output in the failure when not), then
    stopped."""
    serve = Serve(config)
    try:
        assert serve.ready.wait(30), "serve did not get ready:\n" + "".join(serve.lines)
        yield serve
    finally:
        serve.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int], Serve]]:
    config, ports = example_copy(tmp_path)
    with serving(config) as serve:
        yield config, ports, serve


def issue_login(config: Path, phone: str = "13800138000", mac: str = "") -> dict[str, object]:
    args = [*CITYWIFI, "issue-login", "--config", str(config), "--phone", phone]
    args += ["--client", "localhost"]  # the example config's radclient client
    if mac:
        args += ["--mac", mac]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def pap_login(auth_port: int, login: dict[str, object], mac: str, **attrs: str) -> RadReply:
    """radclient's Access-Request with an issued login's username and password (PAP) from
    device ``mac`` (and ``attrs``), to ``serve``'s auth port."""
    return radclient(
        auth_port,
        "auth",
        SECRET,
        {
            "User-Name": str(login["username"]),
            "User-Password": str(login["password"]),
            "Calling-Station-Id": mac,
            **attrs,
        },
    )


def test_check_config_accepts_the_example() -> None:
    out = subprocess.run(
        [*CITYWIFI, "check-config", str(ROOT / "deploy/citywifi.example.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "OK" in out.stdout


def test_issue_login_rejects_a_landline(tmp_path: Path) -> None:
    config, _ = example_copy(tmp_path)
    out = subprocess.run(
        [*CITYWIFI, "issue-login", "--config", str(config), "--phone", "031166668888"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "mobile" in out.stderr


MORE_CLIENTS = """
[[clients]]
id = "ac-station"
address = "10.20.0.0/24"
secret = "Vq3-station-Lx9mZr7pW"
venue = "sjz-railway-station"
vendor = "generic"

[[clients]]
id = "ac-mall"
address = "10.21.4.0/22"
secret = "Vq3-mall-Lx9mZr7pWk2"
venue = "sjz-railway-station"
vendor = "generic"
"""


def test_issue_login_binds_to_a_named_client(tmp_path: Path) -> None:
    """Several [[clients]]: --client is needed, and a wrong one is named with the choices."""
    config, _ = example_copy(tmp_path)
    with config.open("a") as f:
        f.write(MORE_CLIENTS)
    base = [*CITYWIFI, "issue-login", "--config", str(config), "--phone", "13800138000"]
    for extra, said in (([], "several clients"), (["--client", "nope"], "'nope'")):
        out = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 2 and said in out.stderr, out.stderr
        assert "choose one of: localhost, ac-station, ac-mall" in out.stderr


def test_issue_login_defaults_to_the_only_client(tmp_path: Path) -> None:
    from controller.cli.logins import _issue_client
    from controller.config import load_config

    config_path, _ = example_copy(tmp_path)
    only = load_config(config_path)  # the example: one (loopback) client
    assert _issue_client(only, "") == "localhost"
    with config_path.open("a") as f:
        f.write(MORE_CLIENTS)
    config = load_config(config_path)
    assert _issue_client(config, "ac-mall") == "ac-mall"
    assert _issue_client(config, "") is None


def test_radclient_against_citywifi_serve(tmp_path: Path) -> None:
    # the day's zone at about noon: the 7,200 s session below lies wholly in today (with
    # Asia/Shanghai it would not before 02:00 there; the server is another process, so
    # it is the zone that moves, not a clock)
    config, ports = example_copy(tmp_path)
    zone = midday_zone()
    text = config.read_text()
    assert 'timezone = "Asia/Shanghai"' in text
    config.write_text(text.replace('timezone = "Asia/Shanghai"', f'timezone = "{zone}"', 1))
    with serving(config) as serve:
        _radclient_against(config, ports, serve, ZoneInfo(zone))


def _radclient_against(config: Path, ports: dict[str, int], serve: Serve, tz: ZoneInfo) -> None:
    login = issue_login(config, mac="aa:bb:cc:dd:ee:01")
    assert set(login) == {"username", "password", "expires_in"}
    mac = "AA-BB-CC-DD-EE-01"
    reply = pap_login(ports["auth"], login, mac, **{"NAS-Identifier": "sjz-local"})
    assert reply.code == "Access-Accept", reply.output
    timeout = int(reply.first("Session-Timeout") or 0)
    local = datetime.now(tz)
    seconds_to_midnight = 86400 - (local.hour * 3600 + local.minute * 60 + local.second)
    limit = 7200 if seconds_to_midnight > 7200 + 5 else seconds_to_midnight + 7200 + 5
    assert 0 < timeout <= limit
    assert reply.first("Acct-Interim-Interval") == "300"
    cls = reply.first("Class")
    assert cls and cls.startswith("0x")

    interim = {
        "Acct-Status-Type": "Interim-Update",
        "Acct-Session-Id": "radclient-1",
        "Acct-Session-Time": 7200,
        "User-Name": str(login["username"]),
        "Calling-Station-Id": mac,
        "Class": cls,
    }
    for _ in range(3):
        assert radclient(ports["acct"], "acct", SECRET, interim).code == "Accounting-Response"

    sock = config.parent / "var" / "redis" / "redis.sock"
    r = redis.Redis(unix_socket_path=str(sock))
    day = local.strftime("%Y%m%d")
    counters = [k for k in r.keys("cw:*:u:*")]
    total = sum(int(r.get(k) or 0) for k in counters)
    assert total == 7200, (counters, day)  # three identical Interim-Updates counted once

    second = issue_login(config, mac=mac)
    rejected = pap_login(ports["auth"], second, mac)
    assert rejected.code == "Access-Reject", rejected.output
    message = " ".join(rejected.attrs.get("Reply-Message", []))
    assert "00:00" in message and "resets at" in message

    status = radclient(ports["auth"], "status", SECRET, {})
    assert status.code == "Access-Accept", status.output

    assert serve.stop() == 0
    wait_until(lambda: not sock.exists(), 10, what="embedded redis socket removed")


def test_radclient_without_message_authenticator_is_dropped(
    served: tuple[Path, dict[str, int], Serve],
) -> None:
    config, ports, _ = served
    login = issue_login(config)
    reply = radclient(
        ports["auth"],
        "auth",
        SECRET,
        {"User-Name": str(login["username"]), "User-Password": str(login["password"])},
        message_authenticator=False,
        timeout=0.5,
        retries=1,
    )
    assert reply.code is None
