"""RadSec (RFC 6614): the TLS listener over real sockets with a Python TLS client.

Mutual TLS (a stranger CA's certificate, no certificate, an unconfigured certificate,
TLS 1.1: refused and counted), framing by the RADIUS Length (two packets in one write, a
packet split over several, a bad Length closes), a forged packet closes, duplicates on
the connection answered from the cache, Status-Server, the idle timeout, the in-flight
limit, and a Disconnect-Request sent down the connection by ``DaeClient``. The service
behind the core is a recording stand-in (the real one runs in tests/test_radsec_peers.py
and tests/test_radsec_config.py's serve test); sockets, TLS and the core are real.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from radius.attrs import AcctStatus, Attr, Code
from radius.core import Peer
from radius.dae import DaeClient, DaeOutcome, DaeTarget, SessionIdentity
from radius.events import (
    AccessAccept,
    AccessReply,
    AccessRequest,
    AccountingRequest,
    AccountingResponse,
)
from radius.packet import attr, attr_int, attr_text, decode_reply, decode_request, encode_reply
from radius.packet import encode_request as encode
from radius.radsec import (
    RADSEC_SECRET,
    FramingError,
    PeerCertificate,
    RadsecListener,
    RadsecPeer,
    frame_length,
    server_context,
)
from tests.support.radsec_kit import Pki, RadsecClient, client_context, make_pki
from tests.support.redis_proc import until


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Recorder:
    """The service: names the configured certificate's client, accepts, records."""

    log_requests = False

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.access_events: list[AccessRequest] = []
        self.acct_events: list[AccountingRequest] = []
        self.hold: asyncio.Event | None = None  # set: requests wait for it

    def radsec_peer(self, certificate: PeerCertificate) -> Peer | None:
        if certificate.fingerprint == self.fingerprint:
            return RadsecPeer("nas-rs")
        return None

    async def access(self, event: AccessRequest) -> AccessReply | None:
        self.access_events.append(event)
        if self.hold is not None:
            await self.hold.wait()
        return AccessAccept(attr_int(Attr.SESSION_TIMEOUT, 3600))

    async def accounting(self, event: AccountingRequest) -> AccountingResponse | None:
        self.acct_events.append(event)
        return AccountingResponse()


@pytest.fixture
async def served(pki: Pki) -> AsyncIterator[tuple[RadsecListener, Recorder]]:
    service = Recorder(pki.client.fingerprint)
    context = server_context(pki.server.cert, pki.server.key, pki.ca)
    listener = RadsecListener(service, context, idle_timeout=30.0, max_in_flight=4)
    await listener.start("127.0.0.1", 0)
    yield listener, service
    await listener.stop()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def access_request(ident: int) -> bytes:
    return encode(
        Code.ACCESS_REQUEST,
        ident,
        RADSEC_SECRET,
        attr_text(Attr.USER_NAME, "aa-bb-cc-00-19-03") + attr_text(Attr.NAS_IDENTIFIER, "ap-1"),
    )


def accounting_request(ident: int) -> bytes:
    return encode(
        Code.ACCOUNTING_REQUEST,
        ident,
        RADSEC_SECRET,
        attr_int(Attr.ACCT_STATUS_TYPE, AcctStatus.START) + attr_text(Attr.ACCT_SESSION_ID, "s1"),
    )


def reply_to(request: bytes, answer: bytes | None) -> int:
    """The verified reply's code (the Response Authenticator over the fixed secret)."""
    assert answer is not None, "no answer: the connection closed"
    return decode_reply(answer, RADSEC_SECRET, request[4:20]).code


async def connect(listener: RadsecListener, pki: Pki, identity: object = "client") -> RadsecClient:
    chosen = getattr(pki, identity) if isinstance(identity, str) else identity
    context = client_context(pki, chosen)  # type: ignore[arg-type]
    return await asyncio.to_thread(RadsecClient, listener.port, context)


