"""Revoking EAP credentials from the admin side (issue 19): ``citywifi eap list|revoke``
and ``/api/v1/admin/eap/…`` revoke, and the EAP sessions of the revoked credentials get
an RFC 5176 Disconnect-Request through the enforcer (the console's disconnect path),
while the person's other sessions stay up; the next eapol_test login is refused.

The pure choice of sessions (``eap_sessions``) is tested on its own; the live test runs
eapol_test (Debian eapoltest, wpa_supplicant's EAP peer acting as NAS and phone) against
a real Controller on real Redis, with a UDP listener on 127.0.0.1 as the NAS's DAE port.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.services.eap_revoke import eap_sessions
from radius.attrs import Attr, Code
from radius.packet import Request, decode_request, encode_reply
from tests.conftest import SECRET
from tests.support.eap_kit import EAPOL_TEST, Pki, make_pki
from tests.support.redis_proc import RedisProcess, until
from tests.test_admin import citywifi as _citywifi
from tests.test_eap_serve import (
    EAPOL_MAC,
    REALM,
    _attribute,
    _city,
    _eapol,
    _issue,
    _login_records,
)
from tests.test_interop_sessions import accounting, login, signed_class

ADMIN_TOKEN = "admin-token-for-eap-tests"
TOKENS = f"""
[[api_tokens]]
name = "ops"
sha256 = "{hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()}"
roles = ["admin"]
"""


def test_the_sessions_ended_are_those_of_the_revoked_credentials() -> None:
    records = {
        "s1": {"user": "aaaa@city.example"},  # the revoked credential's session
        "s2": {"user": "bbbb@city.example"},  # another credential, still valid
        "s3": {"user": "anonymous@city.example"},  # a NAS echoing the outer identity
        "s4": {"user": "p1.tok"},  # a portal login
        "s5": {"user": "AAAA@City.Example"},  # case does not hide it
        "s6": {},
    }
    assert eap_sessions(records, ["aaaa@city.example"], ["bbbb@city.example"], REALM) == [
        "s1",
        "s3",
        "s5",
    ]
    assert eap_sessions(records, [], ["bbbb@city.example"], REALM) == []  # nothing revoked
    everything = ["aaaa@city.example", "bbbb@city.example"]
    assert eap_sessions(records, everything, [], REALM) == ["s1", "s2", "s3", "s5"]


class _DaeNas(asyncio.DatagramProtocol):
    """The NAS's RFC 5176 side: records each Disconnect-Request and ACKs it (the
    transport is whatever the running loop makes: uvloop's is no asyncio class)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.requests: list[Request] = []
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        request = decode_request(data, self.secret, require_message_authenticator=False)
        self.requests.append(request)
        self.transport.sendto(encode_reply(Code.DISCONNECT_ACK, request, self.secret), addr)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(REALM)


async def _api(
    port: int, method: str, path: str, token: str | None = ADMIN_TOKEN, **kw: Any
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, f"http://127.0.0.1:{port}/api/v1/admin/eap/{path}", headers=headers, **kw
        ) as response,
    ):
        return response.status, await response.json()


@pytest.mark.peers
@pytest.mark.skipif(not Path(EAPOL_TEST).exists(), reason="eapol_test missing")
async def test_revoke_disconnects_the_eap_session_and_the_next_login_is_refused(
    tmp_path: Path, redis_proc: RedisProcess, pki: Pki
) -> None:
    loop = asyncio.get_running_loop()
    transport, nas = await loop.create_datagram_endpoint(
        lambda: _DaeNas(SECRET.encode()), local_addr=("127.0.0.1", 0)
    )
    coa_port = transport.get_extra_info("sockname")[1]
    enforcer = "[enforcer]\ndisconnect_timeout = 0.5\n"
    ctl = _city(tmp_path, redis_proc.url, pki, extra=enforcer + TOKENS, coa_port=coa_port)
    await ctl.start()
    try:
        assert ctl.store is not None
        cfg = str(ctl.config.source)
        person = (await login(ctl, phone="+8613800138091")).person
        first, second = await _issue(ctl, person), await _issue(ctl, person)
        a, b = first.credential.username, second.credential.username

        ok = await _eapol(ctl, tmp_path, pki, a, first.secret)
        assert ok.ok, ok.output[-3000:]
        klass = bytes.fromhex(_attribute(ok.output, 25))
        # three open sessions: one on each credential (User-Name = the Accept's inner
        # identity, as a NAS echoes it) and a portal login's
        await accounting(ctl, "Start", "eap-a", 0, cls=klass, mac=EAPOL_MAC, User_Name=a)
        await accounting(ctl, "Start", "eap-b", 0, cls=klass, mac=EAPOL_MAC, User_Name=b)
        portal = signed_class(ctl, person)
        await accounting(ctl, "Start", "web-1", 0, cls=portal, User_Name="p.tok")

        rc, out, err = await _citywifi("eap", "list", "--config", cfg, "--person", person)
        assert rc == 0, err
        listed = json.loads(out)
        assert sorted(c["username"] for c in listed["credentials"]) == sorted([a, b])
        assert "hash" not in out and first.secret not in out

        # the CLI revokes one credential and sends the Disconnect-Request itself
        rc, out, err = await _citywifi(
            "eap", "revoke", "--config", cfg, "--person", person, "--credential", a
        )
        assert rc == 0, err
        done = json.loads(out)
        assert done["revoked"] == [a]
        assert [d["result"] for d in done["disconnected"]] == ["acked"]
        assert len(nas.requests) == 1
        sent = nas.requests[0]
        assert sent.code == Code.DISCONNECT_REQUEST
        assert sent.attrs[int(Attr.ACCT_SESSION_ID)] == [b"eap-a"]
        # the NAS ends it and says so (its Stop), as after any Disconnect-ACK
        await accounting(ctl, "Stop", "eap-a", 30, cls=klass, mac=EAPOL_MAC, User_Name=a)

        refused = await _eapol(ctl, tmp_path, pki, a, first.secret)
        assert not refused.ok and "Access-Reject" in refused.output
        last = (await _login_records(ctl))[-1]
        assert last["result"].startswith("reject:eap_")

        rc, _, err = await _citywifi(
            "eap", "revoke", "--config", cfg, "--person", person, "--credential", a
        )
        assert rc == 2 and "no such credential" in err  # already gone

        # the admin API: a token is needed; revoke all, the other EAP session ends too
        status, _ = await _api(ctl.http_port, "POST", "revoke", token=None, json={})
        assert status == 401
        status, body = await _api(
            ctl.http_port, "POST", "revoke", json={"person": person, "credential": "x@y"}
        )
        assert (status, body["error"]) == (404, "not_found")
        status, body = await _api(ctl.http_port, "POST", "revoke", json={"person": person})
        assert status == 200, body
        assert body["revoked"] == [b]
        assert [d["result"] for d in body["disconnected"]] == ["acked"]
        await until(lambda: len(nas.requests) == 2, timeout=5.0, what="the second Disconnect")
        assert nas.requests[1].attrs[int(Attr.ACCT_SESSION_ID)] == [b"eap-b"]
        status, body = await _api(ctl.http_port, "GET", "credentials", params={"person": person})
        assert (status, body["credentials"]) == (200, [])
        # the portal login's session was never asked to end
        assert all(r.attrs[int(Attr.ACCT_SESSION_ID)] != [b"web-1"] for r in nas.requests)
        again = await _eapol(ctl, tmp_path, pki, b, second.secret)
        assert not again.ok and "Access-Reject" in again.output
    finally:
        await ctl.stop()
        transport.close()
