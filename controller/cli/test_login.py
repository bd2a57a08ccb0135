"""``citywifi test-login``: citywifi's ``radtest``. Issues a one-time credential for a
phone number the way the portal does (``controller.services.logins``), sends the
Access-Request to the running server over UDP with our own codec (``radius.packet``:
PAP, Message-Authenticator), and with ``--acct`` the session's Accounting Start,
Interim-Update and Stop carrying the Accept's Class; every request and reply is printed
decoded with names (``radius.trace``; the password redacted).

The server knows a NAS by its packets' source address, so this must run on a host that
is (in) a configured client's network: choose it with ``--client`` (e.g. a ``[[clients]]``
entry for 127.0.0.1 kept for testing, as radtest needs a localhost client in FreeRADIUS).
Exit 0 on Access-Accept (and every Accounting-Response with ``--acct``), 1 on a reject or
no answer, 2 on a usage problem.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from controller.cli import logs
from controller.config import Client, Config
from controller.domain.phone import PhoneError, normalize_phone
from controller.services.logins import issue_login
from controller.storage.keyfiles import load_person_key
from controller.storage.redis_conn import connect_store, embedded_for
from controller.storage.store import StoreUnavailable
from radius.attrs import AcctStatus, Attr, Code, TerminateCause
from radius.packet import (
    PacketError,
    Request,
    attr,
    attr_int,
    attr_text,
    decode_reply,
    encode_request,
    encrypt_user_password,
)
from radius.trace import trace

TEST_MAC = "02-00-5E-10-00-01"  # locally administered (IEEE 802: U/L bit set)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "test-login", help="issue a login and send Access-Request (and accounting) like radtest"
    )
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--phone", required=True)
    p.add_argument("--client", default="", help="[[clients]] id to send as (default: the only)")
    p.add_argument("--acct", action="store_true", help="then Accounting Start, Interim, Stop")
    p.add_argument("--mac", default=TEST_MAC, help="Calling-Station-Id of the test device")
    p.add_argument("--server", default="", help="server address (default: radius.bind or local)")
    p.add_argument("--auth-port", type=int, default=0, help="default: radius.auth_port")
    p.add_argument("--acct-port", type=int, default=0, help="default: radius.acct_port")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per try (3 tries)")


class _Socket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.replies.put_nowait(data)


@dataclass
class Exchange:
    """One UDP socket to one server port: send a request, wait for its verified reply."""

    server: tuple[str, int]
    secret: bytes
    timeout: float
    out: TextIO
    local: str = ""

    async def send(self, code: int, attrs: bytes, *, password: bytes = b"") -> Request | None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            _Socket, local_addr=(self.local, 0) if self.local else None, remote_addr=self.server
        )
        try:
            identifier = secrets.randbelow(256)
            authenticator = secrets.token_bytes(16) if code == Code.ACCESS_REQUEST else None
            if password and authenticator is not None:
                hidden = encrypt_user_password(password, self.secret, authenticator)
                attrs = attr(Attr.USER_PASSWORD, hidden) + attrs
            data = encode_request(code, identifier, self.secret, attrs, authenticator=authenticator)
            sent_with = data[4:20]
            self._print("Sent", data)
            for _ in range(3):  # RFC 2865 §2.4-style retransmission, same packet
                transport.sendto(data)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.timeout):
                        while True:
                            raw = await proto.replies.get()
                            try:
                                reply = decode_reply(raw, self.secret, sent_with)
                            except PacketError as exc:
                                print(f"(dropped a reply: {exc.reason})", file=self.out)
                                continue
                            if reply.identifier == identifier:
                                self._print("Received", raw)
                                return reply
            print(f"(no answer from {self.server[0]}:{self.server[1]})", file=self.out)
            return None
        finally:
            transport.close()

    def _print(self, what: str, data: bytes) -> None:
        lines = trace(data).lines()
        print(f"{what} {lines[0]}", file=self.out)
        for line in lines[1:]:
            print(line, file=self.out)


def pick_client(config: Config, client_id: str) -> Client | None:
    if client_id:
        return next((c for c in config.clients if c.id == client_id), None)
    return config.clients[0] if len(config.clients) == 1 else None


def _local_source(client: Client) -> str:
    """Bind to the client's address when it is a single one (so the server sees it)."""
    net = client.network
    return str(net.network_address) if net.num_addresses == 1 else ""


async def run(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    client = pick_client(config, args.client)
    if client is None:
        choices = ", ".join(c.id for c in config.clients) or "none configured"
        print(f"citywifi test-login: --client: choose one of: {choices}", file=sys.stderr)
        return 2
    try:
        phone = normalize_phone(args.phone)
    except PhoneError as exc:
        print(f"citywifi test-login: --phone: {exc}", file=sys.stderr)
        return 2
    embedded = embedded_for(config.redis)
    store = await connect_store(config, embedded)
    try:
        issued = await issue_login(
            store,
            phone_e164=phone,
            mac="",
            client_id=client.id,
            person_key=load_person_key(config.security.person_key, config.redis.data_dir),
            ttl=config.quota.login_ttl,
            now=int(time.time()),
        )
    finally:
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
    bind = config.radius.bind
    host = args.server or ("127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind)
    local = _local_source(client)
    print(f"issued {issued.username} for person {issued.person} at client {client.id}", file=out)
    auth = Exchange(
        (host, args.auth_port or config.radius.auth_port), client.secret, args.timeout, out, local
    )
    common = (
        attr_text(Attr.USER_NAME, issued.username)
        + attr_text(Attr.CALLING_STATION_ID, args.mac)
        + attr_text(Attr.NAS_IDENTIFIER, client.nas_identifier or client.id)
    )
    reply = await auth.send(
        Code.ACCESS_REQUEST,
        common + attr_int(Attr.NAS_PORT, 0),
        password=issued.password.encode(),
    )
    if reply is None or reply.code != Code.ACCESS_ACCEPT:
        return 1
    if not args.acct:
        return 0
    acct = Exchange(
        (host, args.acct_port or config.radius.acct_port), client.secret, args.timeout, out, local
    )
    session = secrets.token_hex(8)
    klass = b"".join(attr(Attr.CLASS, c) for c in reply.all(Attr.CLASS))
    steps = (
        (AcctStatus.START, 0, b""),
        (AcctStatus.INTERIM_UPDATE, 60, b""),
        (AcctStatus.STOP, 120, attr_int(Attr.ACCT_TERMINATE_CAUSE, TerminateCause.USER_REQUEST)),
    )
    for status, seconds, extra in steps:
        answered = await acct.send(
            Code.ACCOUNTING_REQUEST,
            common
            + klass
            + attr_int(Attr.ACCT_STATUS_TYPE, status)
            + attr_text(Attr.ACCT_SESSION_ID, session)
            + attr_int(Attr.ACCT_SESSION_TIME, seconds)
            + extra,
        )
        if answered is None or answered.code != Code.ACCOUNTING_RESPONSE:
            return 1
    return 0


def run_cli(config: Config, args: argparse.Namespace, out: TextIO | None = None) -> int:
    logs.configure_logging(config.log)  # logs to stderr: stdout is the exchange
    try:
        return asyncio.run(run(config, args, out or sys.stdout))
    except StoreUnavailable as exc:
        print(f"citywifi test-login: Redis unavailable: {exc}", file=sys.stderr)
        return 1