def test_frame_length_bounds() -> None:
    assert frame_length(bytes((1, 0, 0, 20))) == 20
    assert frame_length(bytes((1, 0, 16, 0))) == 4096
    for bad in (19, 0, 4097, 65535):
        with pytest.raises(FramingError):
            frame_length(bytes((1, 0)) + bad.to_bytes(2, "big"))


async def test_auth_accounting_and_status_on_one_connection(
    served: tuple[RadsecListener, Recorder], pki: Pki
) -> None:
    listener, service = served
    client = await connect(listener, pki)
    try:
        for request, code in (
            (access_request(1), Code.ACCESS_ACCEPT),
            (accounting_request(2), Code.ACCOUNTING_RESPONSE),
            (encode(Code.STATUS_SERVER, 3, RADSEC_SECRET, b""), Code.ACCESS_ACCEPT),
        ):
            await asyncio.to_thread(client.send, request)
            assert reply_to(request, await asyncio.to_thread(client.read)) == code
        assert [e.client for e in service.access_events] == ["nas-rs"]
        assert service.acct_events[0].session_id == "s1"
        assert service.access_events[0].secret == RADSEC_SECRET  # hides MPPE keys
        assert listener.channel_for("nas-rs") is not None
    finally:
        client.close()


async def test_two_packets_in_one_write_and_one_split_across_writes(
    served: tuple[RadsecListener, Recorder], pki: Pki
) -> None:
    listener, _ = served
    client = await connect(listener, pki)
    try:
        first, second = access_request(10), accounting_request(11)
        await asyncio.to_thread(client.send, first + second)
        answers = {}
        for _ in range(2):  # answered in any order, matched by Identifier
            answer = await asyncio.to_thread(client.read)
            assert answer is not None
            answers[answer[1]] = answer
        assert reply_to(first, answers[10]) == Code.ACCESS_ACCEPT
        assert reply_to(second, answers[11]) == Code.ACCOUNTING_RESPONSE
        split = access_request(12)
        for piece in (split[:3], split[3:5], split[5:30], split[30:]):
            await asyncio.to_thread(client.send, piece)
            await asyncio.sleep(0.02)
        assert reply_to(split, await asyncio.to_thread(client.read)) == Code.ACCESS_ACCEPT
    finally:
        client.close()


@pytest.mark.parametrize("length", [19, 4097])
async def test_a_bad_length_closes_the_connection(
    served: tuple[RadsecListener, Recorder], pki: Pki, length: int
) -> None:
    listener, service = served
    before = metric("citywifi_radsec_closed_total", reason="bad_length")
    client = await connect(listener, pki)
    try:
        await asyncio.to_thread(client.send, bytes((1, 1)) + length.to_bytes(2, "big") + bytes(16))
        assert await asyncio.to_thread(client.closed_by_server)
    finally:
        client.close()
    assert metric("citywifi_radsec_closed_total", reason="bad_length") == before + 1
    assert not service.access_events


async def test_a_packet_with_another_secret_closes_the_connection(
    served: tuple[RadsecListener, Recorder], pki: Pki
) -> None:
    """RFC 6614 §2.3: the secret is "radsec"; a packet that does not verify with it
    cannot be trusted to frame the next one (RFC 6613 §2.6.2)."""
    listener, service = served
    client = await connect(listener, pki)
    try:
        forged = encode(Code.ACCESS_REQUEST, 5, b"not-radsec", attr_text(Attr.USER_NAME, "x"))
        await asyncio.to_thread(client.send, forged)
        assert await asyncio.to_thread(client.closed_by_server)
    finally:
        client.close()
    assert not service.access_events


async def test_a_duplicate_on_the_connection_is_answered_from_the_cache(
    served: tuple[RadsecListener, Recorder], pki: Pki
) -> None:
    listener, service = served
    client = await connect(listener, pki)
    try:
        request = access_request(20)
        await asyncio.to_thread(client.send, request)
        first = await asyncio.to_thread(client.read)
        await asyncio.to_thread(client.send, request)
        again = await asyncio.to_thread(client.read)
        assert first == again and reply_to(request, again) == Code.ACCESS_ACCEPT
        assert len(service.access_events) == 1
    finally:
        client.close()


