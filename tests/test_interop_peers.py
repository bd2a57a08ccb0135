"""citywifi with the real software that sits between it and the access points (issue 14).

Debian's FreeRADIUS 3.2 as an operator's proxy in front of citywifi (PAP, CHAP,
accounting, Status-Server failover away from a citywifi whose Redis is frozen),
radsecproxy in both directions (NAS -UDP-> radsecproxy -TLS-> radsecproxy -UDP->
citywifi), and FreeRADIUS as the RFC 5176 listener of a NAS receiving citywifi's
Disconnect-Requests. Each peer runs from a configuration written here, on loopback ports,
started once per module (``tests/support/peers.py``); a NAS is FreeRADIUS's own ``radclient``.

The Message-Authenticator of an Accounting-Response is settled against the peers
themselves: a stub home server answers with each of the three choices (none, over 16 zero
octets, over the Request Authenticator) and each peer says which answers it takes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import signal
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from controller.config import Config, load_config
from controller.services.logins import IssuedLogin
from controller.services.radius_service import anonymous_person
from radius.attrs import Attr, Code
from radius.dae import DaeClient, DaeOutcome, DaeTarget, SessionIdentity
from radius.packet import PacketError, Request, decode_request, encode_reply
from tests.conftest import SECRET, service_sections
from tests.support.peer_city import STATION, PeerCity, start_served
from tests.support.peers import (
    FreeRadiusDae,
    FreeRadiusProxy,
    HomeServer,
    RadSecPair,
    radsec_pair,
    udp_port,
)
from tests.support.radclient import RadReply, radclient
from tests.support.redis_proc import wait_until

pytestmark = pytest.mark.peers

NAS_SECRET = "nas-to-proxy-secret"  # between radclient (the NAS) and the proxies
PHONE = "+8613800138000"
MAC = "AA-BB-CC-00-14-01"
DAE_KNOWN = "dae-known"  # sessions the DAE listener says it has
STALE_STAMP = 1_000_000_000  # an Event-Timestamp from 2001: outside any window

# The NAS side of RFC 5176, in FreeRADIUS's unlang: ACK the sessions it knows (for the
# "v6-" ones only when the request names the NAS by NAS-IPv6-Address ::1), NAK 503 the
# rest; every answer carries Event-Timestamp (now, or 2001 for the "stale-" sessions).
DAE_POLICY = f"""
if (&Acct-Session-Id =~ /^stale-/) {{
  update reply {{
    &Event-Timestamp := {STALE_STAMP}
  }}
}}
else {{
  update reply {{
    &Event-Timestamp := "%l"
  }}
}}
if (&Acct-Session-Id =~ /^v6-/) {{
  if (&NAS-IPv6-Address == ::1) {{
    ok
  }}
  else {{
    update reply {{
      &Error-Cause := NAS-Identification-Mismatch
    }}
    reject
  }}
}}
elsif (&Acct-Session-Id == "{DAE_KNOWN}" || &Acct-Session-Id =~ /^stale-/) {{
  ok
}}
else {{
  update reply {{
    &Error-Cause := Session-Context-Not-Found
  }}
  reject
}}
"""


def city_config(directory: Path, redis_url: str, *, coa_port: int = 3799) -> Config:
    """One venue, one NAS client on loopback (also the proxies' address), short DAE and
    Redis timeouts so that failures show within a test."""
    text = (
        service_sections(redis_url)
        + STATION
        + textwrap.dedent(
            f"""
        [[clients]]
        id = "nas-local"
        address = "127.0.0.1"
        secret = "{SECRET}"
        venue = "station"
        vendor = "generic"
        coa_port = {coa_port}

        [enforcer]
        disconnect_timeout = 0.3
        disconnect_retries = 1

        [subsidy]
        rates = {{ transport_hub = 0.50 }}
        """
        )
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "citywifi.toml"
    path.write_text(text)
    config = load_config(path)
    return dataclasses.replace(config, redis=dataclasses.replace(config.redis, timeout=0.5))


def start_city(directory: Path, *, coa_port: int = 3799) -> PeerCity:
    redis_proc, serve = start_served(
        directory, lambda redis_url: city_config(directory, redis_url, coa_port=coa_port)
    )
    return PeerCity(redis_proc, serve, "nas-local", MAC, PHONE[:-4])


def home_of(city: PeerCity, name: str = "citywifi") -> HomeServer:
    return HomeServer(name, city.serve.ctl.auth_port, city.serve.ctl.acct_port, SECRET)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="module")
def dae_listener(workdir: Path) -> Iterator[FreeRadiusDae]:
    listener = FreeRadiusDae(
        workdir / "fr-dae",
        secret=SECRET,
        policy=DAE_POLICY,
        hosts=("127.0.0.1", "::1"),
        clients=("127.0.0.1", "::1"),
    )
    listener.start()
    yield listener
    listener.stop()


@pytest.fixture(scope="module")
def city(workdir: Path, dae_listener: FreeRadiusDae) -> Iterator[PeerCity]:
    running = start_city(workdir / "city", coa_port=dae_listener.port)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def proxy(workdir: Path, city: PeerCity) -> Iterator[FreeRadiusProxy]:
    fr = FreeRadiusProxy(workdir / "fr-proxy", [home_of(city)], nas_secret=NAS_SECRET)
    fr.start()
    yield fr
    fr.stop()


@pytest.fixture(scope="module")
def radsec(workdir: Path, city: PeerCity) -> Iterator[RadSecPair]:
    ctl = city.serve.ctl
    pair = radsec_pair(
        workdir / "radsec",
        nas_secret=NAS_SECRET,
        auth=("127.0.0.1", ctl.auth_port),
        acct=("127.0.0.1", ctl.acct_port),
        secret=SECRET,
    )
    yield pair
    pair.stop()


def nas(port: int, kind: str, attrs: dict[str, str | int], *, timeout: float = 3.0) -> RadReply:
    """What a NAS (radclient) gets back from a proxy."""
    return radclient(port, kind, NAS_SECRET, attrs, timeout=timeout, retries=1)


def pap(port: int, issued: IssuedLogin) -> RadReply:
    return nas(
        port,
        "auth",
        {"User-Name": issued.username, "User-Password": issued.password, "Calling-Station-Id": MAC},
    )


def chap(port: int, issued: IssuedLogin) -> RadReply:
    # radclient turns a clear-text CHAP-Password into the CHAP response (RFC 2865 §2.2)
    return nas(
        port,
        "auth",
        {"User-Name": issued.username, "CHAP-Password": issued.password, "Calling-Station-Id": MAC},
    )


def accounting(port: int, status: str, sid: str, seconds: int, user: str) -> RadReply:
    return nas(
        port,
        "acct",
        {
            "Acct-Status-Type": status,
            "Acct-Session-Id": sid,
            "Acct-Session-Time": seconds,
            "User-Name": user,
            "Calling-Station-Id": MAC,
            "NAS-Identifier": "ap-1",
        },
    )


def assert_accept(reply: RadReply, issued: IssuedLogin) -> None:
    assert reply.code == "Access-Accept", reply.output
    assert int(reply.first("Session-Timeout") or 0) > 0
    assert (reply.first("Class") or "").startswith("0x" + f"cw2:{issued.person}:".encode().hex())


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ----------------------------------------------------------------------------- FreeRADIUS


def test_pap_and_chap_through_freeradius(city: PeerCity, proxy: FreeRadiusProxy) -> None:
    """FreeRADIUS re-hides the User-Password with the home server's secret and carries CHAP
    (adding CHAP-Challenge); it checks our Access-Accept's Message-Authenticator (first)
    and Response Authenticator before passing it on with Session-Timeout and Class."""
    issued = city.login()
    assert_accept(pap(proxy.auth_port, issued), issued)
    issued = city.login()
    assert_accept(chap(proxy.auth_port, issued), issued)
    wrong = city.login()
    reply = nas(proxy.auth_port, "auth", {"User-Name": wrong.username, "User-Password": "not-it"})
    assert reply.code == "Access-Reject" and reply.first("Reply-Message")


def test_accounting_through_freeradius_is_answered_and_recorded(
    city: PeerCity, proxy: FreeRadiusProxy
) -> None:
    """Debian's FreeRADIUS 3.2.1 takes our Accounting-Responses (no Message-Authenticator:
    see test_accounting_message_authenticator_rules_of_each_peer) and the usage counts."""
    user = "aa-bb-cc-00-14-99"
    for status, seconds in (("Start", 0), ("Interim-Update", 60), ("Stop", 90)):
        reply = accounting(proxy.acct_port, status, "fr-acct-1", seconds, user)
        assert reply.code == "Accounting-Response", reply.output
    record = city.session(anonymous_person("nas-local", user), "fr-acct-1")
    assert record["seen"] == "90" and record.get("closed")
    assert "Received Accounting-Response" in proxy.log()


# ------------------------------------------------------------------------------ radsecproxy


def test_radsecproxy_both_directions(city: PeerCity, radsec: RadSecPair) -> None:
    """NAS -UDP-> radsecproxy -TLS (certificates checked both ways)-> radsecproxy -UDP->
    citywifi and back: PAP, CHAP and accounting answered. radsecproxy (every version)
    checks an Accounting-Response's Message-Authenticator over the Request Authenticator;
    citywifi's old one over zeros was dropped here, so all accounting over RadSec failed."""
    issued = city.login()
    assert_accept(pap(radsec.port, issued), issued)
    issued = city.login()
    assert_accept(chap(radsec.port, issued), issued)
    user = "aa-bb-cc-00-14-98"
    for status, seconds in (("Start", 0), ("Interim-Update", 60), ("Stop", 61)):
        reply = accounting(radsec.port, status, "rs-acct-1", seconds, user)
        assert reply.code == "Accounting-Response", (reply.output, radsec.back.log()[-3000:])
    assert city.session(anonymous_person("nas-local", user), "rs-acct-1")["seen"] == "61"
    assert "message-authenticator" not in radsec.back.log().lower().replace("auth ok", "")


