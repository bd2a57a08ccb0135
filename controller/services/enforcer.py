"""Quota enforcer: when a person's time is gone, every one of their devices is cut off.

The plans are pure (``controller.domain.enforcement``: ``projected_exhaustion``,
``plan_person``); this module is the asyncio shell that acts on them.

Asyncio shell (``Enforcer``), shaped like aioquic's protocol: after each recorded
Start/Interim/Stop the RADIUS service hands over the person's snapshot (read in the same
Redis round trip as the write); the due time is computed and written to the global due
index ``cw:idx:due`` after the Accounting-Response went out, batched, and only ever moved
earlier there (ZADD LT). One loop timer is armed at the earliest due time in Redis, the
next stale session or the next sweep, whichever comes first. At due time the person is
leased (SET NX PX, so one of several processes acts), re-read and re-planned; each
session whose time is really gone gets an RFC 5176 Disconnect-Request (``radius.dae``).
An ACK marks the session closing (its Stop follows), a NAK 503 closes it here; no answer
is retried with backoff, then given up, logged and counted, and tried again one interim
later. The same loop closes sessions without accounting for ``quota.stale_grace``.
See docs/enforcement.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from prometheus_client import Counter

from controller.config import Client, Config
from controller.domain import quota
from controller.domain.enforcement import (
    Plan,
    dae_address,
    over_device_limit,
    plan_person,
    session_identity,
)
from controller.domain.state import AccountingResult, AccountingWrite, DueRule, PersonSnapshot
from controller.services.tasks import cancel_and_wait
from controller.storage import keys
from controller.storage.store import Store, StoreUnavailable
from radius.attrs import AcctStatus, TerminateCause
from radius.dae import DaeClient, DaeOutcome, DaeResult, DaeTarget
from radius.running_loop import running_loop
from radius.tally import TALLY

log = structlog.get_logger("citywifi.enforcer")

STALE_CAUSE: Final = str(int(TerminateCause.LOST_SERVICE))
"""Acct-Terminate-Cause recorded for a session closed without a Stop because its NAS went
silent, or because the NAS answered a Disconnect-Request with "no such session" (503)."""

BATCH: Final = 256  # due persons / stale sessions read per look at an index
MAX_STALE_BATCHES: Final = 20  # stale sessions closed per tick at most: BATCH x this
MAX_ACTING: Final = 64  # persons being acted on at once by one process (no storms)
BUSY_WAKE: Final = 0.2  # real seconds until the next look when a batch was full

DISCONNECTS = Counter(
    "citywifi_enforcer_disconnects_total",
    "Sessions the enforcer asked a NAS to end, by reason (quota, blocked, admin, device_limit) "
    "and result "
    "(acked, closed: NAK 503, naked: other NAK, failed: no answer, no_client, unsupported)",
    ["reason", "result"],
)
# per NAS (the ids of the config: bounded), so one bad NAS among many shows in an alert
CLIENT_DISCONNECTS = Counter(
    "citywifi_enforcer_client_disconnects_total",
    "Disconnect-Requests by RADIUS client (configured ids only) and result",
    ["client", "result"],
)
STALE_CLOSED = Counter(
    "citywifi_enforcer_stale_closed_total",
    "Sessions closed as stale: no accounting for longer than quota.stale_grace",
)
CHECKS = Counter(
    "citywifi_enforcer_checks_total",
    "Looks at a due person: acted, not_due (re-planned), leased_elsewhere, failed",
    ["result"],
)
COAS = Counter(
    "citywifi_enforcer_coa_total",
    "CoA-Requests with a new Session-Timeout sent when a person opened another session",
    ["result"],
)


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    sid: str
    client: str
    result: str  # acked | closed | naked | failed | no_client | unsupported
    error_cause: int | None = None
    attempts: int = 0


class EnforcerBusy(Exception):
    """Another process is acting on the person; try again in a moment."""


# ------------------------------------------------------------------------- asyncio shell


def clock_rate(clock: Callable[[], float]) -> float:
    """Clock seconds per real second: 1 for ``time.time``; a simulated clock running
    faster (the NAS simulator's ``SimClock``) says so in a ``rate`` attribute."""
    return float(getattr(clock, "rate", 1.0))


class Enforcer:
    """The asyncio side: due index writer, one timer loop, leases, disconnects, sweeps.

    ``accounted`` makes it an ``AccountingObserver`` of the RADIUS service. ``start()``
    runs the loop when ``enforcer.enabled`` (the due index is written either way, so
    another process can act); ``disconnect_now`` serves the admin API and CLI.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        rate: float | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.rate = clock_rate(clock) if rate is None else rate
        self.instance = secrets.token_hex(6)
        self.dae: DaeClient | None = None
        self._due: dict[str, int] = {}
        # client id -> largest gap between two reports seen from it (all processes, via
        # cw:idx:cadence): a session showing none of its own yet is judged on its NAS's
        self._cadence: dict[str, int] = {}
        self._cadence_news: dict[str, int] = {}
        self._due_ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._armed = math.inf  # clock time the loop sleeps until (inf while a tick runs)
        self._news = math.inf  # earliest due time written while a tick ran
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._started = 0.0
        self._slots = asyncio.Semaphore(MAX_ACTING)
        self.apply_config(config)

    def apply_config(self, config: Config) -> None:
        """Take a new config (SIGHUP): clients, quota policy, DAE timeouts."""
        self.config = config
        self.settings = config.enforcer
        self.policy = config.quota
        self.stale_rule = quota.StaleRule(
            math.ceil(config.quota.stale_grace), config.quota.interim_interval
        )
        self.clients = {c.id: c for c in config.clients}
        if self.dae is not None:
            self.dae.timeout = self.settings.disconnect_timeout
            self.dae.retries = self.settings.disconnect_retries
            self.dae.timestamp_window = self.settings.disconnect_timestamp_window

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.settings.lease * 1000))

    async def start(self, *, loop: bool | None = None) -> None:
        """Open the DAE socket and the due-index writer; run the loop when enabled."""
        bind = self.config.radius.bind
        self.dae = DaeClient(
            bind=bind,
            timeout=self.settings.disconnect_timeout,
            retries=self.settings.disconnect_retries,
            timestamp_window=self.settings.disconnect_timestamp_window,
            clock=self.clock,
        )
        self._started = self.clock()
        self._writer = asyncio.ensure_future(self._write_due())
        if self.settings.enabled if loop is None else loop:
            self._runner = asyncio.ensure_future(self._run())
        if loop is None:  # serve's; a one-off command (admin CLI) only borrows the DAE client
            log.info("enforcer.started", acting=self._runner is not None, instance=self.instance)

    async def stop(self) -> None:
        """Stop acting (leases are released), flush the due index, close the socket."""
        for task in (self._runner, *list(self._tasks), self._writer):
            await cancel_and_wait(task)
        self._runner = self._writer = None
        if self._due:
            with contextlib.suppress(StoreUnavailable):
                await self.store.index_due(self._due)
            self._due = {}
        if self.dae is not None:
            await self.dae.close()
            self.dae = None

    # -- planning ----------------------------------------------------------------------

    def day(self, now: int) -> str:
        return quota.day_key(quota.local_day(now, self.policy.timezone))

    def plan(
        self,
        snap: PersonSnapshot,
        now: int,
        *,
        force: bool = False,
        starts: Mapping[str, int] | None = None,
    ) -> Plan:
        q = self.policy
        return plan_person(
            snap,
            now=now,
            daily=q.daily_seconds,
            next_midnight=quota.next_midnight(now, q.timezone),
            stale_before=now - math.ceil(q.stale_grace),
            retry_after=q.interim_interval,
            force=force,
            max_devices=q.max_devices,
            starts=starts,
        )

    async def _plan_now(self, pid: str) -> Plan:
        """Re-read the person and plan; over the device limit, with their sessions' start
        times (read only then) so the newest devices are the ones cut."""
        now = int(self.clock())
        snap = await self.store.person_snapshot(pid, self.day(now))
        starts: dict[str, int] = {}
        if over_device_limit(
            snap, self.policy.max_devices, now - math.ceil(self.policy.stale_grace)
        ):
            sids = sorted(snap.open)
            records = await asyncio.gather(*(self.store.session(pid, sid) for sid in sids))
            starts = {
                sid: int(r["start"]) for sid, r in zip(sids, records, strict=True) if r.get("start")
            }
        return self.plan(snap, now, starts=starts)

    # -- from the accounting path --------------------------------------------------------

    def due_rule(self, event_time: int) -> DueRule:
        """``plan``'s arguments at a report's event time, for account.lua to compute the
        person's due time in the write's own call (``DuePlanner`` of the RADIUS service)."""
        q = self.policy
        return DueRule(  # positional (a keyword call of a record builds a dict): per report
            q.daily_seconds,  # daily
            quota.next_midnight(event_time, q.timezone),  # next_midnight
            event_time - math.ceil(q.stale_grace),  # stale_before
            q.interim_interval,  # retry_after
            q.max_devices,  # max_devices
        )

    def accounted(self, write: AccountingWrite, result: AccountingResult) -> None:
        """``AccountingObserver``: schedule indexing after the Accounting-Response is sent."""
        gap = min(result.gap, self.stale_rule.cap)
        if gap > self._cadence.get(write.client_id, 0):
            self._cadence[write.client_id] = self._cadence_news[write.client_id] = gap
            self._due_ready.set()
        if not write.session.known:
            return  # accounting we cannot tie to a person has no allowance to enforce
        if result.due_known:  # account.lua planned (and, on one Redis, indexed) already
            due = result.due
            if due is not None:
                if result.due_indexed:
                    self._heard(due)
                else:  # a Cluster: the due index is in another slot, written here
                    prev = self._due.get(write.pid)
                    self._due[write.pid] = due if prev is None else min(prev, due)
                    self._due_ready.set()
            if result.snapshot is not None and self._may_coa(write, result.snapshot):
                running_loop().call_soon(self._note, write, result.snapshot)
            return
        if result.snapshot is not None:
            running_loop().call_soon(self._note, write, result.snapshot)

    def _may_coa(self, write: AccountingWrite, snap: PersonSnapshot) -> bool:
        """A Start of another session of a person online: ``_note``'s CoA may follow."""
        return (
            self.settings.coa_on_new_session
            and write.status == AcctStatus.START
            and len(snap.open) > 1
            and self.dae is not None
        )

    def _note(self, write: AccountingWrite, snap: PersonSnapshot) -> None:
        plan = self.plan(snap, write.event_time)
        at = plan.index_at(write.event_time)
        if at is not None:
            prev = self._due.get(write.pid)
            self._due[write.pid] = at if prev is None else min(prev, at)
            self._due_ready.set()
        if self._may_coa(write, snap) and plan.wake is not None and not plan.disconnect:
            self._spawn(self._coa_person(write.pid, tuple(snap.open), plan.wake))

    async def _write_due(self) -> None:
        """Flush noted due times to Redis, as many as gathered while the last flush ran."""
        while True:
            await self._due_ready.wait()
            self._due_ready.clear()
            batch, self._due = self._due, {}
            cadence, self._cadence_news = self._cadence_news, {}
            if not batch and not cadence:
                continue
            try:
                await self.store.index_due(batch)
                await self.store.note_cadence(cadence)
            except StoreUnavailable as exc:
                log.warning("enforcer.index_unavailable", error=str(exc), pending=len(batch))
                for pid, at in batch.items():
                    self._due[pid] = min(at, self._due.get(pid, at))
                for client_id, gap in cadence.items():
                    self._cadence_news[client_id] = max(gap, self._cadence_news.get(client_id, 0))
                await asyncio.sleep(1.0)
                self._due_ready.set()
                continue
            if batch:
                self._heard(min(batch.values()))

    def _heard(self, at: float) -> None:
        """A due time was written: wake the loop if it is earlier than its timer (during a
        tick, remember it: the tick's own answer may not include it)."""
        if self._armed == math.inf:
            self._news = min(self._news, at)
        elif at < self._armed:
            self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                wake = await self.tick()
            except StoreUnavailable as exc:
                log.warning("enforcer.store_unavailable", error=str(exc))
                wake = self.clock() + self.settings.sweep_interval * self.rate
            except Exception:
                log.exception("enforcer.tick_failed")
                wake = self.clock() + self.settings.sweep_interval * self.rate
            wake, self._news = min(wake, self._news), math.inf
            await self._sleep_until(wake)

    async def _sleep_until(self, wake: float) -> None:
        self._armed = wake
        delay = (wake - self.clock()) / self.rate
        if delay > 0 and not self._wake.is_set():
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as the event fires, and stop() then waits for this task forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
        self._wake.clear()
        self._armed = math.inf  # a tick runs: news is kept in _news

    async def tick(self) -> float:
        """One look: act on every person due by now, close stale sessions. Returns the
        clock time of the next look."""
        now = self.clock()
        interval = self.settings.sweep_interval * self.rate
        wake = now + interval
        due = await self.store.due_persons(now, BATCH)
        for entry in due:
            if entry.pid not in self._busy:
                self._busy.add(entry.pid)
                self._spawn(self._act(entry.pid, entry.at))
        if len(due) == BATCH:
            wake = min(wake, now + BUSY_WAKE * self.rate)
        grace = math.ceil(self.policy.stale_grace)
        warm = self._started + grace
        if now >= warm:
            if await self.sweep_stale(int(now)):
                wake = min(wake, now + BUSY_WAKE * self.rate)
        else:
            wake = min(wake, warm)
        timers = await self.store.enforcer_timers()
        next_due, oldest = timers.next_due, timers.oldest_report
        if next_due is not None and next_due > now:
            wake = min(wake, next_due)
        if oldest is not None and oldest + grace + 1 > now:
            wake = min(wake, oldest + grace + 1)
        return wake

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _act(self, pid: str, seen: float) -> None:
        """Lease the person, re-plan with the latest figures, act, move the index entry."""
        try:
            async with self._slots:
                token = f"{self.instance}:{secrets.token_hex(4)}"
                if not await self.store.acquire_lease(pid, token, self.lease_ms):
                    CHECKS.labels("leased_elsewhere").inc()
                    return
                try:
                    new = await self._enforce(pid)
                    await self.store.reindex_due(pid, seen, new)
                    if new is not None:
                        self._heard(new)
                finally:
                    with contextlib.suppress(StoreUnavailable):
                        await self.store.release_lease(pid, token)
        except StoreUnavailable as exc:
            CHECKS.labels("failed").inc()
            log.warning("enforcer.store_unavailable", person=pid, error=str(exc))
        except Exception:
            CHECKS.labels("failed").inc()
            log.exception("enforcer.act_failed", person=pid)
        finally:
            self._busy.discard(pid)

    async def _enforce(self, pid: str) -> int | None:
        plan = await self._plan_now(pid)
        if not plan.disconnect:
            CHECKS.labels("not_due").inc()
            return plan.wake
        CHECKS.labels("acted").inc()
        await self._disconnect(pid, plan.disconnect, plan.reason)
        after = await self._plan_now(pid)
        # still something to do (no answer): try again one interim later, not at once
        now = int(self.clock())
        return now + self.policy.interim_interval if after.disconnect else after.wake

    async def _disconnect(self, pid: str, sids: Sequence[str], reason: str) -> list[SessionOutcome]:
        return list(await asyncio.gather(*(self._disconnect_one(pid, sid, reason) for sid in sids)))

    async def _disconnect_one(self, pid: str, sid: str, reason: str) -> SessionOutcome:
        record = await self.store.session(pid, sid)
        client_id = record.get("client") or keys.client_of(sid)
        client = self.clients.get(client_id)
        host = dae_address(client, record) if client is not None else None
        if client is None or host is None or self.dae is None:
            DISCONNECTS.labels(reason, "no_client").inc()
            log.warning("enforcer.no_client", person=pid, session=sid, client=client_id)
            return SessionOutcome(sid, client_id, "no_client")
        target = dae_target(client, host)
        try:
            result = await self.dae.disconnect(
                target, session_identity(record), event_timestamp=int(self.clock())
            )
        except ValueError as exc:
            DISCONNECTS.labels(reason, "unsupported").inc()
            CLIENT_DISCONNECTS.labels(client.id, "unsupported").inc()
            log.warning("enforcer.unsupported", person=pid, session=sid, error=str(exc))
            return SessionOutcome(sid, client_id, "unsupported")
        TALLY.dae(client.id, "dis", result.outcome.value)  # per NAS, to Redis (console)
        outcome = await self._apply(pid, sid, client_id, result)
        DISCONNECTS.labels(reason, outcome).inc()
        CLIENT_DISCONNECTS.labels(client.id, outcome).inc()
        log.info(
            "enforcer.disconnect",
            person=pid,
            session=sid,
            client=client_id,
            nas=host,
            reason=reason,
            result=outcome,
            error_cause=result.error_cause,
            attempts=result.attempts,
        )
        return SessionOutcome(sid, client_id, outcome, result.error_cause, result.attempts)

    async def _apply(self, pid: str, sid: str, client_id: str, result: DaeResult) -> str:
        if result.outcome is DaeOutcome.ACK:
            await self.store.mark_closing(pid, sid, int(self.clock()))
            return "acked"
        if result.session_gone:  # the NAS has no such session: it ended without our Stop
            await self.store.close_session(
                pid, sid, client_id, STALE_CAUSE, shut="gone", now=int(self.clock())
            )
            return "closed"
        return "naked" if result.outcome is DaeOutcome.NAK else "failed"

    # -- stale sessions -------------------------------------------------------------------

    async def sweep_stale(self, now: int) -> bool:
        """Close every session without accounting for longer than ``quota.stale_grace``
        (scaled to the cadence its NAS was seen to report at: ``quota.StaleRule``),
        counted to its last report. Returns True if work was left for the next look."""
        before = now - math.ceil(self.policy.stale_grace)
        touched: dict[str, int] = {}
        full = False
        for client_id, gap in (await self.store.cadences()).items():
            self._cadence[client_id] = max(gap, self._cadence.get(client_id, 0))
        for _ in range(MAX_STALE_BATCHES):
            refs = await self.store.stale_sessions(before, BATCH)
            for ref in refs:
                pid, sid = keys.parse_session_ref(ref)
                client_id = keys.client_of(sid)
                nas_slack = self.stale_rule.slack(self._cadence.get(client_id, 0))
                check = await self.store.close_stale(
                    pid, sid, client_id, before, STALE_CAUSE, now, nas_slack
                )
                if check.outcome == "closed":
                    STALE_CLOSED.inc()
                    touched[pid] = now
                    log.info(
                        "enforcer.stale_closed",
                        person=pid,
                        session=sid,
                        client=client_id,
                        last=check.last,
                    )
            full = len(refs) == BATCH
            if not full:
                break
        await self.store.index_due(touched)  # their other sessions' projection changed
        return full

    # -- CoA: shorter Session-Timeouts when a person adds a device ------------------------

    async def _coa_person(self, pid: str, sids: Sequence[str], due: int) -> None:
        """Give each open session Session-Timeout = projected exhaustion - its start, so a
        NAS ignoring Disconnect still stops in time (RFC 5176 §3.2, CoA-Request)."""
        now = int(self.clock())
        for sid in sids:
            record = await self.store.session(pid, sid)
            client = self.clients.get(record.get("client", ""))
            host = dae_address(client, record) if client is not None else None
            if client is None or host is None or self.dae is None:
                COAS.labels("no_client").inc()
                continue
            start = int(record.get("start") or now)
            try:
                result = await self.dae.coa(
                    dae_target(client, host),
                    session_identity(record),
                    event_timestamp=now,
                    session_timeout=max(1, due - start),
                )
            except ValueError:
                COAS.labels("unsupported").inc()
                continue
            COAS.labels(result.outcome.value).inc()
            TALLY.dae(client.id, "coa", result.outcome.value)  # per NAS, to Redis (console)
            log.info("enforcer.coa", person=pid, session=sid, result=result.outcome.value)

    # -- admin ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _leased(self, pid: str) -> AsyncIterator[None]:
        """Hold the person's lease (waiting up to a few disconnect exchanges) so a
        direct request never races the timer loop of this or another process."""
        if self.dae is None:
            raise RuntimeError("the enforcer is not started")
        token = f"{self.instance}:{secrets.token_hex(4)}"
        deadline = time.monotonic() + self.dae.timeout * (self.dae.retries + 2) * 4
        while not await self.store.acquire_lease(pid, token, self.lease_ms):
            if time.monotonic() > deadline:
                raise EnforcerBusy(pid)
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            with contextlib.suppress(StoreUnavailable):
                await self.store.release_lease(pid, token)

    async def disconnect_now(self, pid: str, *, reason: str = "admin") -> list[SessionOutcome]:
        """Disconnect every open session of a person now (admin, block). Raises
        ``EnforcerBusy`` when another process holds the person for longer than one
        disconnect exchange."""
        async with self._leased(pid):
            now = int(self.clock())
            plan = self.plan(await self.store.person_snapshot(pid, self.day(now)), now, force=True)
            return await self._disconnect(pid, plan.disconnect, reason)

    async def disconnect_sessions(
        self, pid: str, sids: Sequence[str], *, reason: str = "logout"
    ) -> list[SessionOutcome]:
        """Disconnect some of a person's sessions (one device logging out), leaving the
        person's other devices online."""
        async with self._leased(pid):
            return await self._disconnect(pid, list(sids), reason)


def dae_target(client: Client, host: str) -> DaeTarget:
    """Where a NAS takes Disconnect/CoA: its address and coa_port, or (``radsec_dae``)
    its open RadSec connection (RFC 6614 §2.5; UDP when none is open)."""
    return DaeTarget(
        host, client.coa_port, client.secret, client.vendor, client.id if client.radsec_dae else ""
    )
