"""An accounting load generator that behaves like a fleet of real NAS sessions, with ground truth.

Why: the fault tests (tests/test_faults.py) need to know exactly which Accounting-Requests
the server acknowledged, so that after a fault they can demand "every answered request is
in Redis" and, once the NAS has retransmitted everything, "usage equals the truth exactly".

How a session behaves (RFC 2866 §2, RFC 5080 §2.2.1):

- ``reports`` reports on a fixed cadence, whether or not earlier ones were answered:
  Start (Acct-Session-Time 0), Interim-Updates with a growing cumulative session time,
  Stop (User-Request) with the final one. Each report carries the Class a real Accept
  would have given (signed for the plan's client with the test person key,
  controller.domain.identity), so usage lands on a person we know.
- An unanswered report is retransmitted as the identical datagram (same Identifier and
  authenticator) every ``retransmit_after`` s; after ``tries_per_id`` sends it gets a new
  Identifier and Acct-Delay-Time = seconds since its event (so a new authenticator),
  until it is answered or the run's deadline passes.
- Several NAS sockets (``nas_count`` source ports; each has the 256 Identifiers of one
  RADIUS client), so SO_REUSEPORT spreads the load over workers.

Ground truth (``Truth``): every report, each version sent (identifier, authenticator,
first send), and when it was answered. A reply is verified with the project's codec
(``radius.packet.decode_reply``: Response Authenticator, and Message-Authenticator if
any: an Accounting-Response carries none, docs/radius.md); a
late reply to a version the NAS has already replaced still counts as an answer.

``LoadThread`` runs it on its own event loop in a thread, so a synchronous test can
inject faults (kill, SIGSTOP, restart Redis) while the load goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterable
from typing import Any

from controller.domain.identity import class_key, sign_class
from radius.attrs import AcctStatus, Attr, Code, TerminateCause
from radius.packet import PacketError, attr, attr_int, attr_text, decode_reply, encode_request

STATUS_NAMES = {
    AcctStatus.START: "Start",
    AcctStatus.INTERIM_UPDATE: "Interim",
    AcctStatus.STOP: "Stop",
}


@dataclasses.dataclass(frozen=True)
class LoadPlan:
    server: tuple[str, int]  # the accounting port
    secret: bytes
    client_id: str = "nas-local"  # the [[clients]] id the server gives our source address
    person_key: bytes = b"test-person-key-0123456789"  # tests.conftest's security.person_key
    tag: str = "load"  # prefix of Acct-Session-Ids and person ids (unique per run)
    sessions: int = 120
    persons: int = 40  # sessions are spread over this many persons (several per person)
    reports: int = 8  # Start, reports-2 Interim-Updates, Stop
    interval: float = 0.5  # seconds between two reports of a session
    spread: float = 2.0  # session starts are spread over this many seconds
    nas_count: int = 8  # source sockets
    retransmit_after: float = 0.5  # seconds before sending the same datagram again
    tries_per_id: int = 3  # sends of one version before a new Identifier
    settle: float = 40.0  # after the last report is due, keep retransmitting this long

    @property
    def duration(self) -> float:
        """Seconds from the first report to the last one being due."""
        return self.spread + (self.reports - 1) * self.interval


@dataclasses.dataclass
class Version:
    """One encoding of a report: what a single Identifier was used for."""

    nas: int
    identifier: int
    authenticator: bytes
    data: bytes
    first_sent: float
    sends: int = 0


@dataclasses.dataclass
class Report:
    session: Session
    seq: int
    status: int
    session_time: int
    due: float  # when the NAS produced it (monotonic)
    versions: list[Version] = dataclasses.field(default_factory=list)
    answered_at: float | None = None
    answered_version: Version | None = None

    @property
    def name(self) -> str:
        return f"{self.session.acct_session_id}#{self.seq}:{STATUS_NAMES[AcctStatus(self.status)]}"


@dataclasses.dataclass
class Session:
    index: int
    pid: str
    acct_session_id: str
    mac: str
    step: int  # Acct-Session-Time added per report
    nas: int
    reports: list[Report] = dataclasses.field(default_factory=list)

    @property
    def final_time(self) -> int:
        """The session time of its Stop: what usage must be once everything is answered."""
        return max(r.session_time for r in self.reports)

    def answered_time(self, before: float | None = None) -> int | None:
        """Highest Acct-Session-Time answered (by ``before``), None if nothing was."""
        times = [
            r.session_time
            for r in self.reports
            if r.answered_at is not None and (before is None or r.answered_at <= before)
        ]
        return max(times) if times else None

    def stop_answered(self, before: float | None = None) -> bool:
        return any(
            r.status == AcctStatus.STOP
            and r.answered_at is not None
            and (before is None or r.answered_at <= before)
            for r in self.reports
        )


def person_id(tag: str, index: int) -> str:
    """A 20-character person id, as the Class of an Access-Accept carries it."""
    return hashlib.sha256(f"{tag}|person|{index}".encode()).hexdigest()[:20]


class Truth:
    """What the NAS fleet sent and what the server acknowledged."""

    def __init__(self, plan: LoadPlan, t0: float) -> None:
        self.plan = plan
        self.sessions: list[Session] = []
        self.answers: list[tuple[float, Report, Version]] = []  # (received, report, version)
        self.sent_packets = 0
        self.retransmissions = 0
        self.new_identifiers = 0
        self.discarded = 0  # replies that verified against no version we sent
        self.duplicate_answers = 0  # a second reply for an already answered report
        for k in range(plan.sessions):
            pid = person_id(plan.tag, k % plan.persons)
            session = Session(
                index=k,
                pid=pid,
                acct_session_id=f"{plan.tag}-{k}",
                mac=f"02-00-00-{k >> 16 & 0xFF:02X}-{k >> 8 & 0xFF:02X}-{k & 0xFF:02X}",
                step=30 + (k % 7) * 10,
                nas=k % plan.nas_count,
            )
            start = t0 + plan.spread * k / max(1, plan.sessions)
            for j in range(plan.reports):
                status = (
                    AcctStatus.START
                    if j == 0
                    else AcctStatus.STOP
                    if j == plan.reports - 1
                    else AcctStatus.INTERIM_UPDATE
                )
                session.reports.append(
                    Report(session, j, int(status), j * session.step, start + j * plan.interval)
                )
            self.sessions.append(session)

    # -- views for the tests ------------------------------------------------------------

    @property
    def reports(self) -> Iterable[Report]:
        for s in self.sessions:
            yield from s.reports

    @property
    def answered(self) -> int:
        return len(self.answers)

    @property
    def total(self) -> int:
        return self.plan.sessions * self.plan.reports

    def unanswered(self) -> list[Report]:
        return [r for r in self.reports if r.answered_at is None]

    def persons(self) -> dict[str, list[Session]]:
        out: dict[str, list[Session]] = {}
        for s in self.sessions:
            out.setdefault(s.pid, []).append(s)
        return out

    def sent_since(self, t: float) -> int:
        """Reports with a version first sent at or after ``t`` (arrived during a fault)."""
        return sum(any(v.first_sent >= t for v in list(r.versions)) for r in self.reports)

    def answers_between(self, t1: float, t2: float) -> list[tuple[float, Report, Version]]:
        return [a for a in list(self.answers) if t1 <= a[0] < t2]

    def first_answer_after(self, t: float) -> float | None:
        times = [a[0] for a in list(self.answers) if a[0] >= t]
        return min(times) if times else None

    def summary(self) -> str:
        return (
            f"{self.answered}/{self.total} answered, {self.sent_packets} datagrams, "
            f"{self.retransmissions} retransmissions, {self.new_identifiers} new identifiers, "
            f"{self.discarded} discarded replies, {self.duplicate_answers} duplicate answers"
        )


class _NasSocket(asyncio.DatagramProtocol):
    """One NAS source port: 256 Identifiers, replies matched by Identifier + authenticator."""

    def __init__(self, load: AcctLoad, index: int) -> None:
        self.load = load
        self.index = index
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, Version] = {}
        self.released: dict[int, Version] = {}  # last replaced version per Identifier
        self.owner: dict[int, Report] = {}  # Identifier -> report of pending / released
        self.released_owner: dict[int, Report] = {}
        self.next_id = (index * 37) & 0xFF

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: server gone
        pass

    def allocate(self) -> int | None:
        for _ in range(256):
            ident = self.next_id
            self.next_id = (ident + 1) & 0xFF
            if ident not in self.pending:
                return ident
        return None

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < 20:
            self.load.truth.discarded += 1
            return
        ident = data[1]
        for table, owners in ((self.pending, self.owner), (self.released, self.released_owner)):
            version = table.get(ident)
            if version is None:
                continue
            try:
                reply = decode_reply(
                    data,
                    self.load.plan.secret,
                    version.authenticator,
                    require_message_authenticator=False,
                )
            except PacketError:
                continue
            if reply.code != Code.ACCOUNTING_RESPONSE:
                continue
            self.load.answered(owners[ident], version)
            return
        self.load.truth.discarded += 1


class AcctLoad:
    """Runs a ``LoadPlan`` on the current event loop; ``truth`` fills in as it goes."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.t0 = time.monotonic() + 0.2
        self.truth = Truth(plan, self.t0)
        self.deadline = self.t0 + plan.duration + plan.settle
        self.sockets: list[_NasSocket] = []
        self.waiting: list[Report] = []  # due, but their NAS had no free Identifier
        self.outstanding = 0
        self._done: asyncio.Event | None = None
        self.stopped = False
        key = class_key(plan.person_key)
        self._classes = [  # one login per session (nonce: its index)
            sign_class(key, s.pid, "c", plan.client_id, f"{s.index:016x}")
            for s in self.truth.sessions
        ]

    def stop(self) -> None:
        """End the run early (thread-safe via ``LoadThread.stop``)."""
        self.stopped = True
        if self._done is not None:
            self._done.set()

    async def run(self) -> Truth:
        loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        for i in range(self.plan.nas_count):
            _, proto = await loop.create_datagram_endpoint(
                lambda i=i: _NasSocket(self, i),  # type: ignore[misc]
                local_addr=("127.0.0.1", 0),
                remote_addr=self.plan.server,
            )
            self.sockets.append(proto)
        self.outstanding = self.truth.total
        for report in self.truth.reports:
            loop.call_at(self._loop_time(report.due), self._first_send, report)
        try:
            remaining = self.deadline - time.monotonic()
            if remaining > 0 and not self.stopped:
                await asyncio.wait_for(self._done.wait(), remaining)
        except TimeoutError:
            pass
        finally:
            self.stopped = True
            for s in self.sockets:
                if s.transport is not None:
                    s.transport.close()
        return self.truth

    @staticmethod
    def _loop_time(monotonic: float) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + (monotonic - time.monotonic())

    # -- sending ------------------------------------------------------------------------

    def _encode(self, report: Report, ident: int, delay: int) -> bytes:
        s = report.session
        attrs = b"".join(
            (
                attr_int(Attr.ACCT_STATUS_TYPE, report.status),
                attr_text(Attr.ACCT_SESSION_ID, s.acct_session_id),
                attr_int(Attr.ACCT_SESSION_TIME, report.session_time),
                attr_text(Attr.USER_NAME, f"{self.plan.tag}-user-{s.index}"),
                attr_text(Attr.CALLING_STATION_ID, s.mac),
                attr_text(Attr.NAS_IDENTIFIER, f"{self.plan.tag}-nas-{s.nas}"),
                attr(Attr.CLASS, self._classes[s.index]),
                attr_int(Attr.ACCT_INPUT_OCTETS, report.seq * 1000),
                attr_int(Attr.ACCT_OUTPUT_OCTETS, report.seq * 5000),
                attr_int(Attr.ACCT_DELAY_TIME, delay) if delay else b"",
                attr_int(Attr.ACCT_TERMINATE_CAUSE, TerminateCause.USER_REQUEST)
                if report.status == AcctStatus.STOP
                else b"",
            )
        )
        return encode_request(Code.ACCOUNTING_REQUEST, ident, self.plan.secret, attrs)

    def _first_send(self, report: Report) -> None:
        if not self.stopped:
            self._new_version(report)

    def _new_version(self, report: Report) -> None:
        """Send ``report`` under a fresh Identifier (the previous one is given up)."""
        nas = self.sockets[report.session.nas]
        if report.versions:
            old = report.versions[-1]
            if nas.pending.get(old.identifier) is old:
                del nas.pending[old.identifier]
                nas.released[old.identifier] = old
                nas.released_owner[old.identifier] = nas.owner.pop(old.identifier)
        ident = nas.allocate()
        if ident is None:  # every Identifier of this NAS is outstanding: wait like a NAS
            self.waiting.append(report)
            asyncio.get_running_loop().call_later(0.05, self._retry_waiting)
            return
        now = time.monotonic()
        delay = int(now - report.due) if report.versions else 0
        data = self._encode(report, ident, delay)
        version = Version(report.session.nas, ident, data[4:20], data, now)
        if report.versions:
            self.truth.new_identifiers += 1
        report.versions.append(version)
        nas.pending[ident] = version
        nas.owner[ident] = report
        nas.released.pop(ident, None)
        nas.released_owner.pop(ident, None)
        self._send(report, version)

    def _retry_waiting(self) -> None:
        waiting, self.waiting = self.waiting, []
        for report in waiting:
            if report.answered_at is None and not self.stopped:
                self._new_version(report)

    def _send(self, report: Report, version: Version) -> None:
        if self.stopped or report.answered_at is not None:
            return
        nas = self.sockets[version.nas]
        if nas.pending.get(version.identifier) is not version:
            return  # replaced by a newer version
        if version.sends >= self.plan.tries_per_id:
            self._new_version(report)
            return
        if version.sends:
            self.truth.retransmissions += 1
        version.sends += 1
        self.truth.sent_packets += 1
        if nas.transport is not None:
            nas.transport.sendto(version.data)
        asyncio.get_running_loop().call_later(
            self.plan.retransmit_after, self._send, report, version
        )

    # -- receiving ------------------------------------------------------------------------

    def answered(self, report: Report, version: Version) -> None:
        if report.answered_at is not None:
            self.truth.duplicate_answers += 1
            return
        report.answered_at = time.monotonic()
        report.answered_version = version
        self.truth.answers.append((report.answered_at, report, version))
        nas = self.sockets[version.nas]
        for v in report.versions:  # free every Identifier this report still holds
            if nas.pending.get(v.identifier) is v:
                del nas.pending[v.identifier]
                del nas.owner[v.identifier]
        self.outstanding -= 1
        if self.outstanding == 0 and self._done is not None:
            self._done.set()