# ----------------------------------------- which Message-Authenticator each peer accepts


class StubHome:
    """A home server answering every Accounting-Request with an Accounting-Response whose
    Message-Authenticator follows ``rule`` ("none", "zero", "request"): the peer in front
    of it is what is being tested, so the rules are written here, not taken from us."""

    def __init__(self) -> None:
        self.rule = "none"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            try:
                request = decode_request(data, SECRET.encode())
            except PacketError:
                continue
            if request.code == Code.ACCOUNTING_REQUEST:
                self.sock.sendto(accounting_response(request, self.rule), addr)
            elif request.code == Code.STATUS_SERVER:
                reply = encode_reply(Code.ACCOUNTING_RESPONSE, request, SECRET.encode())
                self.sock.sendto(reply, addr)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def accounting_response(request: Request, rule: str) -> bytes:
    """An Accounting-Response with Proxy-State echoed and a Message-Authenticator per
    ``rule``, signed with the Response Authenticator (RFC 2866 §3)."""
    secret = SECRET.encode()
    tail = b"".join(bytes((33, len(v) + 2)) + v for v in request.all(Attr.PROXY_STATE))
    body = (bytes((80, 18)) + bytes(16) if rule != "none" else b"") + tail
    head = bytes((Code.ACCOUNTING_RESPONSE, request.identifier)) + (20 + len(body)).to_bytes(
        2, "big"
    )
    if rule != "none":
        vector = request.authenticator if rule == "request" else bytes(16)
        mac = hmac.new(secret, head + vector + body, "md5").digest()
        body = bytes((80, 18)) + mac + tail
    response = hashlib.md5(head + request.authenticator + body + secret).digest()
    return head + response + body


