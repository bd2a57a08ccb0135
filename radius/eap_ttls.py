"""EAP-TTLS version 0 (RFC 5281) server, sans I/O: EAP octets in, the next EAP packet out.

One ``TtlsServer`` per process holds the TLS context (certificate, key, session cache and
ticket keys) and the resumption memory; it opens one ``TtlsSession`` per conversation.
``TtlsSession.step(eap, now)`` takes the EAP packet of each Access-Request and answers

- ``Challenge(eap)``: send it in an Access-Challenge (with the State that finds this
  session again, see ``radius.eap_state``);
- ``Success(eap, keys, inner_identity, ...)``: the inner PAP credential was verified (or
  the TLS session was resumed from one that was); send an Access-Accept with the EAP
  Success and the MSK as MS-MPPE keys (``radius.mppe``);
- ``Failure(eap, reason)``: send an Access-Reject with the EAP Failure.

- ``CheckPassword(credentials)``: only when the session was opened without a verifier:
  phase 2 has the inner credentials; check them (asynchronously, off the event loop)
  and pass the result to ``TtlsSession.verdict(ok, now)``, which gives the Success or
  Failure.

The caller owns sockets, clock and the password check: the verifier is injected
(``Verifier``) or answered through ``verdict``, so this module never sees a stored hash.

The TLS side runs on pyOpenSSL over memory BIOs: the handshake octets go in and out of
``Connection.bio_write``/``bio_read`` without a socket. pyOpenSSL, not the standard
``ssl`` module, because the MSK is the TLS exporter with the label "ttls keying
material" (RFC 5281 §8, RFC 5705), which ``Connection.export_keying_material`` gives and
``ssl`` does not. TLS is held at 1.2: RFC 5281 keys are defined over the TLS 1.2 PRF, and
TTLS over TLS 1.3 (RFC 9427) derives them differently and is not implemented here;
wpa_supplicant 2.10 also keeps TLS 1.3 off for TTLS unless asked.

Fragmentation (RFC 5281 §9.2.2): a TLS message longer than ``fragment_size`` goes out in
several EAP-Requests with the M (more) flag, the first with L (length) and the TLS
message length; the peer acknowledges each with an empty EAP-TTLS Response. The peer's
fragments are acknowledged likewise and joined before TLS sees them.

Inner authentication (RFC 5281 §11.2.5): PAP only. The peer's first application data
after the handshake is a sequence of Diameter-format AVPs (RFC 5281 §10, RFC 6733 §4.1)
with User-Name and User-Password (the password NUL-padded to a multiple of 16 octets).
Any other AVP with the M (mandatory) bit, such as an inner EAP or MS-CHAP, fails the
conversation (RFC 5281 §10.1).

Session resumption (RFC 5281 §7.3): the server keeps a TLS session cache and issues
session tickets (RFC 5077), both expiring after ``resumption_lifetime``. A peer that
resumes skips phase 2 when the server remembers the inner identity that the session
authenticated; that memory is keyed by a hash of the TLS master secret (a resumed TLS 1.2
session keeps its master secret), bounded in size and aged with the ``now`` the caller
passes. A resumed session is answered with Success and ``resumed=True``: the caller must
still check that the identity's credential is valid now (it may have been revoked).
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from OpenSSL import SSL

from radius.eap import EapCode, EapError, EapPacket, EapType, decode_eap

__all__ = [
    "Avp",
    "AvpError",
    "Challenge",
    "CheckPassword",
    "Failure",
    "FailureReason",
    "PapCredentials",
    "ResumptionMemory",
    "Success",
    "TtlsKeys",
    "TtlsServer",
    "TtlsSession",
    "Verifier",
    "decode_avps",
    "encode_avp",
]

KEYING_LABEL: Final = b"ttls keying material"
"""The TLS exporter label of the MSK and EMSK (RFC 5281 §8)."""

FLAG_LENGTH: Final = 0x80
FLAG_MORE: Final = 0x40
FLAG_START: Final = 0x20
VERSION_MASK: Final = 0x07
MAX_TLS_MESSAGE: Final = 65536
"""Largest TLS message a peer may announce with L or send in fragments: a client's
handshake flight is a few kilobytes; this stops a peer from making us buffer more."""
MAX_ROUNDS: Final = 64
"""EAP round trips allowed in one conversation (a full handshake with fragments takes
about ten)."""

AVP_USER_NAME: Final = 1
AVP_USER_PASSWORD: Final = 2
AVP_FLAG_VENDOR: Final = 0x80
AVP_FLAG_MANDATORY: Final = 0x40

FailureReason = Literal[
    "malformed",
    "unexpected_packet",
    "peer_refused_ttls",
    "bad_fragment",
    "tls_failed",
    "bad_inner_avps",
    "unsupported_inner_method",
    "missing_inner_credentials",
    "wrong_password",
    "too_many_rounds",
    "finished",
]

_TTLS_HDR: Final = struct.Struct(">B")
_LEN: Final = struct.Struct(">I")
_AVP_HDR: Final = struct.Struct(">IB")


@dataclass(frozen=True, slots=True)
class TtlsKeys:
    """The keys of a successful conversation (RFC 5281 §8): MSK (64 octets, to the NAS as
    MS-MPPE keys) and EMSK (64 octets, kept by the server; never sent)."""

    msk: bytes = field(repr=False)
    emsk: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Challenge:
    """The next EAP-Request, for an Access-Challenge."""

    eap: bytes


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated: ``eap`` is the EAP-Success for the Access-Accept."""

    eap: bytes
    keys: TtlsKeys
    inner_identity: str
    outer_identity: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class Failure:
    """Not authenticated: ``eap`` is the EAP-Failure for the Access-Reject."""

    eap: bytes
    reason: FailureReason
    outer_identity: str
    inner_identity: str | None = None


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Phase 2 reached, no verifier injected: check ``credentials`` (for instance against
    a hash in Redis, off the event loop) and hand the verdict to ``TtlsSession.verdict``.
    Nothing goes to the peer meanwhile; the NAS waits for the Access-Request's answer."""

    credentials: PapCredentials


