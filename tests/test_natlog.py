"""The address record end to end: sessions from real RADIUS accounting (a live
Controller), a NAT log file (syslog lines and IPFIX) imported into the archive, and
``audit who`` over HTTP and the command line finding the right person for a public
IP:port at a time, "none" outside every translation and session, every lookup in the
export log; the UDP listener drops datagrams from unknown sources; translations are
purged after the retention."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.cli.main import main as cli_main
from controller.cli.serve import Controller
from controller.config import Config, ConfigError, load_config
from controller.services import audit, natlog
from controller.storage import nat_archive
from controller.storage.archive import Archive
from tests.support.ipfix_kit import (
    NAT44_SESSION,
    PORT_BLOCK,
    block_record,
    data_set,
    message,
    session_record,
    template_set,
)
from tests.support.redis_proc import RedisProcess, until
from tests.test_radius_integration import acct, login
from tests.test_reports_helpers import AP, PHONES, SH, TOKENS, Clock, city_config, drain

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: ctl (city and clock are this module's)

EXPORTER = "127.0.0.1"
PUBLIC = "203.0.113.5"
NATLOG = f"""
[natlog]
retention_days = 60
lookback_hours = 6
bind = "127.0.0.1"
syslog_port = 0
ipfix_port = 0

[[natlog.exporters]]
address = "{EXPORTER}"
nas = "nas-local"
"""


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2025, 11, 10, hh, mm, ss, tzinfo=SH)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return load_config(city_config(tmp_path, redis_proc.url, NATLOG))


@pytest.fixture
def clock() -> Clock:
    return Clock(at(12, 0))


async def session(ctl: Controller, person: str, mac: str, sid: str, ip: str, seconds: int) -> str:
    """A login, then a Stop at the hospital AP now (the clock) after ``seconds``."""
    issued = await login(ctl, mac, phone=PHONES[person])
    reply = await acct(
        ctl,
        "Stop",
        sid,
        seconds,
        user=issued.username,
        mac=mac,
        Called_Station_Id=f"{AP['hospital']}:i-Test",
        Framed_IP_Address=ip,
        Acct_Terminate_Cause="User-Request",
    )
    assert reply is not None
    return issued.person


def nat_files(tmp: Path) -> tuple[Path, Path]:
    """The same CGN's logs as syslog text (Cisco ASA lines) and as IPFIX (a port block)."""
    syslog = tmp / "cgn.log"
    syslog.write_text(
        "<166>Nov 10 2025 11:41:00 cgn1 : %ASA-6-305011: Built dynamic TCP translation from"
        f" inside:10.1.2.3/50000 to outside:{PUBLIC}/40000\n"
        "garbage that is no NAT line\n"
        "<166>Nov 10 2025 11:42:00 cgn1 : %ASA-6-305011: Built dynamic TCP translation from"
        f" inside:10.1.2.3/99999 to outside:{PUBLIC}/40001\n"  # bad port: counted
        "<166>Nov 10 2025 11:55:00 cgn1 : %ASA-6-305012: Teardown dynamic TCP translation"
        f" from inside:10.1.2.3/50000 to outside:{PUBLIC}/40000 duration 0:14:00\n"
    )
    ipfix = tmp / "cgn.ipfix"
    ipfix.write_bytes(
        message([template_set(256, NAT44_SESSION), template_set(257, PORT_BLOCK)])
        + message(
            [
                data_set(
                    257,
                    PORT_BLOCK,
                    [block_record(ms(at(11, 45)), 16, "10.1.2.4", PUBLIC, 2048, 2303)],
                ),
                data_set(
                    256,
                    NAT44_SESSION,
                    [session_record(ms(at(11, 46)), 4, 17, "10.1.2.9", 7000, PUBLIC, 3000)],
                ),
            ]
        )
    )
    return syslog, ipfix