@pytest.fixture(scope="module")
def stub_peers(workdir: Path) -> Iterator[tuple[StubHome, FreeRadiusProxy, RadSecPair]]:
    stub = StubHome()
    home = HomeServer("stub", udp_port(), stub.port, SECRET)
    fr = FreeRadiusProxy(workdir / "fr-stub", [home], nas_secret=NAS_SECRET)
    try:
        fr.start()
        pair = radsec_pair(
            workdir / "radsec-stub",
            nas_secret=NAS_SECRET,
            auth=("127.0.0.1", home.auth_port),
            acct=("127.0.0.1", stub.port),
            secret=SECRET,
        )
    except BaseException:
        fr.stop()
        stub.stop()
        raise
    yield stub, fr, pair
    pair.stop()
    fr.stop()
    stub.stop()


# rule -> (FreeRADIUS 3.2.1 takes it, radsecproxy 1.9 takes it, a NAS behind radsecproxy
# whose checks are FreeRADIUS 3.2.1's gets an answer): radsecproxy keeps the attribute and
# signs it again, over the Request Authenticator, for the NAS
MA_RULES = {
    "none": (True, True, True),
    "zero": (True, False, False),
    "request": (False, True, False),
}


@pytest.mark.parametrize("rule", sorted(MA_RULES))
def test_accounting_message_authenticator_rules_of_each_peer(
    stub_peers: tuple[StubHome, FreeRadiusProxy, RadSecPair], rule: str
) -> None:
    """Debian's FreeRADIUS 3.2.1 checks it over 16 zero octets (``rad_verify`` of 3.2.1;
    3.2.9 changed to the Request Authenticator), radsecproxy over the Request
    Authenticator (``buf2radmsg``); neither requires one. Only an answer without it is
    taken by both, and reaches a NAS of either camp behind radsecproxy: that is what
    citywifi sends (``radius.packet.encode_reply``)."""
    stub, fr, pair = stub_peers
    stub.rule = rule
    via_freeradius, via_radsec, to_nas = MA_RULES[rule]
    sid = f"ma-{rule}"
    got = accounting(fr.acct_port, "Start", sid, 0, "u")
    assert (got.code == "Accounting-Response") is via_freeradius, got.output
    passed = pair.back.log().count("passing Accounting-Response")
    got = accounting(pair.port, "Start", sid, 0, "u")
    assert (got.code == "Accounting-Response") is to_nas, got.output
    taken = pair.back.log().count("passing Accounting-Response") > passed
    assert taken is via_radsec, pair.back.log()[-2000:]