@pytest.mark.parametrize(
    ("identity", "counter", "labels"),
    [
        ("stranger", "citywifi_radsec_handshake_failures_total", "certificate_verify_failed"),
        (None, "citywifi_radsec_handshake_failures_total", "no_certificate"),
        ("other_client", "citywifi_radsec_refused_certificates_total", "unknown_certificate"),
    ],
)
async def test_an_unknown_certificate_is_refused_and_counted(
    served: tuple[RadsecListener, Recorder],
    pki: Pki,
    identity: str | None,
    counter: str,
    labels: str,
) -> None:
    listener, service = served
    before = metric(counter, reason=labels)
    chosen = getattr(pki, identity) if identity else None

    def attempt() -> bytes | None:
        try:
            client = RadsecClient(listener.port, client_context(pki, chosen))
        except (ssl.SSLError, ConnectionError):
            return None  # TLS 1.2 fails in the handshake itself
        with client:
            try:
                request = access_request(30)
                client.send(request)
            except (ssl.SSLError, ConnectionError):
                return None
            return client.read()  # TLS 1.3: the server's refusal comes with the first read

    assert await asyncio.to_thread(attempt) is None
    await until(lambda: metric(counter, reason=labels) == before + 1)
    assert not service.access_events
    assert listener.channel_for("nas-rs") is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_tls_before_1_2_is_refused(served: tuple[RadsecListener, Recorder], pki: Pki) -> None:
    listener, _ = served
    before = metric("citywifi_radsec_handshake_failures_total", reason="protocol")
    context = client_context(pki, pki.client)
    try:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(RadsecClient, listener.port, context)
    await until(
        lambda: metric("citywifi_radsec_handshake_failures_total", reason="protocol") > before
    )


async def test_an_idle_connection_is_closed(pki: Pki) -> None:
    service = Recorder(pki.client.fingerprint)
    context = server_context(pki.server.cert, pki.server.key, pki.ca)
    listener = RadsecListener(service, context, idle_timeout=0.3)
    await listener.start("127.0.0.1", 0)
    before = metric("citywifi_radsec_closed_total", reason="idle")
    try:
        client = await connect(listener, pki)
        with client:
            assert await asyncio.to_thread(client.closed_by_server)
        assert metric("citywifi_radsec_closed_total", reason="idle") == before + 1
    finally:
        await listener.stop()


async def test_beyond_the_in_flight_limit_requests_are_dropped(
    served: tuple[RadsecListener, Recorder], pki: Pki
) -> None:
    """``max_in_flight`` (4 here) per connection: the fifth waits for no answer."""
    listener, service = served
    service.hold = asyncio.Event()
    before = metric("citywifi_radius_dropped_total", port="auth", reason="overload")
    client = await connect(listener, pki)
    try:
        requests = [access_request(40 + i) for i in range(5)]
        await asyncio.to_thread(client.send, b"".join(requests))
        await until(
            lambda: (
                metric("citywifi_radius_dropped_total", port="auth", reason="overload")
                == before + 1
            )
        )
        service.hold.set()
        answered = {(await asyncio.to_thread(client.read) or b"\0\0")[1] for _ in range(4)}
        assert answered == {40, 41, 42, 43}
    finally:
        client.close()


