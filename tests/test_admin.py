"""Admin actions: pure helpers, the HTTP API (role admin) and the ``citywifi admin`` CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from controller.domain import quota
from controller.domain.identity import person_id
from controller.services.admin import AdminError, block_until, resolve_person
from radius.attrs import TerminateCause
from tests.support.redis_proc import RedisProcess
from tests.support.redis_proc import until as poll_until
from tests.test_enforcer_integration import INTERIM, NAS_B, City, city

SH = ZoneInfo("Asia/Shanghai")
NOON = int(datetime(2026, 11, 25, 12, 0, tzinfo=SH).timestamp())
KEY = b"test-person-key-0123456789"
PHONE = "+8613800138021"
ADMIN_TOKEN = "admin-token-for-tests"
REPORTS_TOKEN = "reports-token-for-tests"
TOKENS = f"""
[[api_tokens]]
name = "ops"
sha256 = "{hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()}"
roles = ["admin"]

[[api_tokens]]
name = "bureau"
sha256 = "{hashlib.sha256(REPORTS_TOKEN.encode()).hexdigest()}"
roles = ["reports"]
"""


# -- pure helpers


def test_a_person_is_named_by_phone_or_id_but_not_both() -> None:
    pid = person_id("+8613800138021", KEY)
    assert resolve_person(phone="138 0013 8021", person=None, person_key=KEY) == pid
    assert resolve_person(phone=None, person=pid.upper(), person_key=KEY) == pid
    for phone, person in ((None, None), ("13800138021", pid)):
        with pytest.raises(AdminError) as err:
            resolve_person(phone=phone, person=person, person_key=KEY)
        assert err.value.code == "bad_request"
    with pytest.raises(AdminError, match="phone"):
        resolve_person(phone="12345", person=None, person_key=KEY)
    with pytest.raises(AdminError, match="hex"):
        resolve_person(phone=None, person="not-an-id", person_key=KEY)


def test_block_ends() -> None:
    midnight = quota.next_midnight(NOON, SH)
    assert block_until(NOON, SH, until=None, days=None) == midnight
    assert block_until(NOON, SH, until=None, days=3) == midnight + 2 * 86400
    assert block_until(NOON, SH, until="2026-12-01", days=None) == int(
        datetime(2026, 12, 1, tzinfo=SH).timestamp()
    )
    assert block_until(NOON, SH, until="2026-11-25T18:30", days=None) == NOON + 6.5 * 3600
    assert block_until(NOON, SH, until="2026-11-25T10:30:00+00:00", days=None) == NOON + 6.5 * 3600
    for until, days, code in (
        ("2026-11-25T11:00", None, "bad_until"),
        ("yesterday", None, "bad_until"),
        (None, 0, "bad_days"),
        ("2026-12-01", 2, "bad_request"),
    ):
        with pytest.raises(AdminError) as err:
            block_until(NOON, SH, until=until, days=days)
        assert err.value.code == code


# -- HTTP API and CLI against a running controller and a simulated NAS


async def api(
    c: City, method: str, path: str, token: str | None = ADMIN_TOKEN, **kw: Any
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{c.ctl.http_port}/api/v1/admin/{path}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, **kw) as response,
    ):
        return response.status, await response.json()


async def test_the_api_needs_an_admin_token(tmp_path: Path, redis_proc: RedisProcess) -> None:
    async with city(tmp_path, redis_proc, (NAS_B,), tables=TOKENS) as c:
        status, body = await api(c, "GET", "sessions", token=None, params={"phone": PHONE})
        assert status == 401 and body["error"] == "unauthorized"
        status, body = await api(c, "GET", "sessions", token="nope", params={"phone": PHONE})
        assert status == 401 and body["error"] == "invalid_token"
        status, body = await api(c, "GET", "sessions", REPORTS_TOKEN, params={"phone": PHONE})
        assert status == 403 and body["error"] == "forbidden"
        status, body = await api(c, "GET", "sessions", params={"phone": "123"})
        assert status == 400 and body["error"] == "bad_phone"
        status, body = await api(c, "POST", "block", data=b"{not json")
        assert status == 400 and body["error"] == "bad_json"
        status, body = await api(c, "POST", "block", json={"phone": PHONE, "days": "x"})
        assert status == 400 and body["error"] == "bad_days"


async def test_sessions_disconnect_block_and_unblock_over_http(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    async with city(tmp_path, redis_proc, (NAS_B,), daily=7200, tables=TOKENS) as c:
        (b,) = c.sims
        pid, s = await c.login(b, PHONE, "02-00-00-00-0C-01")

        async def recorded() -> bool:  # the Start and one interim
            status, body = await api(c, "GET", "sessions", params={"phone": PHONE})
            return status == 200 and body["used_seconds"] >= INTERIM

        await poll_until(recorded, c.real(INTERIM + 5) + 5, "the first interim")
        status, body = await api(c, "GET", "sessions", params={"phone": PHONE})
        assert status == 200 and body["person"] == pid
        assert body["used_seconds"] == INTERIM
        assert body["remaining_seconds"] == 7200 - INTERIM
        assert body["blocked"] is None and body["projected_exhaustion"]
        (session,) = body["sessions"]
        assert session["acct_session_id"] == s.acct_session_id
        assert session["mac"] == "02-00-00-00-0C-01" and session["closing"] is None
        # disconnect now: the NAS ends the session (Admin-Reset)
        status, body = await api(c, "POST", "disconnect", json={"person": pid})
        assert status == 200 and [d["result"] for d in body["disconnected"]] == ["acked"]
        await asyncio.wait_for(s.done.wait(), 5)
        assert s.cause == TerminateCause.ADMIN_RESET
        # block: the next session is cut at once, and logins are refused with the end
        _, s2 = await c.login(b, PHONE, "02-00-00-00-0C-02")
        status, body = await api(
            c, "POST", "block", json={"phone": PHONE, "days": 2, "reason": "abuse report"}
        )
        assert status == 200 and body["blocked"]["reason"] == "abuse report"
        assert [d["result"] for d in body["disconnected"]] == ["acked"]
        await asyncio.wait_for(s2.done.wait(), 5)
        _, refused = await c.try_login(b, PHONE, "02-00-00-00-0C-03")
        assert refused is None
        message = b.events[-1]["message"]
        assert "suspended until" in message and "(Asia/Shanghai)" in message
        status, body = await api(c, "GET", "sessions", params={"phone": PHONE})
        assert body["blocked"]["reason"] == "abuse report" and body["sessions"] == []
        # unblock: welcome back
        status, body = await api(c, "POST", "unblock", json={"phone": PHONE})
        assert status == 200 and body["was_blocked"] is True
        _, again = await c.login(b, PHONE, "02-00-00-00-0C-04")
        assert again is not None


async def citywifi(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_cli_lists_disconnects_blocks_and_unblocks(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    async with city(tmp_path, redis_proc, (NAS_B,), daily=7200) as c:
        (b,) = c.sims
        cfg = str(c.config.source)
        pid, s = await c.login(b, PHONE, "02-00-00-00-0D-01")
        rc, out, err = await citywifi("admin", "sessions", "--config", cfg, "--phone", PHONE)
        assert rc == 0, err
        listed = json.loads(out)
        assert listed["person"] == pid and len(listed["sessions"]) == 1
        assert PHONE not in out and PHONE[3:] not in err  # the number stays out of output
        # the CLI process sends the Disconnect-Request itself
        rc, out, err = await citywifi("admin", "disconnect", "--config", cfg, "--person", pid)
        assert rc == 0, err
        assert [d["result"] for d in json.loads(out)["disconnected"]] == ["acked"]
        await asyncio.wait_for(s.done.wait(), 5)
        rc, out, err = await citywifi(
            "admin", "block", "--config", cfg, "--phone", PHONE, "--until", "2099-01-01"
        )
        assert rc == 2 and "at most" in err  # longer than ten years
        rc, out, err = await citywifi("admin", "block", "--config", cfg, "--phone", PHONE)
        assert rc == 0, err
        assert json.loads(out)["blocked"]["until"].endswith("+08:00")
        _, refused = await c.try_login(b, PHONE, "02-00-00-00-0D-02")
        assert refused is None and "suspended" in b.events[-1]["message"]
        rc, out, err = await citywifi("admin", "unblock", "--config", cfg, "--phone", PHONE)
        assert rc == 0 and json.loads(out)["was_blocked"] is True
        rc, out, err = await citywifi("admin", "sessions", "--config", cfg, "--phone", "123")
        assert rc == 2 and "phone" in err
