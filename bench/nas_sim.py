"""A NAS simulator: an access controller without hardware, for tests and for trying citywifi.

It behaves like a CoovaChilli-style access controller (``--vendor generic`` for plain
RFC 5176 behaviour): devices log in with an Access-Request (PAP, Message-Authenticator,
Calling-Station-Id, NAS-IP-Address, NAS-Identifier); an Access-Accept starts a session
that honours ``Session-Timeout``, ``Idle-Timeout`` and ``Acct-Interim-Interval`` and sends
Accounting Start, Interim-Update on schedule and Stop with the terminate cause. It listens
on a DAE port (RFC 5176): a Disconnect-Request ends the matching session (Disconnect-ACK,
then Stop with Admin-Reset) or is answered with a NAK, Error-Cause 503, when there is no
such session; a CoA-Request can change a session's Session-Timeout.

Time can run faster: with ``speed`` 10, a 300 s interim interval passes in 30 real
seconds and Acct-Session-Time counts simulated seconds (``SimClock``). A controller run
in the same process can share the clock (``Controller(config, clock=clock)``), so its
projections and timers run at the same speed.

RADIUS packets are built and verified with pyrad (``tests.support.pyrad_client``), independently of
the controller's own codec. Command line: ``python -m bench.nas_sim --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyrad.packet import CoAPacket

from radius.attrs import Attr, Code, ErrorCause, TerminateCause
from tests.support.pyrad_client import RadiusClient, load_dictionary

__all__ = ["NasSimulator", "SimClock", "SimSession", "main"]

DAE_MODES = ("ack", "ack_only", "nak", "silent", "bad_authenticator")


class SimClock:
    """Epoch seconds that run ``rate`` times faster than real time from ``start``.

    Callable like ``time.time``; ``rate`` tells a controller sharing it how to turn clock
    seconds into real seconds for its timers.
    """

    def __init__(self, rate: float = 1.0, start: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._t0 = time.time() if start is None else start
        self._m0 = time.monotonic()

    def __call__(self) -> float:
        return self._t0 + (time.monotonic() - self._m0) * self.rate

    def real(self, seconds: float) -> float:
        """Real seconds that ``seconds`` of this clock take."""
        return max(0.0, seconds / self.rate)


@dataclass(eq=False)
class SimSession:
    """One device's session on the simulated NAS."""

    acct_session_id: str
    user: str
    mac: str
    ip: str
    klass: bytes | None
    session_timeout: int | None
    idle_timeout: int | None
    interim: int
    start: float
    active_until: float | None = None  # the device sends no traffic after this (Idle-Timeout)
    stopped_at: float | None = None
    cause: int | None = None
    reported: int = 0  # the last Acct-Session-Time sent
    interims: int = 0
    disconnect_requests: int = 0  # distinct Disconnect-Requests that named this session
    coa_requests: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _change: asyncio.Event = field(default_factory=asyncio.Event)
    _stop_cause: int | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    def used(self) -> int:
        """Session seconds at the end (or so far, as last reported)."""
        return self.reported


class _DaeSocket(asyncio.DatagramProtocol):
    def __init__(self, sim: NasSimulator) -> None:
        self.sim = sim
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.sim._dae_datagram(data, (str(addr[0]), int(addr[1])))