Step = Challenge | Success | Failure | CheckPassword


@dataclass(frozen=True, slots=True)
class PapCredentials:
    """The inner PAP credentials of phase 2 (RFC 5281 §11.2.5)."""

    username: str
    password: bytes = field(repr=False)


Verifier = Callable[[PapCredentials], bool]
"""Checks the inner credentials; True admits. Injected, so the hash store stays outside."""


class AvpError(ValueError):
    """Phase-2 octets that are not well-formed Diameter AVPs."""


@dataclass(frozen=True, slots=True)
class Avp:
    """One Diameter-format AVP (RFC 5281 §10.1, RFC 6733 §4.1). ``vendor`` is 0 for the
    RADIUS attribute space (AVP codes 1..255 are RADIUS attribute types)."""

    code: int
    data: bytes = field(repr=False)
    vendor: int = 0
    mandatory: bool = False


def encode_avp(avp: Avp) -> bytes:
    """``avp`` in wire form, padded to a multiple of four octets (RFC 5281 §10.2)."""
    flags = (AVP_FLAG_MANDATORY if avp.mandatory else 0) | (AVP_FLAG_VENDOR if avp.vendor else 0)
    head_len = 12 if avp.vendor else 8
    length = head_len + len(avp.data)
    if length > 0xFFFFFF:
        raise ValueError(f"AVP of {length} octets")
    head = _AVP_HDR.pack(avp.code, flags) + length.to_bytes(3, "big")
    if avp.vendor:
        head += _LEN.pack(avp.vendor)
    return head + avp.data + bytes(-length % 4)


def decode_avps(data: bytes) -> list[Avp]:
    """The AVPs in ``data`` (RFC 5281 §10.1): Code (4), flags V M r r r r r r (1), Length
    (3, header included, padding not), Vendor-ID (4, with V), data, then padding to a
    multiple of four. Raises ``AvpError`` for a length that runs short or long."""
    avps: list[Avp] = []
    pos = 0
    size = len(data)
    while pos < size:
        if pos + 8 > size:
            raise AvpError(f"AVP header at {pos} runs past the data")
        code, flags = _AVP_HDR.unpack_from(data, pos)
        length = int.from_bytes(data[pos + 5 : pos + 8], "big")
        vendor = 0
        head_len = 8
        if flags & AVP_FLAG_VENDOR:
            if pos + 12 > size:
                raise AvpError(f"vendor AVP header at {pos} runs past the data")
            vendor = _LEN.unpack_from(data, pos + 8)[0]
            head_len = 12
        if length < head_len or pos + length > size:
            raise AvpError(f"AVP {code} at {pos} has length {length}")
        avps.append(
            Avp(
                code,
                bytes(data[pos + head_len : pos + length]),
                vendor,
                bool(flags & AVP_FLAG_MANDATORY),
            )
        )
        pos += length + (-length % 4)
    return avps


