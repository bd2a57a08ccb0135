"""An asyncio RADIUS client built on pyrad: a second, independent implementation.

Tests, benchmarks and the NAS simulator use it to talk to our server, so packets are
built, signed and verified by pyrad's code, not by ``radius.packet``. pyrad errors are
mapped here: a reply that pyrad cannot decode or verify is discarded and counted, as
RFC 2865 §3 asks of a client (a forged or corrupt reply must not end the wait).

One rule is ours: pyrad checks the Message-Authenticator of an Accounting-Response over
16 zero octets (as FreeRADIUS did before 3.2.9), while FreeRADIUS 3.2.9 on and radsecproxy
compute it over the Request Authenticator; ``accounting_reply_valid`` takes both.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any, Self

from pyrad.dictionary import Dictionary
from pyrad.packet import AcctPacket, AuthPacket, CoAPacket, Packet
from pyrad.packet import PacketError as PyradPacketError

from radius.attrs import DICTIONARY_DIR, Attr, Code

__all__ = ["RadiusClient", "accounting_reply_valid", "load_dictionary", "set_chap", "set_pap"]


@cache
def load_dictionary() -> Dictionary:
    """Our dictionary (``DICTIONARY_DIR/dictionary``) as a pyrad ``Dictionary``, read once."""
    return Dictionary(str(DICTIONARY_DIR / "dictionary"))


def set_pap(packet: Packet, password: str | bytes) -> None:
    """Put a PAP User-Password into an Access-Request, hidden with pyrad's ``PwCrypt``
    (RFC 2865 §5.2). Creates the Request Authenticator if the packet has none."""
    packet[int(Attr.USER_PASSWORD)] = [packet.PwCrypt(password)]


def set_chap(
    packet: Packet,
    password: str | bytes,
    *,
    challenge: bytes | None = None,
    ident: int | None = None,
) -> None:
    """Put a CHAP-Password into an Access-Request (RFC 2865 §2.2, §5.3).

    With ``challenge`` it is sent as CHAP-Challenge (the CoovaChilli way), otherwise the
    Request Authenticator is the challenge (created here if the packet has none).
    Binary values are set by attribute code so that pyrad does not reinterpret them.
    """
    secret_pw = password.encode("utf-8") if isinstance(password, str) else password
    chap_id = bytes((secrets.randbelow(256) if ident is None else ident,))
    if challenge is None:
        if packet.authenticator is None:
            packet.authenticator = packet.CreateAuthenticator()
        used = packet.authenticator
    else:
        packet[int(Attr.CHAP_CHALLENGE)] = [challenge]
        used = challenge
    response = hashlib.md5(chap_id + secret_pw + used).digest()
    packet[int(Attr.CHAP_PASSWORD)] = [chap_id + response]


def accounting_reply_valid(raw: bytes, request_authenticator: bytes, secret: bytes) -> bool:
    """Verify an Accounting-Response (RFC 2866 §3) to a request with this authenticator:
    the Response Authenticator, and a Message-Authenticator when present, over the
    Request Authenticator (FreeRADIUS 3.2.9 on, radsecproxy) or over 16 zero octets
    (FreeRADIUS before 3.2.9, pyrad): no RFC says which, so a client takes both."""
    if len(raw) < 20:
        return False
    raw = raw[: struct.unpack("!H", raw[2:4])[0]]
    response = hashlib.md5(raw[:4] + request_authenticator + raw[20:] + secret).digest()
    if not hmac.compare_digest(response, raw[4:20]):
        return False
    pos, ma_at = 20, -1
    while pos + 2 <= len(raw):
        size = raw[pos + 1]
        if size < 2 or pos + size > len(raw):
            return False
        if raw[pos] == int(Attr.MESSAGE_AUTHENTICATOR):
            if size != 18 or ma_at >= 0:
                return False
            ma_at = pos
        pos += size
    if ma_at < 0:
        return True
    zeroed = raw[: ma_at + 2] + bytes(16) + raw[ma_at + 18 :]
    given = raw[ma_at + 2 : ma_at + 18]
    return any(
        hmac.compare_digest(
            hmac.new(secret, zeroed[:4] + vector + zeroed[20:], "md5").digest(), given
        )
        for vector in (request_authenticator, bytes(16))
    )


@dataclass(slots=True)
class _Pending:
    packet: Packet | None
    future: asyncio.Future[Any]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: RadiusClient) -> None:
        self._client = client

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._client._received(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on a connected socket: the request simply times out.
        self._client.errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._lost()


class RadiusClient:
    """A RADIUS client over one connected UDP socket to ``server``.

    ``request`` sends a pyrad packet and waits for the reply with its Identifier,
    verified with pyrad (``VerifyReply``: Response Authenticator, Message-Authenticator
    when present, required in replies to Access-Request and Status-Server when
    ``require_message_authenticator``). Identifiers are allocated per client, 0..255
    wrapping; at most 256 requests are outstanding, more wait for a free Identifier.

    Use ``async with RadiusClient(...) as client`` or ``open()`` / ``close()``.
    """

    def __init__(
        self,
        server: tuple[str, int],
        secret: bytes,
        *,
        local_addr: tuple[str, int] = ("127.0.0.1", 0),
        dictionary: Dictionary | None = None,
        require_message_authenticator: bool = True,
    ) -> None:
        self.server = server
        self.secret = secret
        self.local_addr = local_addr
        self.dictionary = load_dictionary() if dictionary is None else dictionary
        self.require_message_authenticator = require_message_authenticator
        self.discarded = 0
        """Datagrams dropped: unknown Identifier, undecodable or failing verification."""
        self.errors = 0
        """Socket errors reported by the OS (e.g. ICMP port unreachable)."""
        self._transport: asyncio.DatagramTransport | None = None
        self._closed: asyncio.Future[None] | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_id = secrets.randbelow(256)
        self._slots = asyncio.Semaphore(256)

    async def open(self) -> None:
        """Bind to ``local_addr`` and connect to ``server``."""
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=self.local_addr, remote_addr=self.server
        )
        self._transport = transport

    async def close(self) -> None:
        """Close the socket; outstanding requests end with None."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        transport.close()
        if self._closed is not None:
            await self._closed

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def sockname(self) -> tuple[str, int]:
        """The local address and port the client sends from."""
        name: tuple[str, int] = self._open_transport().get_extra_info("sockname")[:2]
        return name

    def auth_request(
        self,
        *,
        code: int = Code.ACCESS_REQUEST,
        password: str | bytes | None = None,
        add_message_authenticator: bool = True,
        **attrs: Any,
    ) -> Packet:
        """An Access-Request (or Status-Server with ``code=12``) as a pyrad ``AuthPacket``.

        ``attrs`` are dictionary names with ``_`` for ``-`` (``User_Name="x"``);
        ``password`` is sent as PAP (``set_pap``); ``set_chap`` does CHAP.
        """
        packet = AuthPacket(code=code, id=0, secret=self.secret, dict=self.dictionary, **attrs)
        if add_message_authenticator:
            packet.add_message_authenticator()
        if password is not None:
            set_pap(packet, password)
        return packet

    def acct_request(self, *, add_message_authenticator: bool = True, **attrs: Any) -> Packet:
        """An Accounting-Request as a pyrad ``AcctPacket`` (Request Authenticator computed
        when sent, RFC 2866 §3)."""
        packet = AcctPacket(id=0, secret=self.secret, dict=self.dictionary, **attrs)
        if add_message_authenticator:
            packet.add_message_authenticator()
        return packet

    def dae_request(
        self,
        *,
        code: int = Code.DISCONNECT_REQUEST,
        add_message_authenticator: bool = True,
        **attrs: Any,
    ) -> Packet:
        """A Disconnect-Request or CoA-Request (RFC 5176) as a pyrad ``CoAPacket``."""
        packet = CoAPacket(code=code, id=0, secret=self.secret, dict=self.dictionary, **attrs)
        if add_message_authenticator:
            packet.add_message_authenticator()
        return packet

    def status_server(self, *, accounting: bool = False) -> Packet:
        """A Status-Server (RFC 5997 §3) for the authentication or the accounting port,
        with the Message-Authenticator it requires."""
        cls = AcctPacket if accounting else AuthPacket
        packet = cls(code=Code.STATUS_SERVER, id=0, secret=self.secret, dict=self.dictionary)
        packet.add_message_authenticator()
        return packet

    async def request(
        self, packet: Packet, *, timeout: float = 1.0, retries: int = 0
    ) -> Packet | None:
        """Send ``packet`` and return pyrad's decoded, verified reply, or None after
        ``retries`` retransmissions of the same bytes, each waited for ``timeout`` s.

        The packet gets a free Identifier of this client; it is encoded once, so a
        retransmission is the identical datagram (RFC 5080 §2.2.1).
        """
        async with self._slots:
            ident = self._allocate_id()
            packet.id = ident
            data: bytes = packet.RequestPacket()
            result = await self._exchange(ident, data, packet, timeout, retries)
        return result

    async def request_raw(
        self, data: bytes, *, timeout: float = 1.0, retries: int = 0
    ) -> bytes | None:
        """Send pre-encoded bytes and return the first datagram answering their
        Identifier, unverified (check it with ``radius.packet.decode_reply``), or None.
        Raises RuntimeError if the Identifier is in use by an outstanding request."""
        if len(data) < 2:
            raise ValueError("a request has at least a code and an identifier")
        async with self._slots:
            ident = data[1]
            if ident in self._pending:
                raise RuntimeError(f"identifier {ident} is in use")
            reply: bytes | None = await self._exchange(ident, data, None, timeout, retries)
        return reply

    def _open_transport(self) -> asyncio.DatagramTransport:
        if self._transport is None:
            raise RuntimeError("the client is not open")
        return self._transport

    def _allocate_id(self) -> int:
        for _ in range(256):
            ident = self._next_id
            self._next_id = (ident + 1) & 0xFF
            if ident not in self._pending:
                return ident
        raise RuntimeError("no free identifier")

    async def _exchange(
        self, ident: int, data: bytes, packet: Packet | None, timeout: float, retries: int
    ) -> Any:
        transport = self._open_transport()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = _Pending(packet, future)
        try:
            for _ in range(retries + 1):
                if transport.is_closing():
                    break
                transport.sendto(data)
                done, _ = await asyncio.wait((future,), timeout=timeout)
                if done:
                    return None if future.cancelled() else future.result()
            return None
        finally:
            del self._pending[ident]
            if not future.done():
                future.cancel()

    def _received(self, data: bytes) -> None:
        pending = self._pending.get(data[1]) if len(data) >= 20 else None
        if pending is None or pending.future.done():
            self.discarded += 1
            return
        request = pending.packet
        if request is None:
            pending.future.set_result(data)
            return
        try:
            reply = request.CreateReply(packet=data)
            if request.code == Code.ACCOUNTING_REQUEST:
                valid = reply.id == request.id and accounting_reply_valid(
                    data, request.authenticator, self.secret
                )
            else:
                valid = request.VerifyReply(
                    reply, data, enforce_ma=self.require_message_authenticator
                )
        except (PyradPacketError, struct.error, ValueError, KeyError):
            valid = False
        if not valid:
            self.discarded += 1
            return
        pending.future.set_result(reply)

    def _lost(self) -> None:
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