class NasSimulator:
    """A simulated access controller at ``bind`` (its RADIUS source address).

    ``start()`` opens the DAE port (``dae_port``, 0: chosen by the OS, see ``.dae_port``);
    ``attach(auth, acct)`` names the RADIUS server; ``login()`` brings a device online.
    ``dae_mode`` decides how Disconnect/CoA requests are answered: ``ack`` (like a NAS),
    ``ack_only`` (ACK but keep the session: a buggy NAS), ``nak`` (always NAK 503),
    ``silent`` (never), ``bad_authenticator`` (an answer with a wrong Response
    Authenticator). ``honour_session_timeout=False`` makes a NAS that ignores
    Session-Timeout (only a Disconnect-Request ends its sessions then). ``report_every``
    makes a NAS that reports at its own cadence whatever Acct-Interim-Interval says (as
    CoovaChilli keeps its 300 s when the value is below its floor). ``events`` records
    what happened, in order.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        bind: str = "127.0.0.1",
        dae_port: int = 0,
        nas_identifier: str = "sim-nas",
        nas_ip: str | None = None,
        clock: SimClock | None = None,
        vendor: str = "chilli",
        dae_mode: str = "ack",
        auth: tuple[str, int] | None = None,
        acct: tuple[str, int] | None = None,
        interim: int = 300,
        request_timeout: float = 1.0,
        request_retries: int = 3,
        event_window: float = 300.0,
        honour_session_timeout: bool = True,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        report_every: int | None = None,
    ) -> None:
        if dae_mode not in DAE_MODES:
            raise ValueError(f"dae_mode must be one of {DAE_MODES}")
        self.secret = secret
        self.bind = bind
        self.requested_dae_port = dae_port
        self.nas_identifier = nas_identifier
        self.nas_ip = nas_ip or bind
        self.clock = clock or SimClock()
        self.vendor = vendor
        self.dae_mode = dae_mode
        self.auth = auth
        self.acct = acct
        self.default_interim = interim
        self.request_timeout = request_timeout
        self.request_retries = request_retries
        self.event_window = event_window
        self.honour_session_timeout = honour_session_timeout
        self.report_every = report_every
        self.on_event = on_event
        self.sessions: dict[str, SimSession] = {}
        self.ended: list[SimSession] = []
        self.events: list[dict[str, Any]] = []
        self.dae_datagrams = 0
        self.dae_requests = 0  # distinct valid Disconnect/CoA requests
        self.dae_invalid = 0
        self.accounting_unanswered = 0
        self._seen_requests: set[tuple[str, int, int, bytes]] = set()
        self._dae: _DaeSocket | None = None
        self._auth_client: RadiusClient | None = None
        self._acct_client: RadiusClient | None = None
        self._counter = secrets.randbelow(1 << 16)

    # -- life cycle -----------------------------------------------------------------------

    @property
    def dae_port(self) -> int:
        assert self._dae is not None and self._dae.transport is not None, "not started"
        return int(self._dae.transport.get_extra_info("sockname")[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, self._dae = await loop.create_datagram_endpoint(
            lambda: _DaeSocket(self), local_addr=(self.bind, self.requested_dae_port)
        )

    def attach(self, auth: tuple[str, int], acct: tuple[str, int]) -> None:
        """Point the simulator at a RADIUS server (authentication and accounting ports)."""
        self.auth, self.acct = auth, acct

    async def __aenter__(self) -> NasSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Vanish like a NAS losing power: sessions end without Stop, the DAE port closes."""
        for s in list(self.sessions.values()):
            if s._task is not None:
                s._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await s._task
        self.sessions.clear()
        if self._dae is not None and self._dae.transport is not None:
            self._dae.transport.close()
        for client in (self._auth_client, self._acct_client):
            if client is not None:
                await client.close()
        self._auth_client = self._acct_client = None

    async def shutdown(self) -> None:
        """Stop every session with a Stop (NAS-Request), then ``stop()``."""
        for s in list(self.sessions.values()):
            await self.logout(s, TerminateCause.NAS_REQUEST)
        await self.stop()

    async def _client(self, acct: bool) -> RadiusClient:
        server = self.acct if acct else self.auth
        if server is None:
            raise RuntimeError("attach() the simulator to a RADIUS server first")
        current = self._acct_client if acct else self._auth_client
        if current is None:
            current = RadiusClient(server, self.secret, local_addr=(self.bind, 0))
            await current.open()
            if acct:
                self._acct_client = current
            else:
                self._auth_client = current
        return current

    def _event(self, kind: str, **values: Any) -> None:
        event = {"t": round(self.clock(), 3), "nas": self.nas_identifier, "event": kind, **values}
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    # -- devices ------------------------------------------------------------------------------

    async def login(
        self,
        user: str,
        password: str,
        *,
        mac: str,
        ip: str = "",
        active_for: float | None = None,
    ) -> SimSession | None:
        """Log a device in; on Access-Accept its session starts (Accounting Start) and runs
        on its own. ``active_for``: simulated seconds of traffic before the device falls
        idle (then Idle-Timeout applies). None when rejected (``events`` says why)."""
        client = await self._client(acct=False)
        attrs: dict[str, Any] = {
            "User_Name": user,
            "Calling_Station_Id": mac,
            "Called_Station_Id": f"{self.nas_identifier}:i-Test",
            "NAS_Identifier": self.nas_identifier,
            "NAS_IP_Address": self.nas_ip,
            "NAS_Port_Type": "Wireless-802.11",
        }
        request = client.auth_request(password=password, **attrs)
        reply = await client.request(
            request, timeout=self.request_timeout, retries=self.request_retries
        )
        if reply is None:
            self._event("login_unanswered", user=user)
            return None
        if reply.code != Code.ACCESS_ACCEPT:
            message = b"".join(
                v if isinstance(v, bytes) else v.encode() for v in reply.get(18, [])
            ).decode("utf-8", "replace")
            self._event("login_rejected", user=user, message=message)
            return None
        now = self.clock()
        self._counter += 1
        s = SimSession(
            acct_session_id=f"{int(now):08x}{self._counter:08x}",
            user=user,
            mac=mac,
            ip=ip or self._address_for(mac),
            klass=(reply.get(int(Attr.CLASS)) or [None])[0],
            session_timeout=_first_int(reply, Attr.SESSION_TIMEOUT),
            idle_timeout=_first_int(reply, Attr.IDLE_TIMEOUT),
            interim=self.report_every
            or _first_int(reply, Attr.ACCT_INTERIM_INTERVAL)
            or self.default_interim,
            start=now,
            active_until=None if active_for is None else now + active_for,
        )
        self.sessions[s.acct_session_id] = s
        self._event(
            "login",
            session=s.acct_session_id,
            user=user,
            session_timeout=s.session_timeout,
            interim=s.interim,
        )
        await self._account(s, "Start", 0)
        s._task = asyncio.ensure_future(self._run(s))
        return s

    async def logout(self, s: SimSession, cause: int = TerminateCause.USER_REQUEST) -> None:
        """The user logs off (or the NAS ends the session): Stop with ``cause``."""
        if s.running and s._stop_cause is None:
            s._stop_cause = int(cause)
            s._change.set()
        await s.done.wait()

    def forget(self, s: SimSession) -> None:
        """The NAS loses the session without a Stop (reboot without Accounting-On, crash of
        one line card): no more accounting; a Disconnect-Request for it gets NAK 503."""
        if s._task is not None:
            s._task.cancel()
        self.sessions.pop(s.acct_session_id, None)
        s.stopped_at = self.clock()
        s.done.set()
        self._event("forgotten", session=s.acct_session_id)

    async def accounting_on(self) -> bool:
        """Accounting-On, as a rebooted NAS sends it (the server closes our sessions)."""
        client = await self._client(acct=True)
        request = client.acct_request(
            Acct_Status_Type="Accounting-On",
            NAS_Identifier=self.nas_identifier,
            NAS_IP_Address=self.nas_ip,
        )
        reply = await client.request(
            request, timeout=self.request_timeout, retries=self.request_retries
        )
        return reply is not None

    @staticmethod
    def _address_for(mac: str) -> str:
        digits = int(mac.replace("-", "").replace(":", "")[-4:] or "0", 16)
        return str(ipaddress.ip_address("10.1.0.0") + 2 + digits % 65000)

    async def _run(self, s: SimSession) -> None:
        k = 1
        try:
            while True:
                limits = [(s.start + k * s.interim, "interim")]
                if s.session_timeout and self.honour_session_timeout:
                    limits.append((s.start + s.session_timeout, "session_timeout"))
                if s.idle_timeout and s.active_until is not None:
                    limits.append((max(s.active_until, s.start) + s.idle_timeout, "idle"))
                at, what = min(limits)
                if s._stop_cause is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(s._change.wait(), self.clock.real(at - self.clock()))
                s._change.clear()
                if s._stop_cause is not None:
                    await self._end(s, self.clock(), s._stop_cause)
                    return
                if self.clock() < at:
                    continue  # woken by a change (CoA): limits are recomputed
                if what == "session_timeout":
                    await self._end(s, at, TerminateCause.SESSION_TIMEOUT)
                    return
                if what == "idle":
                    await self._end(s, at, TerminateCause.IDLE_TIMEOUT)
                    return
                s.interims += 1
                await self._account(s, "Interim-Update", int(at - s.start))
                k += 1
        except asyncio.CancelledError:
            raise

    async def _end(self, s: SimSession, at: float, cause: int) -> None:
        s.stopped_at = at
        s.cause = int(cause)
        self.sessions.pop(s.acct_session_id, None)
        await self._account(s, "Stop", int(at - s.start), cause=int(cause))
        self.ended.append(s)
        self._event(
            "stop",
            session=s.acct_session_id,
            session_time=s.reported,
            cause=TerminateCause(cause).name,
        )
        s.done.set()

    async def _account(
        self, s: SimSession, status: str, session_time: int, *, cause: int | None = None
    ) -> None:
        client = await self._client(acct=True)
        attrs: dict[str, Any] = {
            "Acct_Status_Type": status,
            "Acct_Session_Id": s.acct_session_id,
            "Acct_Session_Time": session_time,
            "User_Name": s.user,
            "Calling_Station_Id": s.mac,
            "Called_Station_Id": f"{self.nas_identifier}:i-Test",
            "NAS_Identifier": self.nas_identifier,
            "NAS_IP_Address": self.nas_ip,
            "Framed_IP_Address": s.ip,
            "Acct_Input_Octets": session_time * 1000,
            "Acct_Output_Octets": session_time * 5000,
        }
        if cause is not None:
            attrs["Acct_Terminate_Cause"] = cause
        request = client.acct_request(**attrs)
        if s.klass is not None:
            request[int(Attr.CLASS)] = [s.klass]
        s.reported = max(s.reported, session_time)
        reply = await client.request(
            request, timeout=self.request_timeout, retries=self.request_retries
        )
        if reply is None:
            self.accounting_unanswered += 1
        self._event(
            "accounting",
            session=s.acct_session_id,
            status=status,
            session_time=session_time,
            answered=reply is not None,
        )

    # -- dynamic authorization (RFC 5176) ---------------------------------------------------

    def _dae_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        self.dae_datagrams += 1
        try:
            packet = CoAPacket(packet=data, secret=self.secret, dict=load_dictionary())
            valid = packet.code in (Code.DISCONNECT_REQUEST, Code.COA_REQUEST) and (
                packet.VerifyCoARequest()
            )
            if valid and packet.message_authenticator:
                valid = packet.verify_message_authenticator()
        except Exception:
            valid = False
        if not valid:
            self.dae_invalid += 1
            self._event("dae_invalid", source=addr[0])
            return
        stamp = _first_int(packet, Attr.EVENT_TIMESTAMP)
        if stamp is not None and abs(stamp - self.clock()) > self.event_window:
            self.dae_invalid += 1  # RFC 5176 §3.5: outside the window: silently discarded
            self._event("dae_stale_timestamp", source=addr[0])
            return
        key = (addr[0], addr[1], packet.id, packet.authenticator)
        fresh = key not in self._seen_requests
        self._seen_requests.add(key)
        disconnect = packet.code == Code.DISCONNECT_REQUEST
        user = _first_text(packet, Attr.USER_NAME)
        if self.vendor == "chilli" and not user:
            self._event("dae_without_user_name", source=addr[0])
            return  # chilli drops it (no answer)
        target = self._find(_first_text(packet, Attr.ACCT_SESSION_ID), user)
        if fresh:
            self.dae_requests += 1
            if target is not None:
                if disconnect:
                    target.disconnect_requests += 1
                else:
                    target.coa_requests += 1
        self._event(
            "disconnect_request" if disconnect else "coa_request",
            session=target.acct_session_id if target else None,
            retransmission=not fresh,
            mode=self.dae_mode,
        )
        if self.dae_mode == "silent":
            return
        reply = packet.CreateReply()
        if target is None or self.dae_mode == "nak":
            reply.code = Code.DISCONNECT_NAK if disconnect else Code.COA_NAK
            if self.vendor != "chilli":
                reply["Error-Cause"] = int(ErrorCause.SESSION_CONTEXT_NOT_FOUND)
        elif not disconnect:
            timeout = _first_int(packet, Attr.SESSION_TIMEOUT)
            if timeout is not None:
                target.session_timeout = timeout
                target._change.set()
        elif target.running and target._stop_cause is None and self.dae_mode != "ack_only":
            target._stop_cause = int(TerminateCause.ADMIN_RESET)
            target._change.set()
        if self.vendor != "chilli":
            reply.add_message_authenticator()
        raw = reply.ReplyPacket()
        if self.dae_mode == "bad_authenticator":
            raw = raw[:4] + bytes(16) + raw[20:]
        if self._dae is not None and self._dae.transport is not None:
            self._dae.transport.sendto(raw, addr)

    def _find(self, acct_session_id: str | None, user: str | None) -> SimSession | None:
        for s in self.sessions.values():
            if acct_session_id and s.acct_session_id.lower() != acct_session_id.lower():
                continue
            if user and s.user != user:
                continue
            if acct_session_id or user:
                return s
        return None