async def ask(ctl: Controller, token: str | None, **params: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{ctl.http_port}/api/v1/audit/who", params=params, headers=headers
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_audit_who_finds_the_person_and_logs_every_lookup(
    ctl: Controller, clock: Clock, tmp_path: Path
) -> None:
    pid_a = await session(ctl, "A", "AA-BB-CC-00-00-0A", "s-a", "10.1.2.3", 1200)  # 11:40-12:00
    pid_b = await session(ctl, "B", "AA-BB-CC-00-00-0B", "s-b", "10.1.2.4", 600)  # 11:50-12:00
    await drain(ctl)
    syslog, ipfix = nat_files(tmp_path)
    config = ctl.config
    got = natlog.import_file(ctl.archive, config, syslog, "auto", EXPORTER, clock())
    assert got.translations == 2 and got.tally.ignored == 1
    assert dict(got.tally.bad) == {"asa:bad_address": 1}
    got = natlog.import_file(ctl.archive, config, ipfix, "auto", EXPORTER, clock())
    assert got.translations == 2 and not got.tally.bad
    assert ctl.archive.days("nat") == [at(0, 0).date()]

    audit = TOKENS["audit"]
    status, doc = await ask(ctl, audit, ip=PUBLIC, port="40000", at="2025-11-10T11:50:00")
    assert status == 200 and doc["result"] == "found"
    (match,) = doc["matches"]
    assert match["translation"]["private_ip"] == "10.1.2.3"
    assert match["translation"]["nas"] == "nas-local"
    person = match["person"]
    assert person["person_id"] == pid_a and person["phone"] == PHONES["A"]
    assert person["mac"] == "AA-BB-CC-00-00-0A" and person["venue"] == "hospital"
    # the port block (IPFIX natEvent 16) leads to B, inside B's session
    status, doc = await ask(ctl, audit, ip=PUBLIC, port="2100", at="2025-11-10T11:52:00")
    assert doc["result"] == "found" and doc["matches"][0]["person"]["person_id"] == pid_b
    # same block before B's session began: a translation, but nobody online with it
    status, doc = await ask(ctl, audit, ip=PUBLIC, port="2100", at="2025-11-10T11:47:00")
    assert doc["result"] == "none" and doc["matches"][0]["person"] is None
    # after the teardown, and before the create: none
    for moment in ("2025-11-10T11:58:00", "2025-11-10T11:40:30"):
        status, doc = await ask(ctl, audit, ip=PUBLIC, port="40000", at=moment)
        assert status == 200 and doc == {**doc, "result": "none", "matches": []}
    # a translation whose private address no session ever had
    _, doc = await ask(ctl, audit, ip=PUBLIC, port="3000", at="2025-11-10T11:50:00")
    assert doc["result"] == "none" and doc["matches"][0]["translation"]["private_ip"] == "10.1.2.9"
    # another public address: none
    _, doc = await ask(ctl, audit, ip="198.51.100.1", port="40000", at="2025-11-10T11:50:00")
    assert doc["result"] == "none"

    # roles: admin gets the person id without the phone; reports is refused
    status, doc = await ask(ctl, TOKENS["admin"], ip=PUBLIC, port="40000", at="2025-11-10T11:50")
    assert status == 200 and doc["matches"][0]["person"]["person_id"] == pid_a
    assert "phone" not in doc["matches"][0]["person"]
    status, doc = await ask(ctl, TOKENS["reports"], ip=PUBLIC, port="40000", at="2025-11-10T11:50")
    assert status == 403 and doc["error"] == "forbidden"
    assert (await ask(ctl, None, ip=PUBLIC, port="1", at="2025-11-10T11:50"))[0] == 401
    for port in ("70000", "²", "-1", "000000080"):
        status, doc = await ask(ctl, audit, ip=PUBLIC, port=port, at="2025-11-10T11:50")
        assert status == 400 and doc["error"] == "bad_port"
    status, doc = await ask(ctl, audit, ip="nope", port="1", at="2025-11-10T11:50")
    assert status == 400 and doc["error"] == "bad_ip"

    entries = [e for e in ctl.archive.export_log() if e.get("query") == "who"]
    assert len(entries) == 8  # every answered lookup, found or not; refused ones are not
    first = entries[0]
    assert first["who"] == "token:security-officer" and first["records"] == 1
    assert first["person_ids"] == [pid_a] and first["ip"] == PUBLIC and first["port"] == 40000
    assert first["at_time"] == "2025-11-10T11:50:00+08:00"
    assert entries[-1]["who"] == "token:ops"
    text = (ctl.archive.root / "audit-exports.jsonl").read_text()
    assert PHONES["A"] not in text and PHONES["B"] not in text


async def test_cli_import_and_who(
    ctl: Controller,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid = await session(ctl, "A", "AA-BB-CC-00-00-0A", "s-a", "10.1.2.3", 1200)
    await drain(ctl)
    syslog, _ = nat_files(tmp_path)
    monkeypatch.setattr("controller.cli.natlog.time.time", clock)  # the test's day
    config = str(ctl.config.source)
    argv = ["natlog", "import", str(syslog), "--config", config, "--source", EXPORTER]
    assert await asyncio.to_thread(cli_main, argv) == 0
    assert "2 translation(s) stored" in capsys.readouterr().err
    argv = ["audit", "who", "--config", config, "--no-drain", "--ip", PUBLIC, "--port", "40000"]
    assert await asyncio.to_thread(cli_main, [*argv, "--at", "2025-11-10T11:45"]) == 0
    out = answer(capsys.readouterr().out)
    assert out[0] == f"{PUBLIC}:40000 at 2025-11-10T11:45:00+08:00: found"
    assert pid in out[1] and PHONES["A"] in out[1] and len(out) == 2
    assert await asyncio.to_thread(cli_main, [*argv, "--at", "2025-11-10T13:00"]) == 0
    assert answer(capsys.readouterr().out) == [f"{PUBLIC}:40000 at 2025-11-10T13:00:00+08:00: none"]
    assert await asyncio.to_thread(cli_main, [*argv, "--at", "soon"]) == 2
    log = [e for e in ctl.archive.export_log() if e.get("query") == "who"]
    assert [e["records"] for e in log] == [1, 0] and log[0]["who"].startswith("cli:")


async def test_who_without_any_session_record_says_none(
    ctl: Controller, clock: Clock, tmp_path: Path
) -> None:
    """Translations but no audit day at all (nobody closed a session yet): none."""
    syslog, _ = nat_files(tmp_path)
    natlog.import_file(ctl.archive, ctl.config, syslog, "syslog", EXPORTER, clock())
    assert ctl.archive.days("audit") == []
    status, doc = await ask(ctl, TOKENS["audit"], ip=PUBLIC, port="40000", at="2025-11-10T11:50")
    assert status == 200 and doc["result"] == "none"
    assert doc["matches"][0]["translation"]["nas"] == "nas-local"
    assert doc["matches"][0]["person"] is None


def answer(out: str) -> list[str]:
    """The command's answer without the structlog lines the test run also prints."""
    return [line for line in out.splitlines() if not re.match(r"\d{4}-\d\d-\d\d \d", line)]


def _udp(source: str, port: int, payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.sendto(payload, ("127.0.0.1", port))


async def test_listener_takes_exporters_only_and_purges_after_retention(
    ctl: Controller, clock: Clock
) -> None:
    listener = natlog.NatLogListener(ctl.archive, ctl.config, clock)
    await listener.start()
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    try:
        ipfix, syslog = listener.ports["ipfix"], listener.ports["syslog"]
        templates = message([template_set(256, NAT44_SESSION)])
        data = message(
            [
                data_set(
                    256,
                    NAT44_SESSION,
                    [session_record(ms(at(11, 59)), 4, 6, "10.1.2.3", 1, PUBLIC, 41000)],
                )
            ]
        )
        # the attack: a forged mapping from a host that is not an exporter (127.0.0.2
        # is loopback too, but not configured): dropped before it is parsed
        forged = message(
            [
                data_set(
                    256,
                    NAT44_SESSION,
                    [session_record(ms(at(11, 59)), 4, 6, "10.6.6.6", 1, PUBLIC, 41001)],
                )
            ]
        )
        _udp("127.0.0.2", ipfix, templates)
        _udp("127.0.0.2", ipfix, forged)
        _udp("127.0.0.2", syslog, b"[1762747140.0] [NEW] tcp 6 120 src=10.6.6.6 dst=1.1.1.1"
             b" sport=1 dport=2 src=1.1.1.1 dst=203.0.113.5 sport=2 dport=41002")  # fmt: skip
        _udp(EXPORTER, ipfix, templates)
        _udp(EXPORTER, ipfix, data)
        _udp(EXPORTER, syslog, b"<134>Nov 10 11:59:30 cgn : %ASA-6-305011: Built dynamic UDP"
             b" translation from inside:10.1.2.4/5353 to outside:203.0.113.5/41003")  # fmt: skip
        await until(lambda: listener.dropped == 3 and listener.tally.parsed == 2, what="datagrams")
        await until(listener.flush)  # written (or already written by the timer)
        await until(lambda: listener.stored == 2, what="stored")
    finally:
        stop.set()
        await task
        listener.close()
    rows = await asyncio.to_thread(
        nat_archive.covering, ctl.archive, PUBLIC, 41000, 0, ms(at(23, 0)), SH
    )
    assert [(t.private_ip, t.source) for t in rows] == [("10.1.2.3", EXPORTER)]
    for port in (41001, 41002):
        assert not nat_archive.covering(ctl.archive, PUBLIC, port, 0, ms(at(23, 0)), SH)
    (t,) = nat_archive.covering(ctl.archive, PUBLIC, 41003, 0, ms(at(23, 0)), SH)
    assert t.time_ms == ms(at(11, 59, 30)) and t.protocol == 17

    # retention 60 days: on 2026-01-09 the 10th of November is 60 days old, still kept;
    # gone on 2026-01-10 (like the audit log)
    root = ctl.archive.root / "nat"
    assert (
        natlog.trim(ctl.archive, ctl.config, datetime(2026, 1, 9, 23, 59, tzinfo=SH).timestamp())
        == []
    )
    assert [p.name for p in root.iterdir()] == ["2025-11-10"]
    removed = natlog.trim(
        ctl.archive, ctl.config, datetime(2026, 1, 10, 0, 1, tzinfo=SH).timestamp()
    )
    assert [d.isoformat() for d in removed] == ["2025-11-10"]
    assert list(root.iterdir()) == []
    # serve's audit trim schedule (and `citywifi audit trim`) purges NAT days too
    write = nat_archive.write
    await asyncio.to_thread(write, ctl.archive, rows, SH, ms(at(12, 0)))
    assert [p.name for p in root.iterdir()] == ["2025-11-10"]
    audit.trim(ctl.archive, ctl.config, datetime(2026, 1, 10, 0, 1, tzinfo=SH).timestamp())
    assert list(root.iterdir()) == []
    # a file older than the retention is not stored at all
    clock.set(datetime(2026, 1, 10, 12, tzinfo=SH))
    late = natlog.NatLogListener(ctl.archive, ctl.config, clock)
    await late.start()
    try:
        late.received("ipfix", templates, EXPORTER)
        late.received("ipfix", data, EXPORTER)
        assert await late.flush() == 0 and late.tally.bad["expired"] == 1
    finally:
        late.close()
    assert list(root.iterdir()) == []


def test_natlog_config_is_checked(tmp_path: Path) -> None:
    bad = """
[natlog]
retention_days = 30
lookback_hours = 0
bind = "everywhere"
colour = "blue"

[[natlog.exporters]]
address = "192.0.2.300"

[[natlog.exporters]]
address = "192.0.2.1"
nas = "nas-locl"
"""
    with pytest.raises(ConfigError) as exc:
        load_config(city_config(tmp_path, "redis://127.0.0.1:1", bad))
    text = "\n".join(str(p) for p in exc.value.problems)
    for expected in (
        "natlog.retention_days",
        "natlog.lookback_hours",
        "'everywhere' is not an IP address",
        "unknown key 'colour'",
        "'192.0.2.300' is not an IP address",
        "client 'nas-locl' is not defined",
    ):
        assert expected in text, (expected, text)
    good = load_config(city_config(tmp_path, "redis://127.0.0.1:1", NATLOG))
    assert good.natlog.exporters[0].nas == "nas-local" and good.natlog.retention_days == 60


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger not installed")
async def test_listener_reads_rfc5424_structured_data_from_a_real_syslog_client(
    ctl: Controller, clock: Clock
) -> None:
    """util-linux ``logger`` (an independent RFC 5424 sender) writes a Juniper-style
    RT_FLOW_SESSION_CREATE with its structured data; the listener stores the mapping."""
    listener = natlog.NatLogListener(ctl.archive, ctl.config, clock)
    await listener.start()
    try:
        params = {
            "source-address": "10.1.2.7",
            "source-port": "51000",
            "nat-source-address": PUBLIC,
            "nat-source-port": "42000",
            "protocol-id": "17",
        }
        argv = ["logger", "--udp", "--server", "127.0.0.1", "--port"]
        argv += [str(listener.ports["syslog"]), "--rfc5424", "--msgid", "RT_FLOW_SESSION_CREATE"]
        argv += ["--sd-id", "junos@2636.1.1.1.2.25"]
        for key, value in params.items():
            argv += ["--sd-param", f'{key}="{value}"']
        before = time.time()
        proc = await asyncio.create_subprocess_exec(*argv, "session created")
        assert await proc.wait() == 0
        await until(lambda: listener.tally.parsed == 1, what="the logger line")
        assert await listener.flush() == 1
    finally:
        listener.close()
    far = ms(datetime(2100, 1, 1, tzinfo=SH))
    (t,) = nat_archive.covering(ctl.archive, PUBLIC, 42000, 0, far, SH)
    assert (t.private_ip, t.private_port, t.protocol, t.source) == ("10.1.2.7", 51000, 17, EXPORTER)
    assert before - 2 <= t.time_ms / 1000 <= time.time() + 2  # logger's own RFC 5424 time


async def test_listener_keeps_translations_while_the_archive_cannot_be_written(
    ctl: Controller, clock: Clock, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    listener = natlog.NatLogListener(Archive(blocked), ctl.config, clock)
    await listener.start()
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    try:
        line = (
            b"<134>Nov 10 11:59:30 cgn : %ASA-6-305011: Built dynamic UDP translation from"
            b" inside:10.1.2.4/5353 to outside:203.0.113.5/41003"
        )
        _udp(EXPORTER, listener.ports["syslog"], line)
        await until(lambda: listener.tally.parsed == 1, what="the line")
        with pytest.raises(OSError):
            await listener.flush()
        assert len(listener.pending) == 1 and listener.stored == 0  # not lost
        listener.archive = ctl.archive  # the disk is back
        await until(lambda: listener.stored == 1, timeout=15, what="the retried write")
    finally:
        stop.set()
        await task
        listener.close()
    assert nat_archive.covering(ctl.archive, PUBLIC, 41003, 0, ms(at(23, 0)), SH)