@dataclass(slots=True)
class _Remembered:
    identity: str
    until: float


class ResumptionMemory:
    """Which inner identity each resumable TLS session authenticated, until when.

    Keyed by SHA-256 of the TLS master secret (a resumed TLS 1.2 session has the same
    one, RFC 5246 §7.3), so the table holds no key material. At most ``max_entries``:
    the oldest is forgotten first (that peer then just runs phase 2 again)."""

    def __init__(self, lifetime: float, max_entries: int) -> None:
        if lifetime <= 0 or max_entries <= 0:
            raise ValueError("lifetime and max_entries are positive")
        self.lifetime = lifetime
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, _Remembered] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, master_key: bytes, identity: str, now: float) -> None:
        digest = hashlib.sha256(master_key).digest()
        self._entries.pop(digest, None)
        self._entries[digest] = _Remembered(identity, now + self.lifetime)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def recall(self, master_key: bytes, now: float) -> str | None:
        digest = hashlib.sha256(master_key).digest()
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry.until <= now:
            del self._entries[digest]
            return None
        return entry.identity

    def expire(self, now: float) -> int:
        """Forget entries whose time is up; returns how many (entries are in insertion
        order and share one lifetime, so the expired ones are at the front)."""
        gone = 0
        while self._entries:
            digest, entry = next(iter(self._entries.items()))
            if entry.until > now:
                break
            del self._entries[digest]
            gone += 1
        return gone


_PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


