"""The RADIUS core without sockets: radius/core.py driven with bytes and a fake clock,
the typed events of radius/events.py, and RadiusService's pure logic against an
in-memory store double (decision paths, Class attribution, midnight split inputs).

What crosses a process (UDP, redis-server, the Lua scripts) is tested with real ones in
test_radius_integration.py and the others; here nothing opens a socket.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.config import Config, load_config
from controller.domain.audit import login_result
from controller.domain.identity import class_key, sign_class, verify_class
from controller.domain.state import (
    AccountingResult,
    AccountingWrite,
    Committed,
    CredentialIssue,
    MacLoginAsk,
    MacLoginDone,
    Origin,
    PersonState,
)
from controller.services.radius_service import MAX_DELAY, RadiusService, anonymous_person
from controller.storage.store import StoreUnavailable
from radius.attrs import AcctStatus, Attr, Code, TerminateCause
from radius.core import Answer, Dispatch, Drop, ServerCore, Ticket
from radius.events import (
    AccessAccept,
    AccessReject,
    AccessRequest,
    AccountingRequest,
    AccountingResponse,
    HiddenPassword,
    Source,
    access_request,
    accounting_request,
)
from radius.packet import (
    attr,
    attr_int,
    attr_text,
    decode_reply,
    decode_request,
    encode_request,
    encrypt_user_password,
)
from tests.conftest import write_config

SECRET = b"testing123"
NAS = ("10.0.0.9", 5000)
SH = ZoneInfo("Asia/Shanghai")
PID = "0123456789abcdef0123"
USERNAME = f"{PID}.abcdefgh"
MAC = "AA-BB-CC-00-00-01"


@dataclass(frozen=True)
class FakePeer:
    id: str = "nas-local"
    secret: bytes = SECRET
    require_message_authenticator: bool = True


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now


def core(role: str = "auth", **kw: Any) -> ServerCore:
    peers = {NAS[0]: FakePeer(), "10.0.0.8": FakePeer("lax", require_message_authenticator=False)}
    return ServerCore(role, peers.get, **kw)  # type: ignore[arg-type]


def access_packet(ident: int = 1, extra: bytes = b"", *, ma: bool = True) -> bytes:
    auth = bytes(range(16))
    attrs = attr_text(Attr.USER_NAME, "u") + extra
    return encode_request(
        Code.ACCESS_REQUEST, ident, SECRET, attrs, authenticator=auth, message_authenticator=ma
    )


def acct_packet(ident: int = 1, extra: bytes = b"") -> bytes:
    attrs = attr_int(Attr.ACCT_STATUS_TYPE, AcctStatus.START) + attr_text(
        Attr.ACCT_SESSION_ID, "s1"
    )
    return encode_request(
        Code.ACCOUNTING_REQUEST, ident, SECRET, attrs + extra, message_authenticator=False
    )


def dispatched(outcome: Drop | Answer | Dispatch) -> Dispatch:
    assert isinstance(outcome, Dispatch), outcome
    return outcome


def dropped(outcome: Drop | Answer | Dispatch) -> Drop:
    assert isinstance(outcome, Drop), outcome
    return outcome


# -- Drop reasons -----------------------------------------------------------------------


def test_unknown_client_is_dropped_and_logged_once_per_interval() -> None:
    c = core()
    first = dropped(c.receive(access_packet(), ("192.0.2.1", 1), 0.0))
    assert first.reason == "unknown_client" and first.client is None
    assert first.line is not None and first.line.source == "192.0.2.1"
    again = dropped(c.receive(access_packet(), ("192.0.2.1", 1), 1.0))
    assert again.reason == "unknown_client" and again.line is None  # counted, not logged
    later = dropped(c.receive(access_packet(), ("192.0.2.1", 1), 61.0))
    assert later.line is not None and later.line.suppressed == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x01\x01\x00", "malformed"),  # shorter than a header
        (access_packet()[:-1], "malformed"),  # Length beyond the datagram
        (
            encode_request(Code.ACCESS_REQUEST, 1, SECRET, b"\x00\x03x", authenticator=bytes(16)),
            "invalid_attribute",
        ),
        (access_packet(ma=False), "missing_message_authenticator"),
        (b"", "malformed"),
    ],
)
def test_packet_rules_are_drops_with_their_reason(data: bytes, reason: str) -> None:
    drop = dropped(core().receive(data, NAS, 0.0))
    assert drop.reason == reason and drop.client == "nas-local" and drop.line is not None


def test_bad_authenticators_and_blastradius_rules() -> None:
    c = core()
    signed = bytearray(access_packet())
    signed[-1] ^= 1  # inside the User-Name: the Message-Authenticator no longer matches
    assert dropped(c.receive(bytes(signed), NAS, 0.0)).reason == "bad_message_authenticator"
    acct = bytearray(acct_packet())
    acct[-1] ^= 1  # inside the Acct-Session-Id: the Request Authenticator no longer matches
    acct_core = core("acct")
    assert dropped(acct_core.receive(bytes(acct), NAS, 0.0)).reason == "bad_request_authenticator"
    # CVE-2024-3596: a client that need not sign still may not send Proxy-State unsigned
    proxied = access_packet(extra=attr(Attr.PROXY_STATE, b"p"), ma=False)
    assert (
        dropped(c.receive(proxied, ("10.0.0.8", 1), 0.0)).reason
        == "proxy_state_without_message_authenticator"
    )
    assert isinstance(c.receive(access_packet(ma=False), ("10.0.0.8", 1), 0.0), Dispatch)


def test_a_code_the_port_does_not_serve_is_dropped_unlogged() -> None:
    auth_core, acct_core = core("auth"), core("acct")
    drop = dropped(auth_core.receive(acct_packet(), NAS, 0.0))
    assert (drop.reason, drop.line) == ("unexpected_code", None)
    drop = dropped(acct_core.receive(access_packet(), NAS, 0.0))
    assert (drop.reason, drop.line) == ("unexpected_code", None)
    # a reply code is refused by the packet rules (and logged like them)
    accept = bytes((2,)) + access_packet()[1:]
    assert dropped(auth_core.receive(accept, NAS, 0.0)).reason == "unexpected_code"


# -- Status-Server (RFC 5997) ------------------------------------------------------------


@pytest.mark.parametrize(("role", "code"), [("auth", 2), ("acct", 5)])
def test_status_server_answers_only_while_the_store_can_record(role: str, code: int) -> None:
    up = [True]
    c = core(role, can_record=lambda: up[0])
    request = encode_request(Code.STATUS_SERVER, 7, SECRET, b"")
    answer = c.receive(request, NAS, 0.0)
    assert isinstance(answer, Answer) and answer.kind == "status"
    reply = decode_reply(answer.data, SECRET, request[4:20], require_message_authenticator=True)
    assert (reply.code, reply.identifier) == (code, 7)
    assert len(c.dedup) == 0  # RFC 5997 §3: not cached
    up[0] = False
    drop = dropped(c.receive(request, NAS, 1.0))
    assert drop.reason == "store_unavailable" and drop.line is not None
    up[0] = True
    assert isinstance(c.receive(request, NAS, 2.0), Answer)


# -- Dispatch, answered, dedup -----------------------------------------------------------


def test_dispatch_carries_the_source_and_answered_encodes_and_caches() -> None:
    c = core()
    clock = Clock()
    request = access_packet(9)
    d = dispatched(c.receive(request, NAS, clock.now))
    assert isinstance(d.event, AccessRequest)
    assert d.event.source == Source(*NAS) and str(d.event.source) == "10.0.0.9:5000"
    assert (d.event.client, d.event.user_name) == ("nas-local", "u")
    assert c.in_flight == 1
    # the retransmission while the service works is dropped, not processed twice
    assert dropped(c.receive(request, NAS, clock.now + 1)).reason == "duplicate_in_progress"
    # another source port is another request (RFC 5080 §2.2.2 keys on the source)
    other = dispatched(c.receive(request, (NAS[0], 5001), clock.now + 1))
    c.answered(other.ticket, None, clock.now + 1)

    accept = AccessAccept(attr_int(Attr.SESSION_TIMEOUT, 60), "p", "station")
    sent = c.answered(d.ticket, accept, clock.now + 2)
    assert isinstance(sent, Answer) and sent.kind == "reply" and c.in_flight == 0
    reply = decode_reply(sent.data, SECRET, request[4:20], require_message_authenticator=True)
    assert reply.code == Code.ACCESS_ACCEPT and reply.integer(Attr.SESSION_TIMEOUT) == 60

    hit = c.receive(request, NAS, clock.now + 31)  # 29 s after the answer: still cached
    assert isinstance(hit, Answer) and hit.kind == "duplicate" and hit.data == sent.data
    assert isinstance(c.receive(request, NAS, clock.now + 32.5), Dispatch)  # expired


def test_no_reply_is_not_recorded_and_the_retransmission_is_processed_afresh() -> None:
    c = core("acct")
    request = acct_packet()
    d = dispatched(c.receive(request, NAS, 0.0))
    assert isinstance(d.event, AccountingRequest)
    drop = c.answered(d.ticket, None, 0.5)
    assert isinstance(drop, Drop) and (drop.reason, drop.line) == ("not_recorded", None)
    assert c.in_flight == 0
    again = dispatched(c.receive(request, NAS, 1.0))
    sent = c.answered(again.ticket, AccountingResponse(result="start"), 1.5)
    assert isinstance(sent, Answer)
    reply = decode_reply(sent.data, SECRET, request[4:20])
    assert reply.code == Code.ACCOUNTING_RESPONSE and Attr.MESSAGE_AUTHENTICATOR not in reply.attrs


def test_overload_drops_new_requests_but_still_answers_duplicates() -> None:
    c = core(max_in_flight=2)
    first = dispatched(c.receive(access_packet(1), NAS, 0.0))
    dispatched(c.receive(access_packet(2), NAS, 0.0))
    assert dropped(c.receive(access_packet(3), NAS, 0.0)).reason == "overload"
    c.answered(first.ticket, AccessReject(result="bad_password"), 0.1)
    assert isinstance(c.receive(access_packet(1), NAS, 0.2), Answer)  # cached, not counted
    assert isinstance(c.receive(access_packet(3), NAS, 0.2), Dispatch)  # a slot is free
    c.max_in_flight = 0  # stopping: take nothing new
    assert dropped(c.receive(access_packet(4), NAS, 0.3)).reason == "overload"


def test_an_accept_too_long_for_its_proxy_states_goes_out_as_a_bare_reject() -> None:
    c = core()
    states = b"".join(attr(Attr.PROXY_STATE, bytes([i]) * 253) for i in range(15))  # 3825
    request = access_packet(5, states)
    d = dispatched(c.receive(request, NAS, 0.0))
    accept = AccessAccept(attr(Attr.CLASS, b"k" * 200) + attr(Attr.REPLY_MESSAGE, b"m" * 200))
    sent = c.answered(d.ticket, accept, 0.1)
    assert isinstance(sent, Answer) and sent.kind == "shrunk"
    reply = decode_reply(sent.data, SECRET, request[4:20], require_message_authenticator=True)
    assert reply.code == Code.ACCESS_REJECT and Attr.CLASS not in reply.attrs
    assert len(reply.attrs[Attr.PROXY_STATE]) == 15  # echoed in order, all of them
    # a Reject keeps its code; an answer that fits is sent whole
    d = dispatched(c.receive(access_packet(6, states), NAS, 0.2))
    shrunk = c.answered(d.ticket, AccessReject(attr(Attr.REPLY_MESSAGE, b"m" * 250)), 0.3)
    assert isinstance(shrunk, Answer) and shrunk.kind == "shrunk" and shrunk.data[0] == 3
    d = dispatched(c.receive(access_packet(7, states[:255]), NAS, 0.4))
    whole = c.answered(d.ticket, accept, 0.5)
    assert isinstance(whole, Answer) and whole.kind == "reply" and whole.data[0] == 2


def test_the_ticket_keeps_what_encoding_needs() -> None:
    d = dispatched(core().receive(access_packet(3), NAS, 4.0))
    assert isinstance(d.ticket, Ticket)
    assert (d.ticket.client, d.ticket.source, d.ticket.started) == ("nas-local", Source(*NAS), 4.0)
    assert d.ticket.key == (NAS[0], NAS[1], 1, 3, bytes(range(16)))


# -- events ------------------------------------------------------------------------------


def test_access_request_fields_are_decoded_once() -> None:
    auth = bytes(range(16, 32))
    attrs = b"".join(
        (
            attr_text(Attr.USER_NAME, USERNAME),
            attr(Attr.USER_PASSWORD, encrypt_user_password(b"s3cret", SECRET, auth)),
            attr_text(Attr.CALLING_STATION_ID, MAC),
            attr_text(Attr.CALLED_STATION_ID, "00-11-22-33-44-55:i-Test"),
            attr_text(Attr.NAS_IDENTIFIER, "ap-7"),
            attr(Attr.NAS_IP_ADDRESS, bytes((10, 1, 2, 3))),
            attr(Attr.NAS_IPV6_ADDRESS, bytes(15) + b"\x01"),
            attr_text(Attr.ACCT_SESSION_ID, "sess"),
            attr(Attr.CHARGEABLE_USER_IDENTITY, b"\x00"),
            attr(Attr.PROXY_STATE, b"a"),
            attr(Attr.PROXY_STATE, b"b"),
        )
    )
    packet = encode_request(Code.ACCESS_REQUEST, 4, SECRET, attrs, authenticator=auth)
    event = access_request(decode_request(packet, SECRET), "nas-local", SECRET, Source(*NAS))
    assert event.user_password is not None and event.user_password.reveal() == b"s3cret"
    assert "s3cret" not in repr(event) and "testing123" not in repr(event)
    assert event.chap_password is None and event.chap_challenge == auth  # RFC 2865 §2.2
    assert (event.calling_station_id, event.nas_identifier) == (MAC, "ap-7")
    assert (event.nas_ip_address, event.nas_ipv6_address) == ("10.1.2.3", "::1")
    assert event.acct_session_id == "sess" and event.wants_cui
    assert event.proxy_state == (b"a", b"b")
    bad = encode_request(
        Code.ACCESS_REQUEST,
        5,
        SECRET,
        attr_text(Attr.USER_NAME, USERNAME) + attr(Attr.USER_PASSWORD, b"x" * 15),
        authenticator=auth,
    )
    odd = access_request(decode_request(bad, SECRET), "nas-local", SECRET, Source(*NAS))
    assert odd.user_password is not None and odd.user_password.reveal() is None
    with pytest.raises(ValueError):
        AccessRequest("nas", Source(*NAS), 256, auth)


def test_accounting_request_fields_status_and_gigawords() -> None:
    attrs = b"".join(
        (
            attr_int(Attr.ACCT_STATUS_TYPE, AcctStatus.STOP),
            attr_text(Attr.ACCT_SESSION_ID, "s1"),
            attr_int(Attr.ACCT_INPUT_OCTETS, 5),
            attr_int(Attr.ACCT_INPUT_GIGAWORDS, 2),
            attr_int(Attr.ACCT_OUTPUT_OCTETS, 7),
            attr_int(Attr.ACCT_SESSION_TIME, 120),
            attr_int(Attr.ACCT_DELAY_TIME, 3),
            attr_int(Attr.EVENT_TIMESTAMP, 1_700_000_000),
            attr_int(Attr.ACCT_TERMINATE_CAUSE, TerminateCause.IDLE_TIMEOUT),
            attr(Attr.FRAMED_IP_ADDRESS, bytes((100, 64, 0, 9))),
            attr(Attr.FRAMED_IPV6_ADDRESS, bytes.fromhex("20010db8" + "00" * 11 + "09")),
            attr(Attr.CLASS, b"klass"),
            attr_text(Attr.OPERATOR_NAME, "1city.example"),
        )
    )
    packet = encode_request(Code.ACCOUNTING_REQUEST, 1, SECRET, attrs, message_authenticator=False)
    event = accounting_request(decode_request(packet, SECRET), "nas-local", Source(*NAS))
    assert event.status is AcctStatus.STOP and event.status_type == 2
    assert (event.input_octets, event.output_octets) == ((2 << 32) + 5, 7)
    assert (event.session_time, event.delay, event.event_timestamp) == (120, 3, 1_700_000_000)
    assert event.terminate_cause == TerminateCause.IDLE_TIMEOUT
    assert (event.framed_ip_address, event.framed_ipv6_address) == ("100.64.0.9", "2001:db8::9")
    assert (event.klass, event.operator_name) == (b"klass", "1city.example")
    tunnel = encode_request(
        Code.ACCOUNTING_REQUEST,
        2,
        SECRET,
        attr_int(Attr.ACCT_STATUS_TYPE, 9),
        message_authenticator=False,
    )
    other = accounting_request(decode_request(tunnel, SECRET), "nas-local", Source(*NAS))
    assert (other.status, other.status_type, other.session_id) == (None, 9, "")
    with pytest.raises(ValueError):
        AccountingRequest("nas", Source(*NAS), 1, 3, AcctStatus.STOP)


# -- RadiusService, pure logic against an in-memory store --------------------------------


@dataclass
class MemoryStore:
    """The Store methods RadiusService calls, in memory: for decision paths only (the
    Lua scripts and Redis are tested with redis-server elsewhere)."""

    owners: dict[str, str] = field(default_factory=dict)  # mac -> pid
    states: dict[str, PersonState] = field(default_factory=dict)  # pid -> state
    commit: str = "ok"
    issues: dict[str, CredentialIssue] = field(default_factory=dict)  # username -> issue
    down: bool = False
    outbox: list[dict[str, str]] = field(default_factory=list)
    writes: list[AccountingWrite] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    closed: list[tuple[str, str, int]] = field(default_factory=list)
    login_in_one_call: bool = True  # one Redis: mac_login queues the record itself

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("down")

    async def mac_owner(self, mac: str) -> str | None:
        self._check()
        return self.owners.get(mac)

    async def auth_state(self, pid: str, *args: Any) -> PersonState:
        self._check()
        return self.states.get(pid, PersonState("", "", "", None, 0, 0, ""))

    async def commit_login(self, pid: str, username: str, mac: str, **kw: Any) -> Committed:
        self._check()
        self.origins.append(kw["origin"])
        return Committed(self.commit, "0123456789abcdef" if self.commit == "ok" else "")

    async def mac_login(self, ask: MacLoginAsk) -> MacLoginDone:
        self._check()
        pid = ask.pid if ask.pid is not None else self.owners.get(ask.user_mac)
        status = "unknown_device" if pid is None else self.commit.replace("ok", "accept")
        accepted = status == "accept"
        recorded = ask.record is not None and self.login_in_one_call
        if ask.record is not None and recorded:
            self.outbox.append({**ask.record, "pid": pid or "", "result": login_result(status)})
        timeout = min(ask.daily, ask.to_midnight) if accepted else 0
        return MacLoginDone(status, pid, timeout, ask.nonce if accepted else "", "", recorded)

    async def outbox_add(self, entry: dict[str, str]) -> None:
        self._check()
        self.outbox.append(entry)

    async def credential_issue(self, pid: str, username: str) -> CredentialIssue | None:
        self._check()
        return self.issues.get(username)

    async def account(self, w: AccountingWrite) -> AccountingResult:
        self._check()
        self.writes.append(w)
        return AccountingResult(w.reported, w.reported, 1, w.status == 2, sid=w.sid)

    async def close_client_sessions(self, client_id: str, cause: str, *, now: int = 0) -> int:
        self._check()
        self.closed.append((client_id, cause, now))
        return 3


class Observer:
    def __init__(self) -> None:
        self.seen: list[tuple[AccountingWrite, AccountingResult]] = []

    def accounted(self, write: AccountingWrite, result: AccountingResult) -> None:
        self.seen.append((write, result))


NOON = int(datetime(2025, 11, 10, 12, 0, tzinfo=SH).timestamp())
JUST_AFTER_MIDNIGHT = int(datetime(2025, 11, 11, 0, 0, 30, tzinfo=SH).timestamp())


@pytest.fixture
def city(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, "redis://127.0.0.1:1/0"))


def service(
    city: Config, store: MemoryStore, now: int = NOON, observers: tuple[Observer, ...] = ()
) -> RadiusService:
    return RadiusService(
        city,
        store,  # type: ignore[arg-type]
        person_key=b"test-person-key-0123456789",
        clock=lambda: float(now),
        observers=observers,
    )


def access_event(
    user: str | None, *, password: bytes | None = None, hidden: bytes | None = None, **kw: Any
) -> AccessRequest:
    """An Access-Request event; ``password`` is hidden as a NAS would (RFC 2865 §5.2)."""
    fields: dict[str, Any] = {"calling_station_id": MAC, **kw}
    if password is not None:
        hidden = encrypt_user_password(password, SECRET, bytes(16))
    sent = HiddenPassword(hidden, SECRET, bytes(16)) if hidden is not None else None
    return AccessRequest("nas-local", Source(*NAS), 1, bytes(16), user, sent, **fields)


def credential_state(**kw: Any) -> PersonState:
    base: dict[str, Any] = dict(
        password="s3cret",
        client="nas-local",
        bound_mac="",
        used=None,
        used_today=0,
        other_devices=0,
        block="",
    )
    return PersonState(**{**base, **kw})


@pytest.mark.parametrize("one_call", [True, False], ids=["one-redis", "cluster"])
async def test_access_decision_paths(city: Config, one_call: bool) -> None:
    store = MemoryStore(
        states={PID: credential_state()},
        owners={"AA-BB-CC-00-00-02": PID},
        login_in_one_call=one_call,
    )
    svc = service(city, store)
    ok = await svc.access(access_event(USERNAME, password=b"s3cret", wants_cui=True))
    assert isinstance(ok, AccessAccept) and (ok.person, ok.venue, ok.result) == (
        PID,
        "station",
        "accept",
    )
    # the source of the request is where the login comes from (no ContextVar)
    assert store.origins[-1] == Origin("nas-local", "", bytes(16).hex(), "10.0.0.9:5000")
    assert Attr.CHARGEABLE_USER_IDENTITY in _attrs(ok.attributes)
    klass = _attrs(ok.attributes)[Attr.CLASS]
    claim = verify_class(class_key(b"test-person-key-0123456789"), klass, "nas-local")
    assert claim is not None and (claim.person, claim.nonce) == (PID, "0123456789abcdef")

    wrong = await svc.access(access_event(USERNAME, password=b"nope"))
    assert isinstance(wrong, AccessReject) and wrong.result == "bad_password"
    assert (await svc.access(access_event(None))).result == "bad_request"  # type: ignore[union-attr]
    malformed = access_event(USERNAME, hidden=b"x" * 15)
    assert (await svc.access(malformed)).result == "bad_request"  # type: ignore[union-attr]
    stranger = await svc.access(access_event("someone"))
    assert isinstance(stranger, AccessReject) and stranger.result == "unknown_credential"
    device = await svc.access(access_event("AA-BB-CC-00-00-09"))
    assert isinstance(device, AccessReject) and device.result == "unknown_device"
    assert store.outbox[-1]["result"] == "reject:unknown_device" and store.outbox[-1]["pid"] == ""
    mac_login = await svc.access(access_event("AA-BB-CC-00-00-02", calling_station_id=""))
    assert isinstance(mac_login, AccessAccept) and mac_login.venue == "station"
    assert (store.outbox[-1]["result"], store.outbox[-1]["pid"]) == ("accept", PID)
    assert store.outbox[-1]["venue"] == "station" and len(store.outbox) == 7
    store.commit = "device_limit"
    full = await svc.access(access_event(USERNAME, password=b"s3cret"))
    assert isinstance(full, AccessReject) and full.result == "device_limit"
    assert [e["result"] for e in store.outbox][-1] == "reject:device_limit"
    assert store.outbox[0]["client"] == "nas-local" and store.outbox[0]["venue"] == "station"
    store.down = True
    assert await svc.access(access_event(USERNAME, password=b"s3cret")) is None
    gone = AccessRequest("no-such-client", Source(*NAS), 1, bytes(16), USERNAME)
    assert await svc.access(gone) is None


def _attrs(encoded: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(encoded):
        out[encoded[pos]] = encoded[pos + 2 : pos + encoded[pos + 1]]
        pos += encoded[pos + 1]
    return out


def acct_event(**kw: Any) -> AccountingRequest:
    status = kw.pop("status", AcctStatus.INTERIM_UPDATE)
    return AccountingRequest(
        kw.pop("client", "nas-local"),
        Source(*NAS),
        1,
        None if status is None else int(status),
        status if isinstance(status, AcctStatus) else None,
        **{"session_id": "s1", "calling_station_id": MAC, **kw},
    )


async def test_class_attribution(city: Config) -> None:
    key = class_key(b"test-person-key-0123456789")
    store = MemoryStore(issues={USERNAME: CredentialIssue("nas-local", "fedcba9876543210")})
    observer = Observer()
    svc = service(city, store, observers=(observer,))
    ours = sign_class(key, PID, "c", "nas-local", "1111222233334444")
    reply = await svc.accounting(acct_event(klass=ours, user_name="whoever"))
    assert isinstance(reply, AccountingResponse)
    assert (reply.person, reply.venue, reply.session, reply.result) == (
        PID,
        "station",
        "nas-local/s1",
        "interim",
    )
    write = store.writes[-1]
    assert write.session.known and write.session.login == "1111222233334444" and write.pid == PID
    assert write.session.nas_src == NAS[0] and write.status is AcctStatus.INTERIM_UPDATE
    assert observer.seen[-1][0] is write

    # a Class signed for another client is worth nothing here: anonymous, still recorded
    foreign = sign_class(key, PID, "c", "nas-local-2", "1111222233334444")
    await svc.accounting(acct_event(klass=foreign, user_name="whoever"))
    write = store.writes[-1]
    assert not write.session.known and write.session.login == ""
    assert write.pid == anonymous_person("nas-local", "whoever")
    assert write.fields["known"] == "0"  # the session hash's field, for storage

    # no Class: a credential username issued for this client
    await svc.accounting(acct_event(user_name=USERNAME))
    assert store.writes[-1].pid == PID and store.writes[-1].session.login == "fedcba9876543210"
    await svc.accounting(acct_event(user_name=USERNAME, client="nas-local-2"))
    assert not store.writes[-1].session.known
    # no User-Name either: anonymous by the MAC
    await svc.accounting(acct_event())
    assert store.writes[-1].pid == anonymous_person("nas-local", MAC)


async def test_every_session_field_comes_from_its_attribute(city: Config) -> None:
    """``_write_of`` builds the session record and the write positionally (issue 16:
    keyword calls of such wide records cost ~2 µs a request): every field, told apart
    by a value no other has, holds what its own source said."""
    import dataclasses
    import ipaddress

    from controller.domain.mac import normalize_mac
    from radius.addresses import PortBlock

    svc = service(city, MemoryStore())
    svc._due_rule = lambda at: ("due rule at", at)  # type: ignore[assignment,return-value]
    client = dataclasses.replace(
        svc.registry.clients_by_id["nas-local"],
        public_addresses=(ipaddress.ip_network("198.51.100.0/30"),),
    )
    event = acct_event(
        status=AcctStatus.START,
        session_id="sess-A",
        user_name="user-B",
        calling_station_id="AA-BB-CC-DD-EE-01",
        called_station_id="ap-C",
        nas_identifier="nasid-D",
        nas_ip_address="192.0.2.4",
        nas_ipv6_address="2001:db8::4",
        framed_ip_address="100.64.0.5",
        framed_ipv6_address="2001:db8::5",
        framed_ipv6_prefix="2001:db8:6::/64",
        delegated_ipv6_prefix="2001:db8:700::/56",
        operator_name="1op-E",
        port_block=PortBlock("203.0.113.8", 1024, 2047),
        session_time=30,
        input_octets=11,
        output_octets=12,
        terminate_cause=7,
    )
    w = svc._write_of(client, event, AcctStatus.START, PID, "nonce-F")
    assert dataclasses.asdict(w.session) == {
        "pid": PID,
        "known": True,
        "client": "nas-local",
        "acct_session_id": "sess-A",
        "user": "user-B",
        "mac": normalize_mac("AA-BB-CC-DD-EE-01"),
        "ip": "100.64.0.5",
        "nas_ip": "192.0.2.4",
        "nas_ipv6": "2001:db8::4",
        "nas_id": "nasid-D",
        "login": "nonce-F",
        "calling": "AA-BB-CC-DD-EE-01",
        "nas_src": NAS[0],
        "ap": "ap-C",
        "venue": "station",
        "venue_type": "transport_hub",
        "district": "桥西区",
        "operator": "op-telecom",
        "operator_name": "1op-E",
        "ipv6": "2001:db8::5",
        "ipv6_prefix": "2001:db8:6::/64",
        "ipv6_delegated": "2001:db8:700::/56",
        "nas_public": "198.51.100.0/30",
        "nat_ip": "203.0.113.8",
        "nat_ports": "1024-2047",
    }
    assert w.pid == PID and w.sid == "nas-local/sess-A" and w.client_id == "nas-local"
    assert (w.status, w.reported, w.event_time) == (AcctStatus.START, 30, NOON)
    assert (w.input_octets, w.output_octets, w.cause) == (11, 12, "7")
    assert [day for _, day in w.boundaries] == ["20251110"]
    assert (w.generation, w.stale, w.describe) == (1, svc._stale, True)
    assert w.due == ("due rule at", NOON)


def test_a_mac_login_asks_redis_field_by_field(city: Config) -> None:
    """``login_start`` and ``mac_login_ask`` build their records positionally (issue 16):
    each field from its own source, told apart by values no other field has."""
    from controller.domain import quota
    from controller.services.access_flow import Login

    svc = service(city, MemoryStore())
    svc.nonce = lambda: "nonce-G"
    client = svc.registry.clients_by_id["nas-local"]
    event = access_event("AA-BB-CC-00-00-0A", calling_station_id="AA-BB-CC-00-00-0B")
    login = svc.login_start(client, event, NOON)
    assert isinstance(login, Login)
    assert (login.pid, login.user_mac, login.username) == (None, "AA-BB-CC-00-00-0A", "")
    assert (login.mac, login.origin.client, login.today) == (
        "AA-BB-CC-00-00-0B",
        "nas-local",
        "20251110",
    )
    q = city.quota
    assert login.stale_before == NOON - int(q.stale_grace)
    ask = svc.mac_login_ask(login, PID, NOON, {"venue": "station"})
    assert (ask.pid, ask.user_mac, ask.mac, ask.now) == (
        PID,
        "AA-BB-CC-00-00-0A",
        "AA-BB-CC-00-00-0B",
        NOON,
    )
    assert (ask.today, ask.stale_before, ask.daily) == ("20251110", login.stale_before, 7200)
    assert ask.to_midnight == quota.next_midnight(NOON, q.timezone) - NOON == 12 * 3600
    assert (ask.min_grant, ask.max_devices) == (max(1, q.min_grant_seconds), q.max_devices)
    assert (ask.nonce, ask.record) == ("nonce-G", {"venue": "station"})


async def test_midnight_split_and_delay_inputs(city: Config) -> None:
    store = MemoryStore()
    svc = service(city, store, now=JUST_AFTER_MIDNIGHT)
    await svc.accounting(acct_event(status=AcctStatus.STOP, session_time=120, delay=10))
    write = store.writes[-1]
    assert write.event_time == JUST_AFTER_MIDNIGHT - 10 and write.reported == 120
    assert [day for _, day in write.boundaries] == ["20251110", "20251111"]
    assert write.boundaries[1][0] == JUST_AFTER_MIDNIGHT - 30  # local midnight
    await svc.accounting(acct_event(status=AcctStatus.START, delay=10 * MAX_DELAY))
    assert store.writes[-1].event_time == JUST_AFTER_MIDNIGHT - MAX_DELAY  # capped
    await svc.accounting(
        acct_event(
            status=AcctStatus.STOP,
            input_octets=(1 << 32) + 1,
            terminate_cause=1,
            operator_name="1city\x07",
            framed_ip_address="100.64.0.9",
        )
    )
    w = store.writes[-1]
    assert (w.input_octets, w.cause) == ((1 << 32) + 1, "1")
    assert (w.session.operator_name, w.session.ip) == ("1city", "100.64.0.9")
    assert w.fields["operator_name"] == "1city"


async def test_accounting_status_paths(city: Config) -> None:
    store = MemoryStore()
    svc = service(city, store)
    assert await svc.accounting(acct_event(status=None)) is None  # RFC 2866 §5.1
    assert await svc.accounting(acct_event(session_id="")) is None
    ignored = await svc.accounting(acct_event(status=9))
    assert isinstance(ignored, AccountingResponse) and ignored.result == "ignored:9"
    on = await svc.accounting(acct_event(status=AcctStatus.ACCOUNTING_ON, delay=5))
    assert isinstance(on, AccountingResponse) and on.result == "accounting_on"
    off = await svc.accounting(acct_event(status=AcctStatus.ACCOUNTING_OFF))
    assert isinstance(off, AccountingResponse) and off.result == "accounting_off"
    assert store.closed == [
        ("nas-local", str(int(TerminateCause.NAS_REBOOT)), NOON - 5),
        ("nas-local", str(int(TerminateCause.NAS_REQUEST)), NOON),
    ]
    assert store.writes == []
    store.down = True
    assert await svc.accounting(acct_event()) is None


def test_the_anonymous_id_is_stable() -> None:
    digest = hashlib.sha256(b"anon|nas|u").hexdigest()[:20]
    assert anonymous_person("nas", "u") == digest