class LoadThread:
    """``AcctLoad`` on its own event loop in a thread, for synchronous fault tests."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.load = AcctLoad(plan)
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="acct-load", daemon=True)

    @property
    def truth(self) -> Truth:
        return self.load.truth

    def _main(self) -> None:
        try:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.load.run())
            finally:
                loop.close()
        except BaseException as exc:  # reported by join()
            self.error = exc

    def start(self) -> LoadThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the run now (unanswered reports stay unanswered)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(self.load.stop)
        else:
            self.load.stopped = True

    def join(self, timeout: float | None = None) -> Truth:
        """Wait for the run to end (all answered, deadline, or ``stop``)."""
        if timeout is None:
            timeout = self.load.deadline - time.monotonic() + 10
        self._thread.join(max(0.0, timeout))
        if self._thread.is_alive():
            self.stop()
            self._thread.join(10)
            raise AssertionError("the accounting load did not end in time")
        if self.error is not None:
            raise self.error
        return self.load.truth


# -- reading Redis back ---------------------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def check_redis(r: Any, truth: Truth, *, exact: bool, before: float | None = None) -> list[str]:
    """Problems between what Redis holds and the ground truth ([] when consistent).

    Always: every answered report (by ``before``) is in Redis — its session's highest
    Acct-Session-Time (``seen``) is at least the answered one and an answered Stop
    closed the session. With ``exact`` (every report answered): ``seen`` equals the
    session's final time, the session's per-day shares sum to it, and each person's day
    counters (``cw:{pid}:u:*``) sum to the sum of their sessions' final times: no loss,
    no double count. ``r`` is a synchronous ``redis.Redis``.
    """
    from controller.storage import keys

    problems: list[str] = []
    client = truth.plan.client_id
    for pid, sessions in truth.persons().items():
        pipe = r.pipeline(transaction=False)
        for s in sessions:
            pipe.hgetall(keys.session(pid, keys.session_id(client, s.acct_session_id)))
        records = pipe.execute()
        for s, raw in zip(sessions, records, strict=True):
            rec = {_text(k): _text(v) for k, v in raw.items()}
            seen = int(rec.get("seen", -1))
            answered = s.answered_time(before)
            if answered is not None and seen < answered:
                problems.append(f"{s.acct_session_id}: answered {answered} s but Redis has {seen}")
            if s.stop_answered(before) and "closed" not in rec:
                problems.append(f"{s.acct_session_id}: Stop answered but the session is open")
            if exact:
                days = sum(int(v) for k, v in rec.items() if k.startswith("d:"))
                if seen != s.final_time or days != s.final_time:
                    problems.append(
                        f"{s.acct_session_id}: seen {seen}, per-day {days}, truth {s.final_time}"
                    )
        if exact:
            used = sum(
                int(r.get(k) or 0) for k in r.scan_iter(match=f"{keys.person(pid)}:u:*", count=100)
            )
            want = sum(s.final_time for s in sessions)
            if used != want:
                problems.append(f"person {pid}: Redis counts {used} s, truth {want} s")
    return problems
