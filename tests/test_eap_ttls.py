"""The EAP-TTLS server state machine (RFC 5281), driven in process by a pyOpenSSL peer
(tests.support.eap_kit.TtlsPeer); the real peer (eapol_test) is in test_eap_peers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radius.eap import EapCode, EapPacket, EapType, decode_eap
from radius.eap_ttls import (
    AVP_USER_NAME,
    Avp,
    AvpError,
    Challenge,
    CheckPassword,
    Failure,
    PapCredentials,
    ResumptionMemory,
    Success,
    TtlsServer,
    decode_avps,
    encode_avp,
)
from tests.support.eap_kit import Pki, TtlsPeer, make_pki

USER = "alice@city.example"
PASSWORD = b"correct horse"


_PKI = make_pki()
_SERVER = TtlsServer(_PKI.server_chain_pem, _PKI.server_key_pem)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return _PKI


@pytest.fixture
def server(pki: Pki) -> TtlsServer:
    return TtlsServer(pki.server_chain_pem, pki.server_key_pem)


def _verifier(seen: list[PapCredentials] | None = None):  # type: ignore[no-untyped-def]
    def check(credentials: PapCredentials) -> bool:
        if seen is not None:
            seen.append(credentials)
        return credentials.username == USER and credentials.password == PASSWORD

    return check


def converse(
    server: TtlsServer, peer: TtlsPeer, now: float = 1000.0, verifier=None
) -> tuple[Success | Failure, int]:  # type: ignore[no-untyped-def]
    """Run one conversation to its end; returns the outcome and the number of rounds."""
    session = server.session(verifier or _verifier())
    step = session.step(peer.identity_response(), now)
    rounds = 1
    while isinstance(step, Challenge):
        step = session.step(peer.respond(step.eap), now)
        rounds += 1
    assert not isinstance(step, CheckPassword)
    return step, rounds


def test_full_handshake_and_pap(server: TtlsServer, pki: Pki) -> None:
    seen: list[PapCredentials] = []
    peer = TtlsPeer(pki.ca_pem, USER, PASSWORD)
    outcome, rounds = converse(server, peer, verifier=_verifier(seen))
    assert isinstance(outcome, Success), outcome
    assert outcome.inner_identity == USER
    assert outcome.outer_identity == "anonymous@city.example"
    assert not outcome.resumed
    assert seen == [PapCredentials(USER, PASSWORD)]  # the NUL padding is stripped
    # RFC 5281 §8: both sides derive the same MSK from the TLS exporter.
    assert outcome.keys.msk == peer.msk()
    assert len(outcome.keys.msk) == 64 and len(outcome.keys.emsk) == 64
    assert decode_eap(outcome.eap).code == EapCode.SUCCESS
    assert rounds == 4  # identity, ClientHello, client Finished, AVPs


def test_wrong_password_fails(server: TtlsServer, pki: Pki) -> None:
    outcome, _ = converse(server, TtlsPeer(pki.ca_pem, USER, b"wrong"))
    assert isinstance(outcome, Failure)
    assert outcome.reason == "wrong_password"
    assert outcome.inner_identity == USER
    assert decode_eap(outcome.eap).code == EapCode.FAILURE


@pytest.mark.parametrize(("server_frag", "peer_frag"), [(200, 1398), (1398, 120), (90, 90)])
def test_fragmentation_both_ways(pki: Pki, server_frag: int, peer_frag: int) -> None:
    """RFC 5281 §9.2.2: L and M flags, each fragment acknowledged, reassembled intact."""
    server = TtlsServer(pki.server_chain_pem, pki.server_key_pem, fragment_size=server_frag)
    peer = TtlsPeer(pki.ca_pem, USER, PASSWORD, fragment_size=peer_frag)
    outcome, rounds = converse(server, peer)
    assert isinstance(outcome, Success), outcome
    assert outcome.keys.msk == peer.msk()
    assert rounds > 4  # each extra round is a fragment or its acknowledgement


def test_every_request_fits_the_fragment_size(pki: Pki) -> None:
    server = TtlsServer(pki.server_chain_pem, pki.server_key_pem, fragment_size=300)
    peer = TtlsPeer(pki.ca_pem, USER, PASSWORD)
    session = server.session(_verifier())
    step = session.step(peer.identity_response(), 0.0)
    sizes = []
    while isinstance(step, Challenge):
        sizes.append(len(step.eap))
        step = session.step(peer.respond(step.eap), 0.0)
    assert isinstance(step, Success)
    assert max(sizes) <= 300


@pytest.mark.parametrize("tickets", [False, True], ids=["session-id", "ticket"])
def test_resumption_skips_phase_two(server: TtlsServer, pki: Pki, tickets: bool) -> None:
    first_peer = TtlsPeer(pki.ca_pem, USER, PASSWORD, tickets=tickets)
    first, full_rounds = converse(server, first_peer, now=1000.0)
    assert isinstance(first, Success)
    calls: list[PapCredentials] = []
    peer = TtlsPeer(pki.ca_pem, USER, b"not asked", resume_from=first_peer)
    again, rounds = converse(server, peer, now=1500.0, verifier=_verifier(calls))
    assert isinstance(again, Success), again
    assert again.resumed and again.inner_identity == USER
    assert calls == []  # no phase 2: the password was not asked for
    assert again.keys.msk == peer.msk() != first.keys.msk  # fresh randoms, fresh MSK
    assert rounds < full_rounds


def test_resumption_after_the_memory_expired_runs_phase_two(pki: Pki) -> None:
    server = TtlsServer(
        pki.server_chain_pem, pki.server_key_pem, resumption_lifetime=3600, resumption_entries=4
    )
    first_peer = TtlsPeer(pki.ca_pem, USER, PASSWORD)
    first, _ = converse(server, first_peer, now=0.0)
    assert isinstance(first, Success)
    # TLS still resumes (OpenSSL's own clock), but our memory of the identity is gone.
    calls: list[PapCredentials] = []
    peer = TtlsPeer(pki.ca_pem, USER, PASSWORD, resume_from=first_peer)
    again, _ = converse(server, peer, now=3601.0, verifier=_verifier(calls))
    assert isinstance(again, Success), again
    assert not again.resumed
    assert calls == [PapCredentials(USER, PASSWORD)]


def test_a_failed_conversation_is_not_resumable(server: TtlsServer, pki: Pki) -> None:
    bad_peer = TtlsPeer(pki.ca_pem, USER, b"wrong")
    failed, _ = converse(server, bad_peer)
    assert isinstance(failed, Failure)
    peer = TtlsPeer(pki.ca_pem, USER, b"wrong", resume_from=bad_peer)
    again, _ = converse(server, peer)
    assert isinstance(again, Failure) and again.reason == "wrong_password"


def test_unknown_mandatory_avp_fails(server: TtlsServer, pki: Pki) -> None:
    """RFC 5281 §10.1: an AVP with M set that the server does not know fails the
    conversation (here MS-CHAP-Challenge, vendor 311, an inner method we do not run)."""
    avps = encode_avp(Avp(AVP_USER_NAME, USER.encode(), mandatory=True)) + encode_avp(
        Avp(11, b"x" * 16, vendor=311, mandatory=True)
    )
    outcome, _ = converse(server, TtlsPeer(pki.ca_pem, USER, PASSWORD, avps=avps))
    assert isinstance(outcome, Failure) and outcome.reason == "unsupported_inner_method"


def test_missing_password_fails(server: TtlsServer, pki: Pki) -> None:
    avps = encode_avp(Avp(AVP_USER_NAME, USER.encode(), mandatory=True))
    outcome, _ = converse(server, TtlsPeer(pki.ca_pem, USER, PASSWORD, avps=avps))
    assert isinstance(outcome, Failure) and outcome.reason == "missing_inner_credentials"


def test_peer_nak_and_wrong_identifier(server: TtlsServer, pki: Pki) -> None:
    session = server.session(_verifier())
    start = session.step(TtlsPeer(pki.ca_pem, USER, PASSWORD).identity_response(4), 0.0)
    assert isinstance(start, Challenge)
    request = decode_eap(start.eap)
    assert (request.identifier, request.type, request.data) == (5, EapType.TTLS, b"\x20")
    nak = EapPacket(EapCode.RESPONSE, 5, EapType.NAK, bytes((EapType.PEAP,))).encode()
    outcome = session.step(nak, 0.0)
    assert isinstance(outcome, Failure) and outcome.reason == "peer_refused_ttls"
    assert isinstance(session.step(nak, 0.0), Failure)  # finished

    other = server.session(_verifier())
    other.step(TtlsPeer(pki.ca_pem, USER, PASSWORD).identity_response(4), 0.0)
    stale = EapPacket(EapCode.RESPONSE, 4, EapType.TTLS, b"\x00").encode()
    outcome = other.step(stale, 0.0)
    assert isinstance(outcome, Failure) and outcome.reason == "unexpected_packet"


def _started(server: TtlsServer, pki: Pki) -> Iterator[object]:
    session = server.session(_verifier())
    session.step(TtlsPeer(pki.ca_pem, USER, PASSWORD).identity_response(0), 0.0)
    return session  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (bytes((0x80, 0, 0)), "bad_fragment"),  # L without four length octets
        (bytes((0xC0,)) + (1 << 20).to_bytes(4, "big") + b"x", "bad_fragment"),  # 1 MiB
        (bytes((0x80,)) + (10).to_bytes(4, "big") + b"x" * 11, "bad_fragment"),  # > L
        (bytes((0x80,)) + (10).to_bytes(4, "big") + b"x" * 9, "bad_fragment"),  # < L
        (b"\x00", "unexpected_packet"),  # an acknowledgement of nothing
        (b"\x00" + b"\x16\x03\x01\x00\x05hello", "tls_failed"),  # not a ClientHello
    ],
)
def test_hostile_ttls_bodies(server: TtlsServer, pki: Pki, body: bytes, reason: str) -> None:
    session = _started(server, pki)
    outcome = session.step(EapPacket(EapCode.RESPONSE, 1, EapType.TTLS, body).encode(), 0.0)  # type: ignore[attr-defined]
    assert isinstance(outcome, Failure) and outcome.reason == reason


def test_rounds_are_bounded(server: TtlsServer, pki: Pki) -> None:
    """A peer that sends fragments forever is cut off after MAX_ROUNDS."""
    session = _started(server, pki)
    outcome = None
    for identifier in range(1, 200):
        more = EapPacket(EapCode.RESPONSE, identifier & 0xFF, EapType.TTLS, b"\x40\x16").encode()
        outcome = session.step(more, 0.0)  # type: ignore[attr-defined]
        if isinstance(outcome, Failure):
            break
    assert isinstance(outcome, Failure) and outcome.reason == "too_many_rounds"


def test_avp_codec() -> None:
    avps = [Avp(1, b"alice"), Avp(2, b"p" * 16, mandatory=True), Avp(7, b"abc", vendor=311)]
    wire = b"".join(encode_avp(a) for a in avps)
    assert len(wire) % 4 == 0
    assert decode_avps(wire) == avps
    with pytest.raises(AvpError):
        decode_avps(wire[:-8])
    with pytest.raises(AvpError):
        decode_avps(b"\x00\x00\x00\x01\x00\x00\x00\x04")  # length below the header


def test_resumption_memory_is_bounded_and_ages() -> None:
    memory = ResumptionMemory(lifetime=10, max_entries=2)
    memory.remember(b"a", "alice", now=0)
    memory.remember(b"b", "bob", now=1)
    memory.remember(b"c", "carol", now=2)
    assert len(memory) == 2 and memory.recall(b"a", now=3) is None
    assert memory.recall(b"b", now=3) == "bob"
    assert memory.recall(b"b", now=11) is None
    assert memory.expire(now=12) == 1 and len(memory) == 0


def test_check_password_then_verdict(server: TtlsServer, pki: Pki) -> None:
    """Without a verifier, phase 2 hands the credentials out (for an asynchronous
    store) and the verdict finishes the conversation; nothing else is accepted between."""
    for ok in (True, False):
        peer = TtlsPeer(pki.ca_pem, USER, PASSWORD)
        session = server.session()
        step = session.step(peer.identity_response(), 0.0)
        while isinstance(step, Challenge):
            step = session.step(peer.respond(step.eap), 0.0)
        assert isinstance(step, CheckPassword)
        assert step.credentials == PapCredentials(USER, PASSWORD)
        outcome = session.verdict(ok, 0.0)
        if ok:
            assert isinstance(outcome, Success) and outcome.keys.msk == peer.msk()
        else:
            assert isinstance(outcome, Failure) and outcome.reason == "wrong_password"
        assert isinstance(session.verdict(True, 0.0), Failure)  # answered once only


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6))
def test_hostile_packets_never_raise(packets: list[bytes]) -> None:
    """Whatever a peer sends after its identity, every step answers with a Step (a
    Failure for garbage), never an exception; after a Failure the session stays shut."""
    pki = _PKI
    session = _SERVER.session(_verifier())
    session.step(TtlsPeer(pki.ca_pem, USER, PASSWORD).identity_response(0), 0.0)
    failed = False
    for identifier, body in enumerate(packets, start=1):
        wire = EapPacket(EapCode.RESPONSE, identifier & 0xFF, EapType.TTLS, body).encode()
        for candidate in (wire, body):
            outcome = session.step(candidate, 0.0)
            assert isinstance(outcome, Challenge | Failure)
            if failed:
                assert isinstance(outcome, Failure)
            failed = failed or isinstance(outcome, Failure)


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=200))
def test_avp_decoder_raises_only_avp_error(data: bytes) -> None:
    try:
        avps = decode_avps(data)
    except AvpError:
        return
    assert all(isinstance(a, Avp) and a.code >= 0 for a in avps)


def test_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/eap_bench.py with a handful of logins prints its figures (no timing asserted)."""
    import sys

    from bench import eap_bench

    saved = sys.argv
    sys.argv = ["eap_bench", "--logins", "3"]
    try:
        eap_bench.main()
    finally:
        sys.argv = saved
    out = capsys.readouterr().out
    assert "full, argon2id" in out and "resumed" in out and "argon2id verify alone" in out