async def test_a_disconnect_request_goes_down_the_connection(
    served: tuple[RadsecListener, Recorder], pki: Pki
) -> None:
    """RFC 6614 §2.5: the DAE client sends the Disconnect-Request on the NAS's open
    connection and takes the Disconnect-ACK it reads there."""
    listener, _ = served
    client = await connect(listener, pki)
    dae = DaeClient(timeout=0.5, retries=1, channels=listener.channel_for)

    def nas_answers() -> bytes:
        data = client.read()
        assert data is not None
        request = decode_request(data, RADSEC_SECRET)
        assert request.code == Code.DISCONNECT_REQUEST
        reply = encode_reply(
            Code.DISCONNECT_ACK, request, RADSEC_SECRET, attr(Attr.REPLY_MESSAGE, b"bye")
        )
        client.send(reply)
        return data

    try:
        await until(lambda: listener.channel_for("nas-rs") is not None)
        target = DaeTarget("192.0.2.1", 3799, b"unused-udp-secret", "generic", client="nas-rs")
        nas = asyncio.create_task(asyncio.to_thread(nas_answers))
        result = await dae.disconnect(
            target, SessionIdentity("sess-1", user_name="u"), event_timestamp=0
        )
        sent = await nas
        assert result.outcome is DaeOutcome.ACK, result
        assert decode_request(sent, RADSEC_SECRET).get(Attr.ACCT_SESSION_ID) == b"sess-1"
        # no answer down the connection: a timeout, like UDP's
        result = await DaeClient(timeout=0.1, retries=0, channels=listener.channel_for).disconnect(
            target, SessionIdentity("sess-2", user_name="u"), event_timestamp=0
        )
        assert result.outcome is DaeOutcome.TIMEOUT
    finally:
        client.close()
        await dae.close()


def test_the_server_context_is_tls_1_2_or_later_and_asks_for_a_certificate(pki: Pki) -> None:
    context = server_context(pki.server.cert, pki.server.key, pki.ca)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.options & ssl.OP_NO_COMPRESSION


def test_the_kit_writes_pem(pki: Pki) -> None:
    assert Path(pki.ca).read_text().startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    ("sent", "reason"),
    [(b"", "timeout"), (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "protocol")],
)
async def test_a_silent_or_non_tls_connection_is_closed_and_counted(
    pki: Pki, sent: bytes, reason: str
) -> None:
    """A client that never finishes the handshake is closed after handshake_timeout;
    plain RADIUS or HTTP on the port is not TLS."""
    service = Recorder(pki.client.fingerprint)
    context = server_context(pki.server.cert, pki.server.key, pki.ca)
    listener = RadsecListener(service, context, handshake_timeout=0.3)
    await listener.start("127.0.0.1", 0)
    before = metric("citywifi_radsec_handshake_failures_total", reason=reason)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(sent)
        async with asyncio.timeout(5):
            await reader.read()  # to the end: the server closed
        writer.close()
        assert metric("citywifi_radsec_handshake_failures_total", reason=reason) == before + 1
        assert metric("citywifi_radsec_connections") == 0
    finally:
        await listener.stop()


def test_under_uvloop_every_handshake_is_decided_at_once(pki: Pki) -> None:
    """The production loop: ``loop.start_tls`` under uvloop lost a ClientHello that came
    before it took over (the handshake hung until the client gave up); the listener's own
    TLS over memory BIOs must decide every handshake at once, good or bad."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> list[object]:
        service = Recorder(pki.client.fingerprint)
        context = server_context(pki.server.cert, pki.server.key, pki.ca)
        listener = RadsecListener(service, context, handshake_timeout=5.0)
        await listener.start("127.0.0.1", 0)
        outcomes: list[object] = []

        def attempt(identity: object) -> object:
            try:
                with RadsecClient(listener.port, client_context(pki, identity), 2.0) as c:  # type: ignore[arg-type]
                    request = access_request(1)
                    c.send(request)
                    answer = c.read()
                    return reply_to(request, answer) if answer else None
            except (ssl.SSLError, ConnectionError):
                return None
            except TimeoutError:
                return "hung"

        try:
            for _ in range(5):
                for identity in (pki.stranger, pki.client, None, pki.other_client):
                    outcomes.append(await asyncio.to_thread(attempt, identity))
        finally:
            await listener.stop()
        return outcomes

    outcomes = uvloop.run(scenario())
    assert outcomes == [None, Code.ACCESS_ACCEPT, None, None] * 5
