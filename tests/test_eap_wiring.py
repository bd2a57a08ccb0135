"""The EAP path of the RADIUS core and service, without eapol_test (fast).

Pure: the core turns EAP-Message into ``AccessRequest.eap`` / ``.state`` and drops an
EAP request without Message-Authenticator even for a client that does not require one
(RFC 3579 §3.3). Live: a real ``Controller`` on real Redis over UDP, driven by the
in-process pyOpenSSL peer (``tests.support.eap_kit.TtlsPeer``): a retransmitted round
gets the byte-identical cached Access-Challenge (RFC 5080 §2.2.2), a State used once
is dead (replay: no answer), a State sent from another client finds nothing, and a
foreign realm gets Access-Reject with EAP-Failure.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from controller.cli.serve import Controller
from controller.config import load_config
from controller.domain.eap_credentials import RANDOM_OCTETS, CredentialPolicy
from controller.services.passpoint import issue_for
from controller.storage import keys
from controller.storage.eap_credentials import EapCredentialStore
from radius.attrs import Attr, Code
from radius.core import Dispatch, Drop, ServerCore
from radius.eap import EapCode, EapPacket, EapType, decode_eap, eap_message_attrs
from radius.events import AccessRequest
from radius.packet import attr, attr_text, decode_reply, encode_request
from tests.conftest import SECRET, write_config
from tests.support.eap_kit import Pki, TtlsPeer, make_pki, passpoint_section
from tests.support.pyrad_client import RadiusClient
from tests.support.redis_proc import RedisProcess

REALM = "city.example"
LAX = ("10.0.0.8", 5000)  # a client that does not require Message-Authenticator


class _Peer:
    def __init__(self, id: str, require: bool) -> None:
        self.id = id
        self.secret = SECRET.encode()
        self.require_message_authenticator = require


def _dropped(reason: str) -> float:
    """The auth port's drops for ``reason`` as a scrape sees them (the compiled counters
    are folded in when the registry is collected)."""
    return (
        REGISTRY.get_sample_value(
            "citywifi_radius_dropped_total", {"port": "auth", "reason": reason}
        )
        or 0.0
    )


def _core() -> ServerCore:
    peers = {LAX[0]: _Peer("lax", False)}
    return ServerCore("auth", peers.get)


def _identity(name: str, identifier: int = 0) -> bytes:
    return EapPacket(EapCode.RESPONSE, identifier, EapType.IDENTITY, name.encode()).encode()


def _request(
    eap: bytes,
    *,
    ident: int = 1,
    state: bytes | None = None,
    ma: bool = True,
    secret: str = SECRET,
) -> bytes:
    attrs = attr_text(Attr.USER_NAME, f"anonymous@{REALM}") + eap_message_attrs(eap)
    attrs += attr_text(Attr.CALLING_STATION_ID, "02-00-00-00-00-09")
    if state is not None:
        attrs += attr(Attr.STATE, state)
    return encode_request(
        Code.ACCESS_REQUEST,
        ident,
        secret.encode(),
        attrs,
        authenticator=secrets.token_bytes(16),
        message_authenticator=ma,
    )


def test_core_drops_eap_without_message_authenticator_even_for_a_lax_client() -> None:
    core = _core()
    for now in (0.0, 1.0):  # not left in progress: the retransmission is judged afresh
        out = core.receive(_request(_identity("a@city.example"), ma=False), LAX, now)
        assert isinstance(out, Drop) and out.reason == "missing_message_authenticator"
    assert core.in_flight == 0


def test_core_drops_eap_messages_that_are_not_one_packet() -> None:
    broken = _identity("a@city.example")[:-2]  # EAP Length says 2 octets more
    broken = broken[:2] + (len(broken) + 2).to_bytes(2, "big") + broken[4:]
    out = _core().receive(_request(broken), LAX, 0.0)
    assert isinstance(out, Drop) and out.reason == "malformed_eap"


def test_core_puts_eap_and_state_on_the_event() -> None:
    eap = _identity("a@city.example")
    out = _core().receive(_request(eap, state=b"s" * 16), LAX, 0.0)
    assert isinstance(out, Dispatch) and isinstance(out.event, AccessRequest)
    assert (out.event.eap, out.event.state) == (eap, b"s" * 16)


# -- live ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(REALM)


def _city(tmp_path: Path, redis_url: str, pki: Pki) -> Controller:
    extra = passpoint_section(tmp_path, pki, REALM)
    return Controller(load_config(write_config(tmp_path, redis_url, extra=extra)))


def _client(ctl: Controller, host: str = "127.0.0.1", secret: str = SECRET) -> RadiusClient:
    return RadiusClient(("127.0.0.1", ctl.auth_port), secret.encode(), local_addr=(host, 0))


async def test_rounds_retransmission_replay_and_realm(
    tmp_path: Path, redis_proc: RedisProcess, pki: Pki
) -> None:
    ctl = _city(tmp_path, redis_proc.url, pki)
    await ctl.start()
    try:
        assert ctl.store is not None
        policy = CredentialPolicy(REALM, memory_kib=1024, time_cost=1)
        issued = await issue_for(
            EapCredentialStore(ctl.store.redis),
            policy,
            "0123456789abcdef0123",
            int(time.time()),
            secrets.token_bytes(RANDOM_OCTETS),
        )
        peer = TtlsPeer(pki.ca_pem, issued.credential.username, issued.secret.encode())
        secret = SECRET.encode()
        async with _client(ctl) as nas:
            first = _request(peer.identity_response(), ident=7)
            raw = await nas.request_raw(first, timeout=2.0)
            assert raw is not None
            again = await nas.request_raw(first, timeout=2.0)  # a retransmission
            assert again == raw  # the cached Access-Challenge, byte for byte
            reply = decode_reply(raw, secret, first[4:20], require_message_authenticator=True)
            assert reply.code == Code.ACCESS_CHALLENGE
            state = reply.attrs[int(Attr.STATE)][0]
            eap = b"".join(reply.attrs[int(Attr.EAP_MESSAGE)])

            answer = peer.respond(eap)
            second = _request(answer, ident=8, state=state)
            raw2 = await nas.request_raw(second, timeout=2.0)
            assert raw2 is not None and raw2[0] == Code.ACCESS_CHALLENGE

            # the same State again with a new authenticator (a replay): no answer,
            # counted as its own drop reason (not as not_recorded)
            before = (_dropped("unknown_state"), _dropped("not_recorded"))
            replay = _request(answer, ident=9, state=state)
            assert await nas.request_raw(replay, timeout=0.5) is None
            assert (_dropped("unknown_state"), _dropped("not_recorded")) == (
                before[0] + 1,
                before[1],
            )

            # the next State presented by another client (nas-local-2): nothing, and the
            # conversation is still the first client's
            reply2 = decode_reply(raw2, secret, second[4:20], require_message_authenticator=True)
            state2 = reply2.attrs[int(Attr.STATE)][0]
            answer2 = peer.respond(b"".join(reply2.attrs[int(Attr.EAP_MESSAGE)]))
            async with _client(ctl, "127.0.0.2", f"{SECRET}-2") as other:
                stolen = _request(answer2, ident=1, state=state2, secret=f"{SECRET}-2")
                assert await other.request_raw(stolen, timeout=0.5) is None
            third = _request(answer2, ident=12, state=state2)
            raw4 = await nas.request_raw(third, timeout=2.0)
            assert raw4 is not None and raw4[0] in (Code.ACCESS_CHALLENGE, Code.ACCESS_ACCEPT)

        # a foreign realm: Access-Reject carrying EAP-Failure (RFC 3579 §2.6.3)
        async with _client(ctl) as nas:
            foreign = _request(_identity("someone@elsewhere.example", 3), ident=10)
            raw3 = await nas.request_raw(foreign, timeout=2.0)
            assert raw3 is not None
            rejected = decode_reply(raw3, secret, foreign[4:20], require_message_authenticator=True)
            assert rejected.code == Code.ACCESS_REJECT
            failure = decode_eap(b"".join(rejected.attrs[int(Attr.EAP_MESSAGE)]))
            assert (failure.code, failure.identifier) == (EapCode.FAILURE, 3)
            # audited like any refused login
            assert ctl.store is not None
            entries = await ctl.store.redis.xrange(keys.OUTBOX)
            results = [e[1].get(b"result") for e in entries if e[1].get(b"k") == b"login"]
            assert results[-1] == b"reject:eap_foreign_realm"

            # the attack: EAP without Message-Authenticator gets nothing back
            bare = _request(_identity(f"anonymous@{REALM}"), ident=11, ma=False)
            assert await nas.request_raw(bare, timeout=0.5) is None
    finally:
        await ctl.stop()
