"""The audit log: login decisions and closed sessions from real RADIUS traffic, exported
by time range, phone and MAC with the ``audit`` role only, every export logged, and
records older than the retention gone."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from controller.cli.serve import Controller
from controller.config import ConfigError, load_config
from radius.attrs import Code
from tests.support.redis_proc import RedisProcess
from tests.test_radius_integration import acct, auth, login
from tests.test_reports_helpers import AP, PHONES, SH, TOKENS, Clock, city_config, drain, use

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: city, clock, ctl

ROOT = Path(__file__).resolve().parent.parent
MAC_A = "AA-BB-CC-00-00-0A"


async def export(
    ctl: Controller, token: str | None = TOKENS["audit"], **params: str
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{ctl.http_port}/api/v1/audit/export", params=params, headers=headers
        ) as resp,
    ):
        return resp.status, await resp.read()


def records(body: bytes) -> list[dict[str, str]]:
    assert body.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


async def traffic(ctl: Controller) -> None:
    """A accepted and online at the hospital; B rejected (wrong password)."""
    issued = await login(ctl, MAC_A, phone=PHONES["A"])
    called = f"{AP['hospital']}:i-Test"
    ok = await auth(ctl, issued.username, issued.password, mac=MAC_A, Called_Station_Id=called)
    assert ok.code == Code.ACCESS_ACCEPT
    other = await login(ctl, phone=PHONES["B"])
    bad = await auth(ctl, other.username, "wrong", mac="AA-BB-CC-00-00-0B")
    assert bad.code == Code.ACCESS_REJECT
    await acct(
        ctl,
        "Stop",
        "aud1",
        1200,
        user=issued.username,
        mac=MAC_A,
        Called_Station_Id=called,
        Framed_IP_Address="10.1.2.3",
        Acct_Terminate_Cause="User-Request",
    )
    await drain(ctl)


async def test_logins_and_sessions_are_recorded_with_the_phone(
    ctl: Controller, clock: Clock
) -> None:
    await traffic(ctl)
    status, body = await export(ctl, **{"from": "2025-11-10", "to": "2025-11-10"})
    assert status == 200
    rows = records(body)
    assert [(r["result"], r["phone"]) for r in rows] == [  # in time order
        ("closed", PHONES["A"]),  # started 11:40 (1200 s before its Stop)
        ("accept", PHONES["A"]),  # 12:00
        ("reject:bad_password", PHONES["B"]),
    ]
    session = next(r for r in rows if r["result"] == "closed")
    assert session["mac"] == MAC_A and session["ip"] == "10.1.2.3"
    assert session["venue"] == "hospital" and session["nas"] == "nas-local"
    assert session["ap"].startswith(AP["hospital"]) and session["terminate_cause"] == "1"
    start = datetime.fromisoformat(session["session_start"])
    stop = datetime.fromisoformat(session["session_stop"])
    assert (stop - start) == timedelta(seconds=1200) and stop.timestamp() == clock()
    accept = next(r for r in rows if r["result"] == "accept")
    assert accept["venue"] == "hospital" and accept["person_id"] == session["person_id"]


async def test_export_by_phone_and_by_mac(ctl: Controller, clock: Clock) -> None:
    await traffic(ctl)
    day = {"from": "2025-11-10", "to": "2025-11-10"}
    _, body = await export(ctl, **day, phone="138 0013 8002")  # any notation
    assert {r["phone"] for r in records(body)} == {PHONES["B"]}
    _, body = await export(ctl, **day, mac=MAC_A.lower().replace("-", ":"))
    got = records(body)
    assert {r["mac"] for r in got} == {MAC_A} and len(got) == 2
    status, body = await export(ctl, **day, format="json", phone=PHONES["A"])
    doc = json.loads(body)
    assert status == 200 and doc["count"] == 2
    # a time range inside the day (local time)
    _, body = await export(ctl, **{"from": "2025-11-10T00:00", "to": "2025-11-10T11:50"})
    assert [r["result"] for r in records(body)] == ["closed"]  # the session began at 11:40
    status, body = await export(ctl, **{"from": "2025-11-10", "to": "2025-11-09"})
    assert status == 400 and json.loads(body)["error"] == "bad_range"
    status, body = await export(ctl, **day, phone="12345")
    assert status == 400 and json.loads(body)["error"] == "bad_phone"


async def test_export_requires_the_audit_role_and_is_logged(ctl: Controller) -> None:
    await traffic(ctl)
    day = {"from": "2025-11-10", "to": "2025-11-10"}
    assert (await export(ctl, token=None, **day))[0] == 401
    assert (await export(ctl, token="nope", **day))[0] == 401
    for role in ("reports", "admin"):
        status, body = await export(ctl, token=TOKENS[role], **day)
        assert status == 403 and json.loads(body)["error"] == "forbidden"
    assert ctl.archive.export_log() == []  # refused requests export nothing
    await export(ctl, **day, phone=PHONES["A"])
    log = ctl.archive.export_log()
    assert len(log) == 1
    entry = log[0]
    assert entry["who"] == "token:security-officer" and entry["records"] == 2
    assert entry["from"].startswith("2025-11-10T00:00") and entry["person_id"]
    text = (ctl.archive.root / "audit-exports.jsonl").read_text()
    assert PHONES["A"] not in text and "13800138001" not in text


async def test_records_older_than_the_retention_are_gone(ctl: Controller, clock: Clock) -> None:
    await traffic(ctl)  # 2025-11-10
    clock.set(datetime(2025, 12, 20, 12, tzinfo=SH))
    await use(ctl, "C", "mall", 60, "recent")
    await drain(ctl)
    assert ctl.archive.days("audit") == [date(2025, 11, 10), date(2025, 12, 20)]
    # retention 60 days: on 2026-01-09 the 10th of November is 60 days old, still kept
    clock.set(datetime(2026, 1, 9, 12, tzinfo=SH))
    assert ctl.archiver is not None
    ctl.archiver.maintain(clock(), wait=True)
    assert date(2025, 11, 10) in ctl.archive.days("audit")
    clock.set(datetime(2026, 1, 10, 12, tzinfo=SH))
    ctl.archiver.maintain(clock(), wait=True)
    assert ctl.archive.days("audit") == [date(2025, 12, 20)]
    status, body = await export(ctl, **{"from": "2025-11-10", "to": "2025-12-31"})
    assert status == 200 and [r["venue"] for r in records(body)] == ["mall"]
    # the usage ledger (no phone numbers) is not trimmed with the audit log
    assert date(2025, 11, 10) in ctl.archive.days("sessions")


def test_retention_below_60_days_is_refused(tmp_path: Path) -> None:
    path = city_config(tmp_path, "redis://127.0.0.1:1/0")
    path.write_text(path.read_text().replace("retention_days = 60", "retention_days = 59"))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "audit.retention_days: must be at least 60" in str(exc.value)
    assert "MPS Order 82" in str(exc.value)


async def test_cli_export_and_trim(tmp_path: Path, redis_proc: RedisProcess) -> None:
    config_path = city_config(tmp_path, redis_proc.url)
    config = load_config(config_path)
    now = datetime.now(SH).replace(microsecond=0)
    ctl = Controller(config, clock=lambda: now.timestamp())
    await ctl.start()
    try:
        await traffic(ctl)
    finally:
        await ctl.stop()
    out = tmp_path / "audit.csv"
    day = now.date().isoformat()
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "audit", "export", "--config", str(config_path),
         "--from", day, "--to", day, "--mac", MAC_A, "--out", str(out)],
        cwd=ROOT, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert {r["mac"] for r in records(out.read_bytes())} == {MAC_A}
    assert ctl.archive.export_log()[-1]["who"].startswith("cli:")
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "audit", "trim", "--config", str(config_path)],
        cwd=ROOT, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and b"removed 0 day(s)" in result.stderr