# --------------------------------------------------------------------- the DAE listener


def open_session(city: PeerCity, sid: str, **attrs: str | int) -> str:
    """A session opened by accounting straight from the NAS; returns its person."""
    issued = city.login()
    fields: dict[str, str | int] = {
        "Acct-Status-Type": "Start",
        "Acct-Session-Id": sid,
        "User-Name": issued.username,
        "Calling-Station-Id": MAC,
        "NAS-IP-Address": "127.0.0.1",
        **attrs,
    }
    reply = radclient(city.serve.ctl.acct_port, "acct", SECRET, fields, timeout=2.0)
    assert reply.code == "Accounting-Response", reply.output
    return issued.person


def disconnect(city: PeerCity, pid: str) -> list[str]:
    enforcer = city.serve.ctl.enforcer
    assert enforcer is not None
    return [o.result for o in city.serve.call(enforcer.disconnect_now(pid, reason="admin"))]


def test_disconnect_ack_and_nak_from_freeradius(
    city: PeerCity, dae_listener: FreeRadiusDae
) -> None:
    """The admin disconnect path against FreeRADIUS's RFC 5176 listener: it verifies our
    Disconnect-Request (Request Authenticator, Message-Authenticator), ACKs a session it
    has, NAKs 503 one it has not (closed here as gone); both answers carry a current
    Event-Timestamp, which we check (RFC 5176 §3.5) and accept."""
    known = open_session(city, DAE_KNOWN)
    assert disconnect(city, known) == ["acked"]
    gone = open_session(city, "dae-unknown")
    assert disconnect(city, gone) == ["closed"]
    assert city.session(gone, "dae-unknown").get("closed")
    received = dae_listener.log()
    assert received.count("Received Disconnect-Request") >= 2
    assert 'Acct-Session-Id = "dae-known"' in received and "Event-Timestamp" in received


def test_disconnect_names_an_ipv6_nas_by_nas_ipv6_address(
    city: PeerCity, dae_listener: FreeRadiusDae
) -> None:
    """A NAS that reports NAS-IPv6-Address gets it back in the Disconnect-Request (RFC 5176
    §3, RFC 3162 §2.1); the listener NAKs 403 a request that does not name it."""
    pid = open_session(city, "v6-1", **{"NAS-IPv6-Address": "::1"})
    assert city.session(pid, "v6-1")["nas_ipv6"] == "::1"
    assert disconnect(city, pid) == ["acked"]