class TtlsServer:
    """The EAP-TTLS server side of one process: TLS context and resumption memory.

    ``cert_chain_pem`` is the server certificate followed by any intermediates (PEM);
    ``key_pem`` its private key (PEM, unencrypted). Reading the files is the caller's job.
    ``fragment_size`` is the largest EAP packet we send (hostapd's default is 1398; the
    path MTU of an 802.11 link limits EAPOL frames, not RADIUS).
    """

    def __init__(
        self,
        cert_chain_pem: bytes,
        key_pem: bytes,
        *,
        fragment_size: int = 1398,
        resumption_lifetime: float = 3600.0,
        resumption_entries: int = 10_000,
    ) -> None:
        if not 64 <= fragment_size <= 4000:
            raise ValueError(f"fragment_size {fragment_size} outside 64..4000")
        certs = x509.load_pem_x509_certificates(cert_chain_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, _PrivateKey):
            raise ValueError("the server key is RSA, EC, Ed25519 or Ed448")
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        # A peer may not renegotiate inside the tunnel: each renegotiation would cost us
        # a handshake for nothing (RFC 5281 has no use for it).
        ctx.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
        ctx.use_certificate(certs[0])
        for extra in certs[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(key)
        ctx.check_privatekey()
        # A server-side session cache (RFC 5246 §7.4.1.2 session ids) and session tickets
        # (RFC 5077, OpenSSL's default): peers resume either way, both expire together.
        ctx.set_session_id(b"citywifi-eap-ttls")
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        ctx.set_timeout(int(resumption_lifetime))
        self._ctx = ctx
        self.fragment_size = fragment_size
        self.resumption = ResumptionMemory(resumption_lifetime, resumption_entries)

    def session(self, verifier: Verifier | None = None) -> TtlsSession:
        """A new conversation; its first ``step`` takes the peer's EAP-Response/Identity.

        With ``verifier`` the password is checked inside ``step``; without, ``step``
        returns ``CheckPassword`` at phase 2 and the caller answers with ``verdict``
        (the shape for an asynchronous credential store)."""
        conn = SSL.Connection(self._ctx, None)
        conn.set_accept_state()
        return TtlsSession(self, conn, verifier)


class _Phase(Enum):
    IDENTITY = "identity"
    TLS = "tls"
    DONE = "done"


class TtlsSession:
    """One EAP-TTLS conversation (see the module docstring). Not thread-safe; one
    request at a time, in the order the peer sends them."""

    def __init__(self, server: TtlsServer, conn: SSL.Connection, verifier: Verifier | None) -> None:
        self._server = server
        self._conn = conn
        self._verifier = verifier
        self._phase = _Phase.IDENTITY
        self._identifier = 0
        self._rounds = 0
        self._outer = ""
        self._incoming = bytearray()
        self._incoming_length: int | None = None
        self._outgoing = b""
        self._handshake_done = False
        self._asked_phase2 = False
        self._checking: PapCredentials | None = None

    @property
    def outer_identity(self) -> str:
        """The identity of the peer's EAP-Response/Identity (often anonymous, RFC 7542 §2.4)."""
        return self._outer

    def step(self, eap: bytes, now: float) -> Step:
        """Answer the peer's EAP packet ``eap``. After Success or Failure the session is
        finished: a further step fails with ``finished``."""
        if self._phase is _Phase.DONE or self._checking is not None:
            return self._fail("finished", self._identifier)
        self._rounds += 1
        try:
            packet = decode_eap(eap)
        except EapError:
            return self._fail("malformed", self._identifier)
        if packet.code != EapCode.RESPONSE:
            return self._fail("unexpected_packet", packet.identifier)
        if self._rounds > MAX_ROUNDS:
            return self._fail("too_many_rounds", packet.identifier)
        if self._phase is _Phase.IDENTITY:
            if packet.type != EapType.IDENTITY:
                return self._fail("unexpected_packet", packet.identifier)
            self._outer = packet.data.decode("utf-8", errors="replace")
            self._phase = _Phase.TLS
            self._identifier = packet.identifier
            return self._request(bytes((FLAG_START,)))
        if packet.identifier != self._identifier:
            return self._fail("unexpected_packet", packet.identifier)
        if packet.type == EapType.NAK:
            return self._fail("peer_refused_ttls", packet.identifier)
        if packet.type != EapType.TTLS or not packet.data:
            return self._fail("unexpected_packet", packet.identifier)
        return self._ttls(packet.data, now)

    # -- TTLS framing ---------------------------------------------------------------

    def _ttls(self, body: bytes, now: float) -> Step:
        flags = body[0]
        data = body[1:]
        if flags & FLAG_LENGTH:
            if len(data) < 4:
                return self._fail("bad_fragment", self._identifier)
            announced = _LEN.unpack_from(data)[0]
            data = data[4:]
            if announced > MAX_TLS_MESSAGE or (
                self._incoming_length is not None and announced != self._incoming_length
            ):
                return self._fail("bad_fragment", self._identifier)
            self._incoming_length = announced
        if self._outgoing:
            # We are sending a fragmented message: the peer must acknowledge (RFC 5281 §9.2.2).
            if data or flags & FLAG_MORE:
                return self._fail("bad_fragment", self._identifier)
            return self._next_fragment()
        self._incoming += data
        if len(self._incoming) > MAX_TLS_MESSAGE or (
            self._incoming_length is not None and len(self._incoming) > self._incoming_length
        ):
            return self._fail("bad_fragment", self._identifier)
        if flags & FLAG_MORE:
            return self._request(b"\x00")  # acknowledge the fragment
        if self._incoming_length is not None and len(self._incoming) != self._incoming_length:
            return self._fail("bad_fragment", self._identifier)
        message = bytes(self._incoming)
        self._incoming.clear()
        self._incoming_length = None
        if not message:
            return self._fail("unexpected_packet", self._identifier)
        return self._tls(message, now)

    def _request(self, ttls_body: bytes) -> Challenge:
        self._identifier = (self._identifier + 1) & 0xFF
        return Challenge(
            EapPacket(EapCode.REQUEST, self._identifier, EapType.TTLS, ttls_body).encode()
        )

    def _send(self, message: bytes) -> Challenge:
        """Start sending a TLS message, fragmented when it does not fit one packet."""
        room = self._server.fragment_size - 6  # EAP header (5) and the flags octet
        if len(message) <= room:
            return self._request(b"\x00" + message)
        first = room - 4
        self._outgoing = message[first:]
        return self._request(
            bytes((FLAG_LENGTH | FLAG_MORE,)) + _LEN.pack(len(message)) + message[:first]
        )

    def _next_fragment(self) -> Challenge:
        room = self._server.fragment_size - 6
        chunk, self._outgoing = self._outgoing[:room], self._outgoing[room:]
        return self._request(bytes((FLAG_MORE if self._outgoing else 0,)) + chunk)

    # -- TLS and phase 2 --------------------------------------------------------------

    def _tls(self, message: bytes, now: float) -> Step:
        conn = self._conn
        try:
            conn.bio_write(message)
            if not self._handshake_done:
                try:
                    conn.do_handshake()
                    self._handshake_done = True
                except SSL.WantReadError:
                    pass
            inner = self._application_data() if self._handshake_done else b""
        except SSL.Error:
            return self._fail("tls_failed", self._identifier)
        out = self._pending_tls()
        if inner:
            return self._phase2(inner, now)
        if out:
            return self._send(out)
        if self._handshake_done:
            remembered = self._server.resumption.recall(self._master_key(), now)
            if remembered is not None:
                return self._succeed(remembered, resumed=True)
            if not self._asked_phase2:
                # A resumed TLS session we no longer hold an identity for: an empty
                # request asks the peer for phase 2 after all (RFC 5281 §7.3).
                self._asked_phase2 = True
                return self._request(b"\x00")
        return self._fail("unexpected_packet", self._identifier)

    def _master_key(self) -> bytes:
        """The TLS 1.2 master secret; only called once the handshake is done, when
        OpenSSL always has one."""
        key = self._conn.master_key()
        if key is None:
            raise SSL.Error("no master secret after the handshake")
        return key

    def _application_data(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            try:
                chunks.append(self._conn.recv(16384))
            except SSL.WantReadError:
                return b"".join(chunks)
            except SSL.ZeroReturnError:
                return b"".join(chunks)

    def _pending_tls(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._conn.bio_read(16384)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _phase2(self, data: bytes, now: float) -> Step:
        try:
            avps = decode_avps(data)
        except AvpError:
            return self._fail("bad_inner_avps", self._identifier)
        username: bytes | None = None
        password: bytes | None = None
        for avp in avps:
            if avp.vendor == 0 and avp.code == AVP_USER_NAME:
                username = avp.data
            elif avp.vendor == 0 and avp.code == AVP_USER_PASSWORD:
                password = avp.data
            elif avp.mandatory:
                return self._fail("unsupported_inner_method", self._identifier)
        if username is None or password is None:
            return self._fail("missing_inner_credentials", self._identifier)
        identity = username.decode("utf-8", errors="replace")
        credentials = PapCredentials(identity, password.rstrip(b"\x00"))
        if self._verifier is None:
            self._checking = credentials
            return CheckPassword(credentials)
        return self._decide(credentials, self._verifier(credentials), now)

    def verdict(self, ok: bool, now: float) -> Success | Failure:
        """The answer to ``CheckPassword``: True admits the credentials it named."""
        credentials = self._checking
        if credentials is None:
            return self._fail("unexpected_packet", self._identifier)
        self._checking = None
        return self._decide(credentials, ok, now)

    def _decide(self, credentials: PapCredentials, ok: bool, now: float) -> Success | Failure:
        identity = credentials.username
        if not ok:
            return self._fail("wrong_password", self._identifier, identity)
        self._server.resumption.remember(self._master_key(), identity, now)
        return self._succeed(identity, resumed=False)

    def _succeed(self, identity: str, *, resumed: bool) -> Success:
        material = self._conn.export_keying_material(KEYING_LABEL, 128)
        # OpenSSL drops a session from its cache when the connection is freed without a
        # shutdown (SSL_free -> ssl_clear_bad_session). EAP ends the TLS session without
        # close_notify, so mark this one as closed cleanly: it stays resumable.
        self._conn.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)
        self._phase = _Phase.DONE
        eap = EapPacket(EapCode.SUCCESS, self._identifier).encode()
        return Success(eap, TtlsKeys(material[:64], material[64:]), identity, self._outer, resumed)

    def _fail(self, reason: FailureReason, identifier: int, inner: str | None = None) -> Failure:
        self._phase = _Phase.DONE
        return Failure(EapPacket(EapCode.FAILURE, identifier).encode(), reason, self._outer, inner)
