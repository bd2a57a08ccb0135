"""EAP-TTLS/PAP through ``citywifi serve``: eapol_test (Debian eapoltest, wpa_supplicant's
EAP peer acting as NAS and phone) against the real Controller on a real Redis.

What issue 19 asks of the wiring: Access-Accept with the allowance's Session-Timeout and
the MS-MPPE keys eapol_test checks against its own MSK; a wrong password, a revoked
credential and a used-up allowance get Access-Reject (the last with the reset time);
the session's accounting is counted for the person (via the signed Class of kind ``e``).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.nas_sim import SimClock
from controller.cli.serve import Controller
from controller.config import load_config
from controller.domain.eap_credentials import RANDOM_OCTETS, CredentialPolicy, IssuedCredential
from controller.domain.identity import class_key, verify_class
from controller.services.passpoint import issue_for
from controller.storage import keys
from controller.storage.eap_credentials import EapCredentialStore
from radius.attrs import Attr, Code
from radius.packet import Request, decode_request, encode_reply
from tests.conftest import SECRET, write_config
from tests.support.clocks import local_hour_clock
from tests.support.eap_kit import (
    EAPOL_TEST,
    EapolResult,
    Pki,
    make_pki,
    passpoint_section,
    run_eapol_test,
)
from tests.support.redis_proc import RedisProcess, until
from tests.test_interop_sessions import accounting, login, signed_class

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not Path(EAPOL_TEST).exists(),
        reason="eapol_test missing: bash scripts/bootstrap.sh --test",
    ),
]

REALM = "city.example"
# eapol_test's Calling-Station-Id (its own MAC address, 02:00:00:00:00:01)
EAPOL_MAC = "02-00-00-00-00-01"


def _city(
    tmp_path: Path,
    redis_url: str,
    pki: Pki,
    *,
    clock: Callable[[], float] = time.time,
    extra: str = "",
    coa_port: int = 0,
    **overrides: str,
) -> Controller:
    passpoint = passpoint_section(tmp_path, pki, REALM)
    path = write_config(tmp_path, redis_url, extra=passpoint + extra, **overrides)
    if coa_port:  # nas-local (eapol_test's address) answers Disconnect-Requests there
        text = path.read_text()
        path.write_text(
            text.replace('vendor = "generic"\n', f'vendor = "generic"\ncoa_port = {coa_port}\n', 1)
        )
    return Controller(load_config(path), clock=clock)


async def _issue(ctl: Controller, pid: str, now: int | None = None) -> IssuedCredential:
    assert ctl.store is not None
    policy = CredentialPolicy(REALM, memory_kib=1024, time_cost=1)  # cheap for the test
    return await issue_for(
        EapCredentialStore(ctl.store.redis),
        policy,
        pid,
        int(time.time()) if now is None else now,
        secrets.token_bytes(RANDOM_OCTETS),
    )


async def _eapol(ctl: Controller, tmp_path: Path, pki: Pki, user: str, pw: str) -> EapolResult:
    return await asyncio.to_thread(
        run_eapol_test,
        tmp_path,
        ctl.auth_port,
        ca_pem=pki.ca_pem,
        identity=user,
        password=pw,
        anonymous_identity=f"anonymous@{REALM}",
        timeout=8,
    )


async def _login_records(ctl: Controller) -> list[dict[str, str]]:
    """The login records in the audit outbox, oldest first."""
    assert ctl.store is not None
    entries = await ctl.store.redis.xrange(keys.OUTBOX)
    fields = [{k.decode(): v.decode() for k, v in e[1].items()} for e in entries]
    return [f for f in fields if f.get("k") == "login"]


def _attribute(output: str, number: int) -> str:
    """The value eapol_test printed for RADIUS attribute ``number`` of the last Accept."""
    found = re.findall(rf"Attribute {number} \([^)]*\) length=\d+\s*\n\s*Value: (.*)", output)
    return found[-1].strip() if found else ""


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(REALM)


async def test_eap_ttls_login_through_serve_then_accounting(
    tmp_path: Path, redis_proc: RedisProcess, pki: Pki
) -> None:
    # at noon: the whole day's 7200 s, not the run into tomorrow's allowance near midnight
    ctl = _city(tmp_path, redis_proc.url, pki, clock=local_hour_clock(ZoneInfo("Asia/Shanghai")))
    await ctl.start()
    try:
        assert ctl.store is not None
        person = (await login(ctl)).person
        issued = await _issue(ctl, person, int(ctl.clock()))
        user, secret = issued.credential.username, issued.secret

        ok = await _eapol(ctl, tmp_path, pki, user, secret)
        assert ok.ok, ok.output[-3000:]
        assert "MPPE keys OK: 1  mismatch: 0" in ok.output
        assert _attribute(ok.output, 27) == "7200"  # Session-Timeout: the whole day left
        assert user in _attribute(ok.output, 1)  # User-Name: the inner identity

        klass = bytes.fromhex(_attribute(ok.output, 25))  # eapol_test prints it in hex
        claim = verify_class(class_key(ctl.person_key), klass, "nas-local")
        assert claim is not None and (claim.person, claim.kind) == (person, "e")

        # accounting for that session is the person's, like a portal login's
        await accounting(ctl, "Start", "eap-1", 0, cls=klass, mac=EAPOL_MAC)
        await accounting(ctl, "Stop", "eap-1", 600, cls=klass, mac=EAPOL_MAC)
        record = await ctl.store.session(person, keys.session_id("nas-local", "eap-1"))
        assert record["pid"] == person and record["login"] == claim.nonce

        wrong = await _eapol(ctl, tmp_path, pki, user, secret + "x")
        assert not wrong.ok and "Access-Reject" in wrong.output
        # the refused TTLS login is in the audit log like a refused portal login
        logins = await _login_records(ctl)
        assert logins[-1]["result"] == "reject:eap_wrong_password"
        assert logins[-1]["pid"] == person and logins[-1]["client"] == "nas-local"
    finally:
        await ctl.stop()


async def test_eap_ttls_revoked_and_used_up_are_rejected(
    tmp_path: Path, redis_proc: RedisProcess, pki: Pki
) -> None:
    # at noon: a 7,200 s session ending now lies wholly in today (not so before 02:00)
    ctl = _city(tmp_path, redis_proc.url, pki, clock=local_hour_clock(ZoneInfo("Asia/Shanghai")))
    await ctl.start()
    try:
        assert ctl.store is not None
        person = (await login(ctl, phone="+8613800138077")).person
        issued = await _issue(ctl, person, int(ctl.clock()))
        user, secret = issued.credential.username, issued.secret

        # the whole day used up by an earlier session: TTLS succeeds, the allowance refuses
        cls = signed_class(ctl, person)
        await accounting(ctl, "Start", "day-1", 0, cls=cls)
        await accounting(ctl, "Stop", "day-1", 7200, cls=cls)
        used_up = await _eapol(ctl, tmp_path, pki, user, secret)
        assert not used_up.ok and "Access-Reject" in used_up.output
        message = _attribute(used_up.output, 18)
        assert "used up" in message and "00:00" in message, used_up.output[-3000:]

        assert await EapCredentialStore(ctl.store.redis).revoke(person, user)
        revoked = await _eapol(ctl, tmp_path, pki, user, secret)
        assert not revoked.ok and "Access-Reject" in revoked.output
        # audited: a revoked credential fails phase 2 as an unknown one (no person known)
        last = (await _login_records(ctl))[-1]
        assert (last["result"], last["pid"]) == ("reject:eap_wrong_password", "")
    finally:
        await ctl.stop()


class _DaeNas(asyncio.DatagramProtocol):
    """The NAS's RFC 5176 side: records each Disconnect-Request and ACKs it."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.requests: list[Request] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        request = decode_request(data, self.secret, require_message_authenticator=False)
        self.requests.append(request)
        assert self.transport is not None
        self.transport.sendto(encode_reply(Code.DISCONNECT_ACK, request, self.secret), addr)