def _first_int(packet: Any, attribute: int) -> int | None:
    values = packet.get(int(attribute))
    if not values:
        return None
    value = values[0]
    if isinstance(value, bytes):
        return int.from_bytes(value, "big") if len(value) == 4 else None
    return int(value)


def _first_text(packet: Any, attribute: int) -> str | None:
    values = packet.get(int(attribute))
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- command line


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.nas_sim",
        description="Simulated access controller: logs devices in through RADIUS, sends "
        "accounting on schedule, obeys Session-Timeout, Idle-Timeout and RFC 5176 "
        "Disconnect/CoA requests. Prints one JSON line per event.",
    )
    p.add_argument("--secret", required=True, help="RADIUS shared secret of this NAS")
    p.add_argument("--auth", type=_hostport, default=("127.0.0.1", 1812), metavar="HOST:PORT")
    p.add_argument("--acct", type=_hostport, default=("127.0.0.1", 1813), metavar="HOST:PORT")
    p.add_argument("--bind", default="127.0.0.1", help="source address (the client address)")
    p.add_argument("--dae-port", type=int, default=3799, help="RFC 5176 port (0: any)")
    p.add_argument("--nas-id", default="sim-nas", help="NAS-Identifier")
    p.add_argument("--vendor", choices=("chilli", "generic"), default="chilli")
    p.add_argument("--dae-mode", choices=DAE_MODES, default="ack")
    p.add_argument(
        "--ignore-session-timeout",
        action="store_true",
        help="act like a NAS that ignores Session-Timeout",
    )
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument(
        "--login",
        action="append",
        default=[],
        metavar="USER:PASSWORD[@MAC]",
        help="a device to log in (repeat for several)",
    )
    p.add_argument("--config", help="with --phone: issue logins like `citywifi issue-login`")
    p.add_argument("--phone", help="mobile number to issue logins for (needs --config)")
    p.add_argument("--devices", type=int, default=1, help="devices to log in with --phone")
    p.add_argument("--active-for", type=float, default=None, help="seconds before idle")
    p.add_argument("--accounting-on", action="store_true", help="send Accounting-On first")
    p.add_argument(
        "--duration", type=float, default=None, help="stop after this many simulated seconds"
    )
    return p


