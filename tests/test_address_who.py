"""The address record in a live Controller (real Redis, real RADIUS and HTTP sockets):
an Accounting Start carrying Delegated-IPv6-Prefix (RFC 4818) and an RFC 8045
IP-Port-Range makes ``GET /api/v1/audit/who`` answer for the open session (by the port
block, by an IPv6 address inside the prefix, by a NAT-log translation to its private
address), and for the closed one after the Stop; "none" before it and outside the block.
The NAT-log listener inside ``serve`` ([natlog] listen) stores what it receives, ages
IPFIX templates out after ``natlog.template_timeout`` (RFC 7011 §8.4) and takes new
exporters on SIGHUP. Audit files written before the address columns still read."""

from __future__ import annotations

import dataclasses
import socket
import struct
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from controller.cli.serve import Controller
from controller.config import Config, load_config
from controller.config.reload import SETTINGS, restart_needed
from controller.domain.audit import AUDIT_SCHEMA, session_audit_row
from controller.services import audit, natlog
from controller.storage import nat_archive
from controller.storage.archive import Archive
from tests.support.ipfix_kit import NAT44_SESSION, data_set, message, session_record, template_set
from tests.support.redis_proc import RedisProcess, until
from tests.test_natlog import EXPORTER, NATLOG, PUBLIC, ask, at, ms
from tests.test_radius_integration import login
from tests.test_reports_helpers import AP, PHONES, SH, TOKENS, Clock, city_config, drain

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: ctl (city and clock are this module's)

BLOCK_IP = "203.0.113.9"
DELEGATED = "2001:db8:aa00::/56"
LISTEN = NATLOG.replace("[natlog]\n", "[natlog]\nlisten = true\ntemplate_timeout = 60\n")


def prefix_value(prefix: str) -> bytes:
    """RFC 4818 §3 / RFC 3162 §2.3: Reserved, Prefix-Length, the prefix's octets."""
    address, length = prefix.split("/")
    packed = socket.inet_pton(socket.AF_INET6, address)
    return bytes([0, int(length)]) + packed[: (int(length) + 7) // 8]


def port_range_value(public: str, first: int, last: int) -> bytes:
    """RFC 8045 §3.2.3 IP-Port-Range as the value of Extended-Type-1 (241.6, RFC 6929)."""

    def tlv(kind: int, value: bytes) -> bytes:
        return bytes([kind, len(value) + 2]) + value

    return bytes([6]) + (
        tlv(8, struct.pack("!I", 1))  # IP-Port-Alloc: Allocation
        + tlv(3, socket.inet_aton(public))  # IP-Port-Ext-IPv4-Addr
        + tlv(9, struct.pack("!I", first))  # IP-Port-Range-Start
        + tlv(10, struct.pack("!I", last))  # IP-Port-Range-End
    )


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return load_config(city_config(tmp_path, redis_proc.url, LISTEN))


@pytest.fixture
def clock() -> Clock:
    return Clock(at(11, 50))


async def start_session(ctl: Controller) -> tuple[str, dict[str, object]]:
    issued = await login(ctl, "AA-BB-CC-00-00-0A", phone=PHONES["A"])
    attrs: dict[str, object] = dict(
        user=issued.username,
        mac="AA-BB-CC-00-00-0A",
        Called_Station_Id=f"{AP['hospital']}:i-Test",
        Framed_IP_Address="10.1.2.3",
    )
    reply = await acct_raw(ctl, "Start", 0, attrs)
    assert reply is not None
    return issued.person, attrs


async def acct_raw(ctl: Controller, status: str, seconds: int, attrs: dict[str, object]) -> object:
    """``acct`` with the address attributes added as raw values (types 123 and 241)."""
    from tests.test_radius_integration import client

    async with client(ctl, acct=True) as c:
        kw = {k: v for k, v in attrs.items() if k not in ("user", "mac")}
        req = c.acct_request(
            Acct_Status_Type=status,
            Acct_Session_Id="s-addr",
            Acct_Session_Time=seconds,
            Calling_Station_Id=str(attrs["mac"]),
            NAS_Identifier="nas-1",
            User_Name=str(attrs["user"]),
            **kw,
        )
        req[123] = [prefix_value(DELEGATED)]
        req[241] = [port_range_value(BLOCK_IP, 1024, 2047)]
        return await c.request(req, timeout=2.0)


def people(doc: dict[str, object]) -> list[tuple[str, str, bool]]:
    matches = doc["matches"]
    assert isinstance(matches, list)
    return [
        (m["via"], m["person"]["person_id"], m["person"]["open"])
        for m in matches
        if m["person"] is not None
    ]


async def test_who_answers_for_open_then_closed_sessions(
    ctl: Controller, clock: Clock, tmp_path: Path
) -> None:
    pid, attrs = await start_session(ctl)
    clock.set(at(12, 0))
    token = TOKENS["audit"]
    status, doc = await ask(ctl, token, ip=BLOCK_IP, port="1500", at="2025-11-10T11:55:00")
    assert status == 200 and doc["result"] == "found", doc
    assert people(doc) == [("port-block", pid, True)]
    person = doc["matches"][0]["person"]
    assert person["phone"] == PHONES["A"] and doc["matches"][0]["translation"] is None
    assert (person["nat_ip"], person["nat_ports"]) == (BLOCK_IP, "1024-2047")
    assert person["ipv6_delegated"] == DELEGATED and person["session_stop"] == ""
    _, doc = await ask(ctl, token, ip="2001:db8:aa00:ff::1", port="443", at="2025-11-10T11:55")
    assert people(doc) == [("ipv6-prefix", pid, True)]
    # admin: the person id, no phone, also for an open session
    _, doc = await ask(ctl, TOKENS["admin"], ip=BLOCK_IP, port="1024", at="2025-11-10T11:55")
    assert people(doc) == [("port-block", pid, True)]
    assert "phone" not in doc["matches"][0]["person"]
    # outside: before the Start, beyond the block, outside the prefix, in the future
    for ip, port, moment in (
        (BLOCK_IP, "1500", "2025-11-10T11:49:59"),
        (BLOCK_IP, "2048", "2025-11-10T11:55"),
        ("2001:db8:ab00::1", "443", "2025-11-10T11:55"),
        (BLOCK_IP, "1500", "2025-11-10T14:00"),
    ):
        _, doc = await ask(ctl, token, ip=ip, port=port, at=moment)
        assert doc["result"] == "none" and doc["matches"] == [], (ip, port, moment)

    # a CGN's translation to the open session's private address
    (tmp_path / "cgn.log").write_text(
        "<166>Nov 10 2025 11:51:00 cgn1 : %ASA-6-305011: Built dynamic TCP translation from"
        f" inside:10.1.2.3/50000 to outside:{PUBLIC}/40000\n"
    )
    natlog.import_file(ctl.archive, ctl.config, tmp_path / "cgn.log", "auto", EXPORTER, clock())
    _, doc = await ask(ctl, token, ip=PUBLIC, port="40000", at="2025-11-10T11:55")
    assert people(doc) == [("nat-log", pid, True)]
    # NAT64 (IPFIX natEvent 6): the private side is an IPv6 address in the delegated prefix
    nat64 = ((323, 8), (230, 1), (4, 1), (27, 16), (7, 2), (225, 4), (227, 2))
    record = [ms(at(11, 52)), 6, 6, "2001:db8:aa00:5::9", 51000, PUBLIC, 40500]
    (tmp_path / "cgn.ipfix").write_bytes(
        message([template_set(300, nat64), data_set(300, nat64, [record])])
    )
    got = natlog.import_file(
        ctl.archive, ctl.config, tmp_path / "cgn.ipfix", "auto", EXPORTER, clock()
    )
    assert got.translations == 1, got.tally
    _, doc = await ask(ctl, token, ip=PUBLIC, port="40500", at="2025-11-10T11:55")
    assert people(doc) == [("nat-log", pid, True)]
    assert doc["matches"][0]["translation"]["private_ip"] == "2001:db8:aa00:5::9"

    reply = await acct_raw(ctl, "Stop", 600, {**attrs, "Acct_Terminate_Cause": "User-Request"})
    assert reply is not None
    await drain(ctl)
    _, doc = await ask(ctl, token, ip=BLOCK_IP, port="2047", at="2025-11-10T11:55")
    assert people(doc) == [("port-block", pid, False)]
    assert doc["matches"][0]["person"]["session_stop"] == "2025-11-10T12:00:00+08:00"
    _, doc = await ask(ctl, token, ip=PUBLIC, port="40000", at="2025-11-10T11:55")
    assert people(doc) == [("nat-log", pid, False)]
    _, doc = await ask(ctl, token, ip=PUBLIC, port="40500", at="2025-11-10T11:55")
    assert people(doc) == [("nat-log", pid, False)]  # NAT64, closed: from the archive
    _, doc = await ask(ctl, token, ip=BLOCK_IP, port="1500", at="2025-11-10T12:00:01")
    assert doc["result"] == "none"

    # the export carries the address record too
    q = audit.parse_query({"from": "2025-11-10", "to": "2025-11-10"}, ctl.config)
    rows = [
        r for r in audit.query_records(ctl.archive, ctl.config, q, clock()) if r.kind == "session"
    ]
    assert [(r.ipv6_delegated, r.nat_ip, r.nat_ports) for r in rows] == [
        (DELEGATED, BLOCK_IP, "1024-2047")
    ]
    lookups = [e for e in ctl.archive.export_log() if e.get("query") == "who"]
    assert len(lookups) == 13 and PHONES["A"] not in str(lookups)


def template_msg(seq: int = 0) -> bytes:
    return message([template_set(256, NAT44_SESSION)], seq=seq)


def data_msg(when: datetime, port: int) -> bytes:
    record = session_record(ms(when), 4, 6, "10.1.2.3", 50000, PUBLIC, port)
    return message([data_set(256, NAT44_SESSION, [record])])


async def test_serve_listener_stores_expires_templates_and_reloads(
    ctl: Controller, clock: Clock, city: Config
) -> None:
    listener = ctl.natlog
    assert listener is not None and set(listener.ports) == {"syslog", "ipfix"}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:

        def send(data: bytes) -> None:
            sock.sendto(data, ("127.0.0.1", listener.ports["ipfix"]))

        send(template_msg())
        await until(lambda: listener.tally.parsed == 0 and listener.decoder.templates, 5)
        clock.set(at(11, 50, 50))  # 50 s after the template: still known
        send(data_msg(at(11, 50, 50), 41000))
        await until(lambda: listener.tally.parsed == 1, 5)
        clock.set(at(11, 52))  # 120 s without a refresh (timeout 60): gone
        send(data_msg(at(11, 52), 41001))
        await until(lambda: listener.tally.bad["ipfix:template_expired"] == 1, 5)
        send(data_msg(at(11, 52), 41002))  # and stays gone: unknown now
        await until(lambda: listener.tally.bad["ipfix:no_template"] == 1, 5)
        send(template_msg(1))  # the exporter's periodic resend brings it back
        send(data_msg(at(11, 52), 41003))
        await until(lambda: listener.tally.parsed == 2, 5)
        sock.sendto(  # a syslog line too
            b"<166>Nov 10 2025 11:52:00 cgn1 : %ASA-6-305011: Built dynamic TCP translation"
            b" from inside:10.1.2.4/50001 to outside:203.0.113.5/42000",
            ("127.0.0.1", listener.ports["syslog"]),
        )
        await until(lambda: listener.tally.parsed == 3, 5)
    await listener.flush()
    assert listener.stored == 3
    tz = ctl.config.quota.timezone
    rows = nat_archive.covering(ctl.archive, PUBLIC, 41000, 0, ms(at(13, 0)), tz)
    assert [(t.port_start, t.private_ip) for t in rows] == [(41000, "10.1.2.3")]
    ports = sorted(
        t.port_start
        for p in (41001, 41002, 41003, 42000)
        for t in nat_archive.covering(ctl.archive, PUBLIC, p, 0, ms(at(13, 0)), tz)
    )
    assert ports == [41003, 42000]  # the expired template's and the unknown one's dropped

    # SIGHUP: other exporters at once; the sockets stay (a change is a restart)
    path = city.source
    exporter = f'address = "{EXPORTER}"\nnas = "nas-local"'
    assert exporter in path.read_text()
    text = path.read_text().replace(exporter, 'address = "192.0.2.77"\nnas = "nas-local"')
    path.write_text(text.replace("template_timeout = 60", "template_timeout = 90"))
    assert await ctl.reload(path)
    assert listener.allowed == {"192.0.2.77"} and listener.decoder.template_timeout == 90
    assert "natlog" in SETTINGS
    moved = load_config(path)
    other = dataclasses.replace(
        moved, natlog=dataclasses.replace(moved.natlog, syslog_port=5514, listen=False)
    )
    assert restart_needed(ctl.config, other) == ["natlog.listen", "natlog.syslog_port"]


def test_audit_files_without_the_address_columns_still_read(tmp_path: Path) -> None:
    """A day written before this version (no address columns) next to a new part: the
    export reads both (the old rows with empty address fields), the file is not judged
    unreadable, and a merge of the day keeps every row."""
    archive = Archive(tmp_path / "archive")
    tz = SH
    day = at(11, 0).date()
    new = session_audit_row(
        "p2|nas/s2|1762746000",
        {"pid": "p2", "start": "1762746000", "closed": "1762746600", "ip": "10.0.0.2"}
        | {"ipv6_prefix": "2001:db8::/64", "nat_ip": BLOCK_IP, "nat_ports": "1-2"},
        "+8613800138002",
        tz,
        1762746700000,
    )
    archive.write("audit", [new])
    old_names = [(n, t) for n, t in AUDIT_SCHEMA if n not in ("ipv6", "ipv6_prefix")]
    old_names = old_names[: [n for n, _ in old_names].index("archived_at") + 1]
    old_path = archive.day_dir("audit", day) / "part-1762746000000-00000000.parquet"
    values = {
        "day": f"DATE '{day.isoformat()}'",
        "record_id": "'p1|nas/s1|1762743600'",
        "kind": "'session'",
        "time": "1762743600",
        "phone": "'+8613800138001'",
        "pid": "'p1'",
        "ip": "'10.0.0.1'",
        "start": "1762743600",
        "stop": "1762744200",
        "result": "'closed'",
        "archived_at": "1762744300000",
    }
    select = ", ".join(f"CAST({values.get(n, 'NULL')} AS {t}) AS {n}" for n, t in old_names)
    con = duckdb.connect()
    con.execute(f"COPY (SELECT {select}) TO '{old_path}' (FORMAT parquet)")
    con.close()
    assert archive.readable(old_path)

    config = _config(tmp_path)

    def read() -> list[tuple[str, str, str, str]]:
        q = audit.AuditQuery(since=1762704000, until=1762790400)
        rows = audit.query_records(archive, config, q, 1762790000)
        return [(r.pid, r.phone, r.ipv6_prefix, r.nat_ports) for r in rows]

    assert read() == [
        ("p1", "+8613800138001", "", ""),
        ("p2", "+8613800138002", "2001:db8::/64", "1-2"),
    ]
    for n in range(40):  # enough parts for a merge of the day
        archive.write("audit", [new._replace(record_id=f"p2|nas/s{n + 10}|1762746000")])
    assert archive.merge("audit", day)
    assert len(archive.parts("audit", day)) == 1
    assert read()[:2] == [
        ("p1", "+8613800138001", "", ""),
        ("p2", "+8613800138002", "2001:db8::/64", "1-2"),
    ]


def _config(tmp_path: Path) -> Config:
    (tmp_path / "cfg").mkdir()
    return load_config(city_config(tmp_path / "cfg", "redis://127.0.0.1:1/0"))


async def test_who_with_redis_down_answers_from_the_archive_and_says_so(
    tmp_path: Path,
) -> None:
    from controller.storage.redis_conn import client_from_url
    from controller.storage.store import Store

    config = _config(tmp_path)
    archive = Archive(tmp_path / "archive")
    store = Store(client_from_url("redis://127.0.0.1:1/0"))  # nothing listens there
    q = natlog.parse_who(BLOCK_IP, "1500", "2025-11-10T11:55", config)
    try:
        doc = await natlog.who_live(
            archive, store, config, "cli:test", q, at(12, 0).timestamp(), with_phone=True
        )
    finally:
        await store.close()
    assert doc["result"] == "none" and doc["open_sessions"] == "unavailable"
    assert [e["records"] for e in archive.export_log()] == [0]  # still logged
