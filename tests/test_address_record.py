"""The address record through a real ``citywifi serve`` (embedded Redis, the example
config): FreeRADIUS's radclient sends a Start carrying Framed-IP-Address,
Framed-IPv6-Prefix and Huawei's NAT port-block attributes; ``citywifi audit who`` finds
the person while the session is open (by the public IPv4 and a port of the block, and by
an IPv6 address inside the prefix), still after the Stop (closed, from the archive), and
says "none" outside the session; the NAT-log listener inside ``serve`` ([natlog] listen)
receives UDP syslog lines whose rows land in the archive and lead to the same person.
Every lookup is in the export log."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.radclient import radclient
from tests.support.redis_proc import free_port, wait_until
from tests.test_serve_cli import (
    CITYWIFI,
    ROOT,
    SECRET,
    Serve,
    example_copy,
    issue_login,
    pap_login,
    serving,
)

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(shutil.which("radclient") is None, reason="radclient not installed"),
]

SH = ZoneInfo("Asia/Shanghai")
PUBLIC = "203.0.113.5"  # the NAS's public address, a port block of it per subscriber
NAT_PUBLIC = "203.0.113.7"  # a CGN's public address (its syslog NAT log)
PRIVATE = "10.1.2.3"
PREFIX = "2001:db8:1:2::/64"
MAC = "AA-BB-CC-DD-EE-07"


def natlog_section(syslog: int, ipfix: int) -> str:
    return f"""
[natlog]
listen = true
bind = "127.0.0.1"
syslog_port = {syslog}
ipfix_port = {ipfix}
template_timeout = 600

[[natlog.exporters]]
address = "127.0.0.1"
nas = "localhost"
"""


@pytest.fixture
def served_nat(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int], Serve]]:
    config, ports = example_copy(tmp_path)
    ports["syslog"] = free_port(socket.SOCK_DGRAM)
    ports["ipfix"] = free_port(socket.SOCK_DGRAM)
    text = config.read_text()
    client = 'id = "localhost"\naddress = "127.0.0.1"\n'
    assert client in text
    text = text.replace(client, client + f'public_addresses = ["{PUBLIC}/32"]\n')
    config.write_text(text + natlog_section(ports["syslog"], ports["ipfix"]))
    with serving(config) as serve:
        yield config, ports, serve


def who(config: Path, ip: str, port: int, at: datetime) -> dict[str, Any]:
    out = subprocess.run(
        [
            *CITYWIFI,
            "audit",
            "who",
            "--config",
            str(config),
            "--ip",
            ip,
            "--port",
            str(port),
            "--at",
            at.strftime("%Y-%m-%dT%H:%M:%S"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def persons(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(m["via"], m["person"]) for m in doc["matches"] if m["person"] is not None]


def test_who_finds_open_and_closed_sessions_by_port_block_ipv6_and_nat_log(
    served_nat: tuple[Path, dict[str, int], Serve],
) -> None:
    config, ports, serve = served_nat
    login = issue_login(config, mac=MAC)
    accept = pap_login(ports["auth"], login, MAC)
    assert accept.code == "Access-Accept", accept.output
    klass = accept.first("Class")
    assert klass
    base: dict[str, str | int] = {
        "Acct-Session-Id": "addr-1",
        "User-Name": str(login["username"]),
        "Calling-Station-Id": MAC,
        "Class": klass,
        "NAS-IP-Address": "127.0.0.1",
        "Framed-IP-Address": PRIVATE,
        "Framed-IPv6-Prefix": PREFIX,
        "Huawei-NAT-Public-Address": PUBLIC,
        "Huawei-NAT-Start-Port": 40000,
        "Huawei-NAT-End-Port": 40255,
    }
    start = radclient(ports["acct"], "acct", SECRET, {**base, "Acct-Status-Type": "Start"})
    assert start.code == "Accounting-Response", start.output
    began = int(time.time())
    at = datetime.fromtimestamp(began + 1, SH)

    # open: by the public IPv4 and a port of the NAS's block
    doc = who(config, PUBLIC, 40100, at)
    assert doc["result"] == "found", doc
    [(via, person)] = persons(doc)
    assert via == "port-block"
    assert person["phone"] == "+8613800138000"
    assert person["open"] is True and person["session_stop"] == ""
    assert (person["nat_ip"], person["nat_ports"]) == (PUBLIC, "40000-40255")
    assert person["ipv6_prefix"] == PREFIX and person["nas_public"] == f"{PUBLIC}/32"

    # open: by an IPv6 address inside the prefix
    doc6 = who(config, "2001:db8:1:2::abcd", 443, at)
    assert [(v, p["person_id"]) for v, p in persons(doc6)] == [("ipv6-prefix", person["person_id"])]
    # the block's other ports, another prefix: nobody
    assert who(config, PUBLIC, 40256, at)["result"] == "none"
    assert who(config, "2001:db8:1:3::1", 443, at)["result"] == "none"

    # the NAT-log listener inside serve: a CGN's syslog lines land in the archive
    line = (
        f"<166>{at.strftime('%b %d %Y %H:%M:%S')} cgn1 : %ASA-6-305011: Built dynamic TCP"
        f" translation from inside:{PRIVATE}/50000 to outside:{NAT_PUBLIC}/6000"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(line.encode(), ("127.0.0.1", ports["syslog"]))
    nat_dir = config.parent / "var" / "archive" / "nat"
    wait_until(
        lambda: any(nat_dir.rglob("*.parquet")), 20, what="NAT rows written by serve's listener"
    )
    via_log = who(config, NAT_PUBLIC, 6000, at)
    [(via, logged)] = persons(via_log)
    assert via == "nat-log" and logged["person_id"] == person["person_id"]
    assert via_log["matches"][0]["translation"]["private_ip"] == PRIVATE

    # Stop: the closed session (from the archive) still answers; before it: none
    stop = radclient(
        ports["acct"],
        "acct",
        SECRET,
        {
            **base,
            "Acct-Status-Type": "Stop",
            "Acct-Session-Time": max(2, int(time.time()) - began + 1),
            "Acct-Terminate-Cause": "User-Request",
        },
    )
    assert stop.code == "Accounting-Response", stop.output
    closed = who(config, PUBLIC, 40000, at)
    [(via, after)] = persons(closed)
    assert via == "port-block" and after["open"] is False and after["session_stop"]
    assert after["phone"] == "+8613800138000" and after["record_id"] == person["record_id"]
    assert persons(who(config, "2001:db8:1:2::1", 80, at))[0][1]["open"] is False
    before = datetime.fromtimestamp(began - 3600, SH)
    assert who(config, PUBLIC, 40000, before)["result"] == "none"

    # every lookup is in the export log, without a phone number
    log = (config.parent / "var" / "archive" / "audit-exports.jsonl").read_text()
    entries = [json.loads(x) for x in log.splitlines()]
    lookups = [e for e in entries if e.get("query") == "who"]
    assert len(lookups) == 8
    assert all("+8613800138000" not in json.dumps(e) for e in lookups)
    assert serve.stop() == 0