async def test_the_enforcer_disconnects_an_eap_session_like_a_portal_login(
    tmp_path: Path, redis_proc: RedisProcess, pki: Pki
) -> None:
    """EAP login, accounting Start with its Class; when the day's allowance runs out the
    enforcer sends the NAS a Disconnect-Request for that session (RFC 5176)."""
    loop = asyncio.get_running_loop()
    transport, nas = await loop.create_datagram_endpoint(
        lambda: _DaeNas(SECRET.encode()), local_addr=("127.0.0.1", 0)
    )
    coa_port = transport.get_extra_info("sockname")[1]
    clock = SimClock(20.0)  # 120 s of allowance pass in 6 real seconds
    enforcer = "[enforcer]\ndisconnect_timeout = 0.2\nlease = 5\nsweep_interval = 0.2\n"
    ctl = _city(
        tmp_path,
        redis_proc.url,
        pki,
        clock=clock,
        extra=enforcer,
        daily_seconds="120",
        interim_interval="60",
        quota="idle_timeout = 0\nmin_grant_seconds = 10",
        coa_port=coa_port,
    )
    await ctl.start()
    try:
        assert ctl.store is not None
        person = (await login(ctl)).person
        issued = await _issue(ctl, person, int(clock()))
        ok = await _eapol(ctl, tmp_path, pki, issued.credential.username, issued.secret)
        assert ok.ok, ok.output[-3000:]
        assert 100 <= int(_attribute(ok.output, 27)) <= 120
        klass = bytes.fromhex(_attribute(ok.output, 25))
        await accounting(ctl, "Start", "eap-d", 0, cls=klass, mac=EAPOL_MAC)
        await until(lambda: nas.requests, timeout=20.0, what="a Disconnect-Request")
        sent = nas.requests[0]
        assert sent.code == Code.DISCONNECT_REQUEST
        assert sent.attrs[int(Attr.ACCT_SESSION_ID)] == [b"eap-d"]
    finally:
        await ctl.stop()
        transport.close()
