"""The outflow: closed sessions and login results leave Redis for the archive.

Closed sessions and login results leave Redis through the outbox stream ``cw:outbox``
(XADDed in the same pipeline as the close, or after an Access-Request decision). The
``Archiver`` drains it through a consumer group: read, write Parquet (fsynced, renamed
into place, ``controller.storage.archive``), then remember the archived version, XACK
and drop the entries (a trim of the stream below its oldest pending entry:
outbox_done.lua). A crash before the ack re-delivers the entries (XAUTOCLAIM after
``CLAIM_IDLE_MS``), so delivery is **at least once**; duplicates are removed by session
(``record_id``) when reading, and a retransmitted Stop of an already archived version is
skipped before writing. The same loop seals closed days, merges parts and trims the
audit log (its retention).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time as _time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from functools import partial

import structlog
from prometheus_client import Counter, Gauge

from controller.config import Config
from controller.domain import audit
from controller.domain.accounts import console_audit_row
from controller.domain.ledger import (
    LEDGER_SCHEMA,
    LedgerRow,
    day_close_ms,
    ledger_rows,
    record_id,
)
from controller.services.audit import trim as trim_audit
from controller.services.privacy import purge_profiles
from controller.storage.archive import Archive
from controller.storage.archive_text import (
    CsvPart,
    EntryPlan,
    LocalDays,
    RawEntry,
    login_rows,
    plan_of,
    route,
    rows_to_parts,
    session_rows,
)
from controller.storage.store import Store, StoreUnavailable

log = structlog.get_logger("citywifi.archive")

SEAL_GRACE_MS = 3600_000  # seal a closed day this long after it closed (instance clock skew)


CLAIM_IDLE_MS = 60_000  # re-deliver entries a consumer left unacknowledged this long


BUSY_LAG = 0.005  # s: a loop iteration this long means the RADIUS path is busy
BUSY_PAUSE = 0.05  # s the archiver waits then before its next batch ...
MAX_PAUSES = 20  # ... at most this often in a row (1 s)


BATCH = 2000  # entries per read; the round yields to the event loop between reads
ROUND = 10_000  # entries per round, written as one file per kind and day: a COPY costs
# DuckDB ~5 ms however few its rows (~2.5 µs a record at 2,000, ~0.5 at 10,000)
AUDIT_STAMP = [name for name, _ in audit.AUDIT_SCHEMA].index("archived_at")
LEDGER_STAMP = [name for name, _ in LEDGER_SCHEMA].index("archived_at")


def _fields(f: Sequence[bytes], plan: EntryPlan) -> dict[str, str]:
    """An entry's fields as ``str`` pairs (the reference builders' input); ``f`` as
    ``plan_of`` padded it."""
    real = f[: plan.missing]
    return {real[i].decode(): real[i + 1].decode() for i in range(0, len(real) - 1, 2)}


LATE = Counter(
    "citywifi_archive_late_rows_total",
    "Ledger rows archived after their day closed (kept out of the closed figures)",
)


MISSING = Counter(
    "citywifi_archive_missing_sessions_total",
    "Outbox entries whose session record had expired from Redis before archiving",
)


# the one city-wide stream: every process reads the same length, the latest wins
BACKLOG = Gauge(
    "citywifi_outbox_backlog",
    "Entries in the outbox stream not yet archived",
    multiprocess_mode="livemostrecent",
)


class Archiver:
    """Drains the outbox into the archive; keeps days sealed and the audit log trimmed."""

    def __init__(
        self,
        store: Store,
        archive: Archive,
        config: Callable[[], Config],  # the current config (it may be reloaded)
        *,
        clock: Callable[[], float] = _time.time,
        interval: float = 1.0,
        maintenance_every: float = 60.0,
        trim_every: float = 600.0,
        claim_idle_ms: int = CLAIM_IDLE_MS,
    ) -> None:
        self.store = store
        self.archive = archive
        self._config = config
        self.clock = clock
        self.interval = interval
        self.maintenance_every = maintenance_every
        self.trim_every = trim_every
        self.claim_idle_ms = claim_idle_ms
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._last_maintenance = float("-inf")
        self._last_trim = float("-inf")
        self._last_purge = float("-inf")

    @property
    def config(self) -> Config:
        return self._config()

    # -- one pass
    async def drain(self, max_rounds: int = 10_000) -> int:
        """Archive what is in the outbox now; returns the entries handled.

        Rounds follow one another while they come back full; a round that found fewer
        than ``ROUND`` entries emptied the stream, so the drain ends there. (Going on
        while entries keep arriving turned steady traffic into a file every few dozen
        ms of a few dozen rows each, ~40 times the CPU per record of a full round:
        ``bench.archive_bench --steady``.) What arrived meanwhile is the next drain's."""
        total = 0
        async with self._lock:
            for _ in range(max_rounds):
                handled = await self._round()
                total += handled
                if handled < ROUND:
                    break
                await self._yield_to_radius()
        return total

    async def _yield_to_radius(self) -> None:
        """Between two batches, let a busy event loop (the RADIUS path of this worker)
        go first: while one loop iteration takes longer than ``BUSY_LAG``, wait
        ``BUSY_PAUSE``, at most ``MAX_PAUSES`` times in a row (the backlog must not grow
        without bound: the records are safe in the outbox meanwhile)."""
        loop = asyncio.get_running_loop()
        for _ in range(MAX_PAUSES):
            before = loop.time()
            await asyncio.sleep(0)
            if loop.time() - before < BUSY_LAG:
                return
            await asyncio.sleep(BUSY_PAUSE)

    async def flush(self) -> None:
        """Read-your-writes for reports: drain what is there (bounded, so that steady
        traffic cannot hold a request). An unreachable Redis, or an entry the archive
        cannot take, just means no flush: the report is made from what is archived
        (unsettled days are flagged open) and the loop keeps retrying and logging."""
        try:
            await self.drain(max_rounds=50)
        except StoreUnavailable as exc:
            log.warning("archive.flush_skipped", error=str(exc))
        except Exception as exc:
            log.error("archive.flush_failed", error=type(exc).__name__)

    async def _round(self) -> int:
        """One file per kind and day for up to ``ROUND`` entries: read ``BATCH`` at a time
        (yielding to the loop in between), look up what the rows need (session records,
        phones), format and write the rows in the writer thread, then acknowledge."""
        logins: list[RawEntry] = []
        consoles: list[RawEntry] = []
        refs: set[bytes] = set()
        pids: set[bytes] = set()
        ids: list[bytes] = []
        claim = True  # a dead consumer's entries first, on the round's first read only
        while len(ids) < ROUND:
            got = await self.store.outbox_read_raw(
                self.consumer, min(BATCH, ROUND - len(ids)), self.claim_idle_ms, claim=claim
            )
            claim = False
            route(got, ids, logins, consoles, pids, refs)  # one C call per read
            if len(got) < BATCH or len(ids) >= ROUND:
                break
            await self._yield_to_radius()
        if not ids:
            return 0
        now_ms = int(self.clock() * 1000)
        names = sorted(r.decode() for r in refs if r)
        records: dict[str, tuple[list[bytes], EntryPlan, bytes]] = {}
        for name, (fields, mark) in zip(
            names, await self.store.outbox_sessions_raw(names), strict=True
        ):
            plan = plan_of(fields)
            records[name] = (fields, plan, mark)
            pids.add(fields[plan.pid])
        pids.discard(b"")
        phones = await self.store.phones_raw(sorted(pids))
        marks = await asyncio.to_thread(
            self._write_round, logins, consoles, records, phones, now_ms
        )
        await self.store.outbox_done(ids, marks)
        return len(ids)

    def _write_round(
        self,
        logins: list[RawEntry],
        consoles: Sequence[RawEntry],
        records: Mapping[str, tuple[list[bytes], EntryPlan, bytes]],
        phones: dict[bytes, bytes],
        now_ms: int,
    ) -> dict[str, str]:
        """The writer thread's part of a round: the rows, then the files (durable when
        this returns). Returns the archived-version marks of the sessions written.

        The rows are CSV lines formatted from the raw fields (``archive_text``); a
        session that needs more (over midnight, unusual values) and the console's rows
        are built by the reference builders, as is every row of a day should DuckDB
        refuse its text."""
        tz = self.config.quota.timezone
        days = LocalDays(tz)
        ledger_parts: dict[date, CsvPart] = {}
        audit_parts: dict[date, CsvPart] = {}
        ledger: list[LedgerRow] = []  # the ledger rows built the reference way
        rows: list[audit.AuditRow] = []  # ... and audit rows
        raw_sessions: list[tuple[list[bytes], EntryPlan, bytes]] = []  # formatted from raw
        marks: dict[str, str] = {}
        closing: list[tuple[list[bytes], bytes]] = []  # (fields, phone) of each to archive
        plans: list[EntryPlan] = []
        for ref, (f, plan, mark) in records.items():
            if plan.missing == 0:  # no fields
                MISSING.inc()
                log.warning("archive.session_missing", session=ref)
                continue
            if b"closed" not in plan.has:
                continue  # a close of a session Redis never saw open: nothing to keep
            seen = f[plan.seen] if b"seen" in plan.has else b"0"
            if mark == seen:
                continue  # this version is archived already (a retransmitted Stop)
            closing.append((f, phones.get(f[plan.pid], b"")))
            plans.append(plan)
            marks[ref] = seen.decode()
        # the common sessions as text (one C call); the rest by the reference builders
        refused = set(session_rows(closing, days, now_ms, ledger_parts, audit_parts))
        for i, ((f, phone), plan) in enumerate(zip(closing, plans, strict=True)):
            if i not in refused:
                raw_sessions.append((f, plan, phone))
                continue
            text = _fields(f, plan)
            ledger.extend(ledger_rows(text, tz, now_ms))
            rows.append(audit.session_audit_row(record_id(text), text, phone.decode(), tz, now_ms))
        for eid, f in consoles:
            rows.append(console_audit_row(eid.decode(), _fields(f, plan_of(f)), tz, now_ms))
        login_rows(logins, phones, days, now_ms, audit_parts)
        rows_to_parts(rows, AUDIT_STAMP, audit_parts)
        rows_to_parts(ledger, LEDGER_STAMP, ledger_parts)

        def sessions_of(day: date) -> list[LedgerRow]:
            """A day's ledger rows as tuples (the reference builders), should DuckDB
            refuse its text."""
            made = [
                r for f, plan, _ in raw_sessions for r in ledger_rows(_fields(f, plan), tz, now_ms)
            ]
            return [r for r in made + ledger if r.day == day]

        def audits_of(day: date) -> list[audit.AuditRow]:
            made = [
                audit.login_audit_row(
                    eid.decode(),
                    fields := _fields(f, plan_of(f)),
                    phones.get(fields.get("pid", "").encode(), b"").decode(),
                    tz,
                    now_ms,
                )
                for eid, f in logins
            ]
            for f, plan, phone in raw_sessions:
                text = _fields(f, plan)
                made.append(
                    audit.session_audit_row(record_id(text), text, phone.decode(), tz, now_ms)
                )
            return [r for r in made + rows if r.day == day]

        self._count_late(ledger_parts, sessions_of, now_ms)
        self.archive.write_parts("sessions", ledger_parts, sessions_of)
        self.archive.write_parts("audit", audit_parts, audits_of)
        return marks

    def _count_late(
        self, days: Iterable[date], rows_of: Callable[[date], Sequence[LedgerRow]], now_ms: int
    ) -> None:
        """Count and log the ledger rows of days closed already (``rows_of(day)``)."""
        tz, settle = self.config.quota.timezone, self.config.reports.settle_hours
        for day in days:
            if now_ms <= day_close_ms(day, tz, settle):
                continue
            for row in rows_of(day):
                LATE.inc()
                log.warning(
                    "archive.late_row",
                    day=row.day.isoformat(),
                    session=row.record_id,
                    seconds=row.seconds,
                )

    # -- maintenance
    def maintain(self, now: float, *, wait: bool = False) -> None:
        """Seal closed days, merge open days' parts, trim the audit log (blocking).

        Each day is its own step: one that fails (a file that cannot be moved aside, a
        full disk) is logged and the others go on; the retention trim runs whatever
        happened before it. Sealing and merging are skipped when another maintainer
        holds the archive, unless ``wait``."""
        tz, settle = self.config.quota.timezone, self.config.reports.settle_hours
        allowance = self.config.quota.daily_seconds
        now_ms = int(now * 1000)
        try:
            with self.archive.maintenance_lock(wait) as mine:
                if mine:
                    for day in self.archive.days("sessions"):
                        close = day_close_ms(day, tz, settle)
                        if now_ms >= close + SEAL_GRACE_MS:  # idempotent: cheap once done
                            seal = partial(self.archive.seal, day, close, allowance)
                            self._step("seal", day, seal)
                        else:
                            self._step("merge", day, partial(self.archive.merge, "sessions", day))
                    for day in self.archive.days("audit"):
                        self._step("merge", day, partial(self.archive.merge, "audit", day))
        finally:
            self.trim(now)

    def _step(self, what: str, day: date, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception:
            log.exception("archive.maintenance_failed", step=what, day=day.isoformat())

    def trim(self, now: float) -> None:
        """The audit log's retention (MPS Order 82): on its own schedule, never held up by
        Redis, the outbox or another day's sealing, and without the maintenance lock
        (deleting a day twice is harmless)."""
        self._last_trim = _time.monotonic()
        try:
            trim_audit(self.archive, self.config, now)
        except Exception:
            log.exception("archive.trim_failed")

    async def maintain_if_due(self) -> None:
        mono = _time.monotonic()
        if mono - self._last_maintenance < self.maintenance_every:
            return
        self._last_maintenance = mono
        await asyncio.to_thread(self.maintain, self.clock())

    async def purge_if_due(self) -> None:
        """The phone profiles' retention (services.privacy), on the trim's schedule."""
        if _time.monotonic() - self._last_purge >= self.trim_every:
            self._last_purge = _time.monotonic()
            try:
                await purge_profiles(self.store, self.config, self.clock())
            except StoreUnavailable as exc:
                log.warning("privacy.purge_skipped", error=str(exc))

    async def trim_if_due(self) -> None:
        if _time.monotonic() - self._last_trim >= self.trim_every:
            await asyncio.to_thread(self.trim, self.clock())

    # -- the loop
    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop the loop after a last drain (best effort: what stays is archived later)."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        """Every ``interval``: drain the outbox when a full round waits, when
        ``[reports] archive_gather`` seconds passed since the last drain, or when the
        loop is stopping; then the upkeep. The records are safe in Redis meanwhile and
        every read of the archive flushes first. Gathering matters: a COPY and its
        fsyncs cost ~5 ms however few the rows; at 2,000 records/s a drain a second cost
        24.6–27.1 µs of CPU per record, one every 5 s 20.0–20.7
        (``bench.archive_bench --steady``)."""
        loop = asyncio.get_running_loop()
        last = float("-inf")  # loop time of the last drain (a frozen test clock is no use)
        while True:
            try:
                backlog = await self.store.outbox_backlog()
                gather = self.config.reports.archive_gather
                if backlog >= ROUND or loop.time() - last >= gather or self._stop.is_set():
                    last = loop.time()
                    await self.drain()
                    backlog = await self.store.outbox_backlog()
                BACKLOG.set(backlog)
            except StoreUnavailable as exc:
                log.warning("archive.store_unavailable", error=str(exc))
            except Exception:  # keep archiving after a bad batch; it is re-delivered later
                log.exception("archive.round_failed")
            # the archive's own upkeep needs no Redis: neither waits for the outbox (the
            # profile purge does, and is skipped while Redis is down)
            for upkeep in (self.maintain_if_due, self.trim_if_due, self.purge_if_due):
                try:
                    await upkeep()
                except Exception:
                    log.exception("archive.maintenance_failed")
            if self._stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
