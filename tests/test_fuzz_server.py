"""Hostile datagrams against a live controller (real redis-server, real UDP on 127.0.0.1),
and BlastRADIUS (CVE-2024-3596) over the wire, also with FreeRADIUS's radclient.

The fuzz stream is the corpus (tests/fuzz_corpus) plus a bounded number of seeded
mutations, sent to both ports from a known client, a second known client with its own
secret and an unknown address. Afterwards the server must still answer correctly, have no
request in flight, have logged no handler failure, and have counted every datagram under
the drop reason the packet rules give (docs/radius.md, "Packet checks")."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import re
import socket
import struct
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client import REGISTRY

from controller.cli.serve import Controller
from controller.config import load_config
from controller.domain import quota
from controller.domain.identity import sign_class, verify_class
from controller.services.logins import issue_login
from controller.storage import keys
from radius.attrs import Attr, Code
from radius.packet import PacketError, decode_reply, decode_request
from tests.conftest import SECRET, write_config
from tests.support.fuzz_kit import (
    MA,
    PROXY_STATE,
    corpus,
    mutations,
    pap,
    pending,
    request,
    resign,
    tlv,
    u32,
)
from tests.support.pyrad_client import RadiusClient, set_pap
from tests.support.radclient import radclient
from tests.support.redis_proc import RedisProcess, until

FUZZ_SEED = 3596  # CVE-2024-3596
MUTATIONS = 3000
SOURCES = {  # source address -> shared secret (None: not a client)
    "127.0.0.1": SECRET.encode(),
    "127.0.0.2": f"{SECRET}-2".encode(),
    "127.0.0.9": None,
}
BATCH_DATAGRAMS = 32
BATCH_OCTETS = 96_000  # well under the default socket receive buffer (212 992)
PHONE = "+8613800138000"


# --------------------------------------------------------------------------- harness


def samples(port: str) -> Counter[tuple[str, str]]:
    """Every drop and request counter of ``port``: ("drop", reason) / (type, result)."""
    out: Counter[tuple[str, str]] = Counter()
    for family in REGISTRY.collect():
        if family.name not in ("citywifi_radius_dropped", "citywifi_radius_requests"):
            continue
        for s in family.samples:
            if s.name.endswith("_total") and s.labels.get("port") == port:
                key = (
                    ("drop", s.labels["reason"])
                    if "reason" in s.labels
                    else (s.labels["type"], s.labels["result"])
                )
                out[key] += int(s.value)
    return out


@dataclass
class Sender(asyncio.DatagramProtocol):
    """One UDP socket bound to a source address; keeps every reply it receives. Sends
    with the socket itself: asyncio's transport (3.11) silently skips empty datagrams."""

    sock: socket.socket
    replies: list[tuple[int, bytes]] = field(default_factory=list)
    transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.replies.append((int(addr[1]), data))

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_sender(source: str) -> Sender:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    sender = Sender(sock)
    await asyncio.get_running_loop().create_datagram_endpoint(lambda: sender, sock=sock)
    return sender


@contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """Exceptions that escaped to the event loop (e.g. out of datagram_received)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


def predict(data: bytes, role: str, secret: bytes | None) -> str:
    """The counter a datagram must move, from the packet rules alone."""
    if secret is None:
        return "drop:unknown_client"
    try:
        req = decode_request(data, secret)
    except PacketError as exc:
        return f"drop:{exc.reason}"
    if req.code == Code.STATUS_SERVER:
        return "status"
    expected = Code.ACCESS_REQUEST if role == "auth" else Code.ACCOUNTING_REQUEST
    return "handled" if req.code == expected else "drop:unexpected_code"


def observed(delta: Counter[tuple[str, str]], role: str) -> Counter[str]:
    """Counter deltas folded into the categories of ``predict``."""
    out: Counter[str] = Counter()
    for (kind, what), n in delta.items():
        if kind == "status":
            out["status"] += n
        elif kind == "drop" and what in ("duplicate_in_progress", "overload", "not_recorded"):
            out["handled"] += n
        elif kind == "drop":
            out[f"drop:{what}"] += n
        else:  # answered ("auth"/"acct") or a cached duplicate
            out["handled"] += n
    return +out


def stream(rng: random.Random) -> list[tuple[str, str, bytes]]:
    """(role, source, datagram): corpus first, then seeded mutations for each client."""
    kept = list(corpus())
    out = [(name.split("/")[-1][:4], "127.0.0.1", data) for name, data in kept]
    by_role = {r: [d for n, d in kept if n.split("/")[-1].startswith(r)] for r in ("auth", "acct")}
    plan = [("127.0.0.1", MUTATIONS * 7 // 10), ("127.0.0.2", MUTATIONS // 5)]
    plan.append(("127.0.0.9", MUTATIONS - sum(n for _, n in plan)))
    for source, count in plan:
        secret = SOURCES[source] or b"not-a-client"
        for role in ("auth", "acct"):
            seeds = [resign(d, secret) for d in by_role[role]]
            for data in mutations(seeds, count // 2, rng.randrange(2**32), secret):
                # one in ten goes to the other port (code checks)
                other = "acct" if role == "auth" else "auth"
                out.append((other if rng.random() < 0.1 else role, source, data))
    rng.shuffle(out)
    return out


# --------------------------------------------------------------------------- the fuzz pass


async def test_mutated_datagrams_leave_the_server_answering(
    controller: Controller, tmp_path: Path
) -> None:
    ports = {"auth": controller.auth_port, "acct": controller.acct_port}
    senders: dict[str, Sender] = {}
    for source in SOURCES:
        senders[source] = await open_sender(source)
    sent: dict[tuple[str, int, int], list[bytes]] = {}  # (source, port, id) -> authenticators
    predicted = {role: Counter[str]() for role in ports}
    before = {role: samples(role) for role in ports}
    no_answer_possible = 0
    datagrams = stream(random.Random(FUZZ_SEED))

    def progress() -> dict[str, Counter[str]]:
        return {r: observed(samples(r) - before[r], r) for r in ports}

    def settled() -> bool:
        got = progress()
        idle = all(not e.tasks for e in controller.endpoints)
        return idle and all(sum(got[r].values()) == sum(predicted[r].values()) for r in ports)

    with structlog.testing.capture_logs() as logs, loop_errors() as escaped:
        batch: list[bytes] = []
        octets = 0
        for i, (role, source, data) in enumerate(datagrams):
            secret = SOURCES[source]
            outcome = predict(data, role, secret)
            predicted[role][outcome] += 1
            if outcome == "handled" and role == "acct":
                no_answer_possible += 1  # e.g. no Acct-Session-Id: not recorded, no answer
            if len(data) >= 20:
                sent.setdefault((source, ports[role], data[1]), []).append(data[4:20])
            senders[source].send(data, ports[role])
            batch.append(data)
            octets += len(data)
            if len(batch) >= BATCH_DATAGRAMS or octets >= BATCH_OCTETS or i == len(datagrams) - 1:
                await until(settled, 15.0, f"the server to count batch ending at datagram {i}")
                failed = [e for e in logs if e.get("log_level") in ("error", "critical")]
                if failed or escaped:
                    kept = tmp_path / "crash-candidates"
                    kept.mkdir(exist_ok=True)
                    for j, d in enumerate(batch):
                        (kept / f"{j:02d}.bin").write_bytes(d)
                    raise AssertionError(
                        f"handler failure {failed or escaped}; this batch is in {kept} "
                        "(add the culprit to tests/fuzz_corpus/crashers/)"
                    )
                batch, octets = [], 0

    got = progress()
    for role in ports:
        assert got[role] == +predicted[role], role  # every datagram, under the right reason
        assert samples(role)[("drop", "overload")] == before[role][("drop", "overload")]
    not_recorded = (
        samples("acct")[("drop", "not_recorded")] - before["acct"][("drop", "not_recorded")]
    )
    assert not_recorded <= no_answer_possible
    assert samples("auth")[("drop", "not_recorded")] == before["auth"][("drop", "not_recorded")]
    # the stream reached every stage: each reason of the packet rules was seen
    reasons = {k for r in ports for k in predicted[r]}
    assert reasons >= {
        "handled",
        "status",
        "drop:unknown_client",
        "drop:malformed",
        "drop:unexpected_code",
        "drop:missing_message_authenticator",
        "drop:bad_message_authenticator",
        "drop:bad_request_authenticator",
    }, reasons
    assert all(not e.tasks for e in controller.endpoints)
    assert all(len(e.dedup) <= len(datagrams) for e in controller.endpoints)

    # every answer sent during the stream was a signed reply with Message-Authenticator
    # first; but an Accounting-Response to an Accounting-Request carries none (the peers
    # disagree on how it is computed: radius.packet.encode_reply)
    for source, sender in senders.items():
        secret = SOURCES[source]
        for port, reply in sender.replies:
            assert secret is not None, "an unknown client was answered"
            signed = reply[20:22] == bytes((MA, 18))
            assert signed or reply[0] == Code.ACCOUNTING_RESPONSE, reply.hex()
            assert any(
                _verifies(reply, secret, auth, signed)
                for auth in sent.get((source, port, reply[1]), [])
            ), reply.hex()
    assert senders["127.0.0.2"].replies, "the second client's re-signed mutations got answers"
    for sender in senders.values():
        sender.close()

    await _still_answers(controller)


def _verifies(reply: bytes, secret: bytes, authenticator: bytes, signed: bool = True) -> bool:
    try:
        decode_reply(reply, secret, authenticator, require_message_authenticator=signed)
    except PacketError:
        return False
    return True


async def _still_answers(ctl: Controller) -> None:
    """A valid login and accounting after the storm are answered as on a quiet day."""
    assert ctl.store is not None
    issued = await issue_login(
        ctl.store, phone_e164=PHONE, mac="", person_key=ctl.person_key, ttl=300,
        now=int(ctl.clock()), client_id="nas-local",
    )  # fmt: skip
    async with RadiusClient(("127.0.0.1", ctl.auth_port), SECRET.encode()) as c:
        req = c.auth_request(User_Name=issued.username, Calling_Station_Id="AA-BB-CC-00-09-01")
        set_pap(req, issued.password)
        reply = await c.request(req, timeout=2.0)
        assert reply is not None and reply.code == Code.ACCESS_ACCEPT
        assert reply.raw_packet[20] == Attr.MESSAGE_AUTHENTICATOR
        assert 0 < reply["Session-Timeout"][0] <= 2 * 86400
        klass = reply[int(Attr.CLASS)][0]
        status = await c.request(c.status_server(), timeout=2.0)
        assert status is not None and status.code == Code.ACCESS_ACCEPT
    async with RadiusClient(("127.0.0.1", ctl.acct_port), SECRET.encode()) as c:
        req = c.acct_request(
            Acct_Status_Type="Interim-Update",
            Acct_Session_Id="after-the-storm",
            Acct_Session_Time=60,
            Calling_Station_Id="AA-BB-CC-00-09-01",
        )
        req[int(Attr.CLASS)] = [klass]
        reply = await c.request(req, timeout=2.0)
        assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    today = quota.day_key(quota.local_day(int(ctl.clock()), ctl.config.quota.timezone))
    assert await ctl.store.used_on(issued.person, today) == 60


# --------------------------------------------------------------------------- BlastRADIUS


async def exchange(port: int, data: bytes, source: str = "127.0.0.1") -> bytes | None:
    """Send one datagram, return the reply (None after a short wait: dropped)."""
    sender = await open_sender(source)
    try:
        sender.send(data, port)
        try:
            await until(lambda: bool(sender.replies), 0.5, "a reply")
        except AssertionError:
            return None
        return sender.replies[0][1]
    finally:
        sender.close()


def reply_checks(reply: bytes, request: bytes, proxies: list[bytes], secret: bytes) -> None:
    """Independently of radius.packet: Message-Authenticator first and valid (HMAC-MD5
    over the Request Authenticator), except in an Accounting-Response to an
    Accounting-Request, which has none (FreeRADIUS before 3.2.9 and radsecproxy would
    each drop the other's way of computing it); Response Authenticator valid, the
    Proxy-States echoed last, in order."""
    request_auth = request[4:20]
    if request[0] == Code.ACCOUNTING_REQUEST:
        assert MA not in [a for a, _ in walk_attrs(reply)]
    else:
        assert reply[20:22] == bytes((MA, 18))
        zeroed = reply[:4] + request_auth + reply[20:22] + bytes(16) + reply[38:]
        assert hmac.compare_digest(hmac.digest(secret, zeroed, "md5"), reply[22:38])
    signed = reply[:4] + request_auth + reply[20:] + secret
    assert hashlib.md5(signed).digest() == reply[4:20]
    tail = b"".join(tlv(PROXY_STATE, p) for p in proxies)
    assert reply.endswith(tail) and struct.unpack(">H", reply[2:4])[0] == len(reply)


def walk_attrs(packet: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 20
    while pos + 2 <= len(packet):
        out.append((packet[pos], packet[pos + 2 : pos + packet[pos + 1]]))
        pos += max(2, packet[pos + 1])
    return out


def drops(port: str, reason: str) -> int:
    return samples(port)[("drop", reason)]


async def dropped(port: int, data: bytes, reason: str) -> None:
    """Send ``data`` to the auth port; it must be dropped, counted under ``reason`` (the
    count moves when the datagram is handled, so no reply can follow it)."""
    before = drops("auth", reason)
    sender = await open_sender("127.0.0.1")
    try:
        sender.send(data, port)
        await until(lambda: drops("auth", reason) == before + 1, 15.0, f"a drop for {reason}")
        assert sender.replies == []
    finally:
        sender.close()


async def test_blastradius_every_reply_puts_message_authenticator_first(
    controller: Controller,
) -> None:
    """Access-Accept, Access-Reject and both Status-Server answers: Message-Authenticator
    first; Accounting-Responses: none; Proxy-State echoed in order (RFC 2865 §5.33)."""
    assert controller.store is not None
    secret = SECRET.encode()
    proxies = [b"hop-1", b"\x00\xff" * 20, b"hop-3"]
    ps = b"".join(tlv(PROXY_STATE, p) for p in proxies)
    issued = await issue_login(
        controller.store, phone_e164=PHONE, mac="", person_key=controller.person_key, ttl=300,
        now=int(controller.clock()), client_id="nas-local",
    )  # fmt: skip
    good = tlv(1, issued.username.encode()) + tlv(2, pap(issued.password.encode(), secret))
    bad = tlv(1, b"nobody") + tlv(2, pap(b"x", secret))
    cases = [
        ("auth", request(1, 21, ps + good), Code.ACCESS_ACCEPT),
        ("auth", request(1, 22, bad + ps), Code.ACCESS_REJECT),
        ("auth", request(12, 23, ps), Code.ACCESS_ACCEPT),
        ("acct", request(12, 24, ps), Code.ACCOUNTING_RESPONSE),
        ("acct", request(4, 25, u32(40, 1) + tlv(44, b"bl-1") + ps, ma=False), 5),
        ("acct", request(4, 26, ps + u32(40, 3) + tlv(44, b"bl-1")), 5),
    ]
    for role, data, code in cases:
        port = controller.auth_port if role == "auth" else controller.acct_port
        reply = await exchange(port, data)
        assert reply is not None and reply[0] == code, (role, data[0])
        reply_checks(reply, data, proxies, secret)


async def test_blastradius_unsigned_access_request_dropped_by_default(
    controller: Controller,
) -> None:
    """Default client: no Message-Authenticator -> no answer, counted by reason, whether
    the request is otherwise perfect (valid credential) or carries Proxy-State."""
    assert controller.store is not None
    issued = await issue_login(
        controller.store, phone_e164=PHONE, mac="", person_key=controller.person_key, ttl=300,
        now=int(controller.clock()), client_id="nas-local",
    )  # fmt: skip
    attrs = tlv(1, issued.username.encode()) + tlv(2, pap(issued.password.encode()))
    for extra in (b"", tlv(PROXY_STATE, b"hop")):
        data = request(1, 31, attrs + extra, ma=False)
        await dropped(controller.auth_port, data, "missing_message_authenticator")
    # the credential was not consumed by the refused requests: signed, it logs in
    reply = await exchange(controller.auth_port, request(1, 32, attrs))
    assert reply is not None and reply[0] == Code.ACCESS_ACCEPT


async def test_blastradius_radclient_default_client(controller: Controller) -> None:
    """FreeRADIUS radclient: without Message-Authenticator nothing comes back (counted);
    with it the Access-Accept lists Message-Authenticator first."""
    assert controller.store is not None
    issued = await issue_login(
        controller.store, phone_e164=PHONE, mac="", person_key=controller.person_key, ttl=300,
        now=int(controller.clock()), client_id="nas-local",
    )  # fmt: skip
    attrs: dict[str, str | int] = {"User-Name": issued.username, "User-Password": issued.password}
    before = drops("auth", "missing_message_authenticator")
    reply = await asyncio.to_thread(
        radclient, controller.auth_port, "auth", SECRET, attrs, message_authenticator=False
    )
    assert reply.code is None and drops("auth", "missing_message_authenticator") == before + 1
    reply = await asyncio.to_thread(radclient, controller.auth_port, "auth", SECRET, attrs)
    assert reply.code == "Access-Accept", reply.output
    assert next(iter(reply.attrs)) == "Message-Authenticator", reply.output


@pytest.fixture
async def lenient(tmp_path: Path, redis_proc: RedisProcess) -> AsyncIterator[Controller]:
    """The test city with ``[radius] require_message_authenticator = false`` (old gear)."""
    path = write_config(tmp_path, redis_proc.url)
    lenient = "[radius]\nrequire_message_authenticator = false\n"
    path.write_text(path.read_text().replace("[radius]\n", lenient))
    config = load_config(path)
    assert not config.clients[0].require_message_authenticator
    ctl = Controller(config)
    await ctl.start()
    yield ctl
    await ctl.stop()


async def test_blastradius_proxy_state_without_ma_dropped_for_an_exempt_client(
    lenient: Controller,
) -> None:
    """A client exempt from Message-Authenticator is answered without one, but never when
    the request carries Proxy-State (the BlastRADIUS forgery needs it); raw UDP."""
    port = lenient.auth_port
    plain = request(1, 41, tlv(1, b"nobody") + tlv(2, pap(b"x")), ma=False)
    reply = await exchange(port, plain)
    assert reply is not None and reply[0] == Code.ACCESS_REJECT
    reply_checks(reply, plain, [], SECRET.encode())
    for where in ("first", "last"):
        ps = tlv(PROXY_STATE, b"forged")
        attrs = tlv(1, b"nobody") + tlv(2, pap(b"x"))
        data = request(1, 42, ps + attrs if where == "first" else attrs + ps, ma=False)
        await dropped(port, data, "proxy_state_without_message_authenticator")


async def test_blastradius_radclient_exempt_client(lenient: Controller) -> None:
    """The same with radclient: unsigned without Proxy-State answered; unsigned with
    Proxy-State dropped and counted; signed with Proxy-State answered, echoed in order."""
    port = lenient.auth_port
    user: dict[str, str | int] = {"User-Name": "nobody", "User-Password": "x"}
    reply = await asyncio.to_thread(
        radclient, port, "auth", SECRET, user, message_authenticator=False
    )
    assert reply.code == "Access-Reject", reply.output
    before = drops("auth", "proxy_state_without_message_authenticator")
    reply = await asyncio.to_thread(
        radclient, port, "auth", SECRET, {**user, "Proxy-State": 0x686F70},
        message_authenticator=False,
    )  # fmt: skip
    assert reply.code is None
    assert drops("auth", "proxy_state_without_message_authenticator") == before + 1
    reply = await asyncio.to_thread(_radclient_two_proxy_states, port)
    assert reply.code == "Access-Reject", reply.output
    assert next(iter(reply.attrs)) == "Message-Authenticator"
    assert reply.attrs["Proxy-State"] == ["0x686f7031", "0x686f7032"]


def _radclient_two_proxy_states(port: int) -> Any:
    """radclient with two Proxy-State lines (a dict cannot hold both)."""
    import subprocess

    from tests.support.radclient import RADCLIENT, RadReply

    text = textwrap.dedent(
        """\
        User-Name = "nobody"
        User-Password = "x"
        Proxy-State = 0x686f7031
        Proxy-State = 0x686f7032
        Message-Authenticator = 0x00
        """
    )
    proc = subprocess.run(
        [RADCLIENT, "-x", "-r", "1", "-t", "1", f"127.0.0.1:{port}", "auth", SECRET],
        input=text, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    reply = RadReply(None, {}, out)
    in_reply = False
    for line in out.splitlines():
        if line.startswith("Received "):
            reply.code, in_reply = line.split()[1], True
        elif in_reply and line.startswith("\t") and " = " in line:
            name, _, value = line.strip().partition(" = ")
            reply.attrs.setdefault(name, []).append(value.strip('"'))
    return reply


# ------------------------------------------------- found by the fuzzer, fixed (regressions)


async def test_accounting_without_status_type_gets_no_answer(controller: Controller) -> None:
    data = pending("acct-no-status-type")
    assert await exchange(controller.acct_port, data) is None


def test_class_person_id_must_be_hex() -> None:
    key, nonce = b"k" * 32, "0" * 16
    good = sign_class(key, "0123456789abcdef0123", "c", "nas-local", nonce)
    claim = verify_class(key, good, "nas-local")
    assert claim is not None and claim.person == "0123456789abcdef0123"
    for forged in (b"aaaaaaaaaa|bbbbbbbbb", b"{}{}{}{}{}{}{}{}{}{}", b"0123456789ABCDEF0123"):
        assert verify_class(key, good.replace(b"0123456789abcdef0123", forged), "nas-local") is None
        assert verify_class(key, b"cw1:" + forged + b":c", "nas-local") is None, forged


async def test_proxy_state_too_long_to_echo_is_not_a_handler_failure(
    controller: Controller,
) -> None:
    """A request at 4096 octets that is mostly Proxy-State: its Access-Reject (with its
    Reply-Message) cannot fit; the server must not fail in the handler over it."""
    data = pending("auth-proxy-state-fills-reply")
    assert len(data) <= 4096
    before = drops("auth", "not_recorded")
    with structlog.testing.capture_logs() as logs:
        await exchange(controller.auth_port, data)
        await until(lambda: not controller.endpoints[0].tasks, 15.0, "the request to finish")
    assert not [e for e in logs if e["event"] == "radius.handler_failed"]
    assert drops("auth", "not_recorded") == before


async def test_forged_class_does_not_corrupt_the_session_index(controller: Controller) -> None:
    """On the live server: every member of the open-session index names a 20-hex person."""
    assert controller.store is not None
    forged = b"cw1:aaaaaaaaaa|bbbbbbbbb:c"
    data = pending("acct-class-pid-separator")
    assert forged in data
    reply = await exchange(controller.acct_port, data)
    assert reply is not None and reply[0] == Code.ACCOUNTING_RESPONSE
    members = [m.decode() for m in await controller.store.redis.zrange(keys.OPEN_INDEX, 0, -1)]
    assert members
    for member in members:
        pid, sid = keys.parse_session_ref(member)
        assert re.fullmatch(r"[0-9a-f]{20}", pid) and sid.startswith("nas-local/"), member


async def test_huge_octet_counters_do_not_block_the_archive(controller: Controller) -> None:
    """An authenticated NAS reporting 2^64 - 1 octets (all-ones Gigawords and Octets: a
    broken counter or a hostile NAS) must not keep anyone's sessions out of the archive
    that subsidy reports and the audit log are made from."""
    assert controller.archiver is not None and controller.store is not None
    healthy = [
        request(4, 83 + s, u32(40, s) + tlv(44, b"healthy") + u32(46, 60 * (s - 1)), ma=False)
        for s in (1, 2)
    ]
    for data in (pending("acct-octets-overflow-start"), pending("acct-octets-overflow-stop")):
        reply = await exchange(controller.acct_port, data)
        assert reply is not None and reply[0] == Code.ACCOUNTING_RESPONSE
    for data in healthy:
        reply = await exchange(controller.acct_port, data)
        assert reply is not None and reply[0] == Code.ACCOUNTING_RESPONSE
    with contextlib.suppress(Exception):  # the failure is what this test is about
        await controller.archiver.flush()
    day = quota.local_day(int(controller.clock()), controller.config.quota.timezone)
    files = [str(p) for _, p in controller.archive.parts("sessions", day)]
    sql = "SELECT record_id FROM read_parquet(?)"
    rows = controller.archive.query(sql, [files]) if files else []
    assert any("/healthy|" in str(r[0]) for r in rows), rows


async def test_reports_still_answer_when_the_outbox_cannot_be_archived(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """Regression: the reports API drains the outbox first, and a failing drain (the
    record above) made every subsidy report a 500. Now it is logged and the report is
    made from what is archived."""
    token = "reports-token-fuzz"
    table = textwrap.dedent(
        f"""
        [[api_tokens]]
        name = "it-bureau"
        sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"
        roles = ["reports"]
        """
    )
    ctl = Controller(load_config(write_config(tmp_path, redis_proc.url, extra=table)))
    await ctl.start()
    try:
        for name in ("acct-octets-overflow-start", "acct-octets-overflow-stop"):
            reply = await exchange(ctl.acct_port, pending(name))
            assert reply is not None and reply[0] == Code.ACCOUNTING_RESPONSE
        day = quota.local_day(int(ctl.clock()), ctl.config.quota.timezone).isoformat()
        url = f"http://127.0.0.1:{ctl.http_port}/api/v1/reports/subsidy"
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                url,
                params={"from": day, "to": day, "format": "json"},
                headers={"Authorization": f"Bearer {token}"},
            ) as r,
        ):
            assert r.status == 200, await r.text()
    finally:
        await ctl.stop()