def test_disconnect_answer_with_a_stale_event_timestamp_is_ignored(
    city: PeerCity, dae_listener: FreeRadiusDae
) -> None:
    """An ACK whose Event-Timestamp is from 2001 is a replay (RFC 5176 §3.5): ignored and
    counted, so the request ends without an answer instead of being believed."""
    before = metric("citywifi_dae_bad_replies_total", reason="stale_event_timestamp")
    pid = open_session(city, "stale-1")
    assert disconnect(city, pid) == ["failed"]
    after = metric("citywifi_dae_bad_replies_total", reason="stale_event_timestamp")
    assert after >= before + 2  # the first transmission and the retransmission
    assert not city.session(pid, "stale-1").get("closed")


async def test_disconnect_to_freeradius_over_ipv6(dae_listener: FreeRadiusDae) -> None:
    """The DAE client on an IPv6 socket, to the listener on [::1]."""
    client = DaeClient(bind="::1", timeout=0.5, retries=1)
    try:
        result = await client.disconnect(
            DaeTarget("::1", dae_listener.port, SECRET.encode()),
            SessionIdentity(acct_session_id="v6-2", nas_ipv6_address="::1"),
            event_timestamp=int(time.time()),
        )
    finally:
        await client.close()
    assert result.outcome is DaeOutcome.ACK


# ------------------------------------------------------ Status-Server failover (RFC 5997)


def test_freeradius_fails_over_from_a_citywifi_whose_redis_is_frozen(tmp_path: Path) -> None:
    """Two citywifi instances behind a FreeRADIUS fail-over pool; the first one's Redis is
    frozen (SIGSTOP). Its accounting goes unanswered, FreeRADIUS marks it zombie and
    pings it with Status-Server: answered, FreeRADIUS would take it for alive at once and
    keep sending it requests it drops. It is not answered (RFC 5997 §4.2), so the
    requests go to the healthy instance; after SIGCONT it answers Status-Server again."""
    first = start_city(tmp_path / "first")
    second: PeerCity | None = None
    fr: FreeRadiusProxy | None = None
    try:
        second = start_city(tmp_path / "second")
        a, b = home_of(first, "first"), home_of(second, "second")
        fr = FreeRadiusProxy(tmp_path / "fr", [a, b], nas_secret=NAS_SECRET).start()
        assert accounting(fr.acct_port, "Start", "warm", 0, "u-warm").code
        assert first.session(anonymous_person("nas-local", "u-warm"), "warm")  # a goes first
        time.sleep(1.5)  # FreeRADIUS: a reply within zombie_period/4 s defers "zombie"
        assert first.redis.proc is not None
        first.redis.proc.send_signal(signal.SIGSTOP)
        try:
            store = first.serve.ctl.store
            assert store is not None
            wait_until(lambda: not store.health.can_record(), 5, 0.05, "the store down")
            answered: list[str] = []

            def failed_over() -> bool:
                n = len(answered)
                reply = accounting(fr.acct_port, "Start", f"fo-{n}", 0, f"u-{n}")
                if reply.code == "Accounting-Response":
                    answered.append(f"fo-{n}")
                else:
                    answered.clear()
                return len(answered) >= 3  # three in a row: it stays failed over

            wait_until(failed_over, 20, 0.0, "accounting failed over to the second")
            for sid in answered:
                n = sid.split("-")[1]
                assert second.session(anonymous_person("nas-local", f"u-{n}"), sid)
            lines = "\n".join(fr.home_state_lines(a))
            assert "zombie" in lines and "No response to status check" in lines
            assert "alive" not in lines.split("zombie", 1)[1]
        finally:
            first.redis.proc.send_signal(signal.SIGCONT)
        wait_until(
            lambda: (
                radclient(first.serve.ctl.acct_port, "status", SECRET, {}).code
                == "Accounting-Response"
            ),
            10,
            0.1,
            "Status-Server answered again after SIGCONT",
        )
    finally:
        if fr is not None:
            fr.stop()
        if second is not None:
            second.stop()
        first.stop()