async def _issued_logins(
    config_path: str, phone: str, devices: int, source: str
) -> list[tuple[str, str]]:
    from controller.config import load_config
    from controller.domain.phone import normalize_phone
    from controller.domain.registry import Registry
    from controller.services.logins import issue_login
    from controller.storage.keyfiles import load_person_key
    from controller.storage.redis_conn import connect_store, embedded_for

    config = load_config(config_path)
    client = Registry(config).client_for(source)  # credentials work only at their client
    if client is None:
        raise SystemExit(f"nas_sim: no [[clients]] entry for --bind {source}")
    embedded = embedded_for(config.redis)
    store = await connect_store(config, embedded)
    key = load_person_key(config.security.person_key, config.redis.data_dir)
    try:
        out = []
        for _ in range(devices):
            issued = await issue_login(
                store,
                phone_e164=normalize_phone(phone),
                mac="",
                client_id=client.id,
                person_key=key,
                ttl=config.quota.login_ttl,
                now=int(time.time()),
            )
            out.append((issued.username, issued.password))
        return out
    finally:
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _main(args: argparse.Namespace) -> int:
    logins: list[tuple[str, str, str]] = []
    for i, item in enumerate(args.login):
        credentials, _, mac = item.partition("@")
        user, _, password = credentials.partition(":")
        logins.append((user, password, mac or f"02-00-00-00-00-{i + 1:02X}"))
    if args.phone:
        if not args.config:
            print("--phone needs --config", file=sys.stderr)
            return 2
        for i, (user, password) in enumerate(
            await _issued_logins(args.config, args.phone, args.devices, args.bind)
        ):
            logins.append((user, password, f"02-00-00-00-01-{i + 1:02X}"))
    if not logins:
        print("nothing to do: give --login or --phone", file=sys.stderr)
        return 2
    clock = SimClock(args.speed)
    sim = NasSimulator(
        args.secret.encode(),
        bind=args.bind,
        dae_port=args.dae_port,
        nas_identifier=args.nas_id,
        clock=clock,
        vendor=args.vendor,
        dae_mode=args.dae_mode,
        honour_session_timeout=not args.ignore_session_timeout,
        auth=args.auth,
        acct=args.acct,
        on_event=lambda e: print(json.dumps(e, ensure_ascii=False), flush=True),
    )
    await sim.start()
    try:
        if args.accounting_on:
            await sim.accounting_on()
        sessions = [
            s
            for s in [
                await sim.login(u, p, mac=m, active_for=args.active_for) for u, p, m in logins
            ]
            if s is not None
        ]
        waits = [asyncio.ensure_future(s.done.wait()) for s in sessions]
        if waits:
            timeout = None if args.duration is None else clock.real(args.duration)
            await asyncio.wait(waits, timeout=timeout)
        for w in waits:
            w.cancel()
        await sim.shutdown()
    finally:
        await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_main(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
