"""The usage ledger end to end: real redis-server, real RADIUS accounting through the
server, the outbox drained into Parquet, read back as the reports read it."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.cli.serve import Controller
from controller.config import Config
from controller.domain.ledger import day_close_ms, ledger_rows
from controller.services.archiver import Archiver
from controller.services.reports.query import LedgerReader
from controller.storage import keys
from controller.storage.archive import Archive, archive_root, ledger_sql
from controller.storage.store import Store
from tests.test_radius_integration import acct, login
from tests.test_reports_helpers import PHONES, SH, Clock, drain, use

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: city, clock, ctl


def rows_of(ctl: Controller, day: date) -> list[tuple[object, ...]]:
    """Every physical ledger row of a day (duplicates included)."""
    files = [str(p) for _, p in ctl.archive.parts("sessions", day)]
    sealed = ctl.archive.sealed("sessions", day)
    files += [str(sealed)] if sealed else []
    if not files:
        return []
    return ctl.archive.query("SELECT record_id, seconds FROM read_parquet(?) ORDER BY ALL", [files])


def figures(ctl: Controller, day: date, now: float) -> list[tuple[str, int, int, int]]:
    """(venue, sessions, persons, seconds) of a day as the report computes them."""
    reader = LedgerReader(ctl.archive, ctl.config, now)
    return [(r.venue, r.sessions, r.persons, r.seconds) for r in reader.day_venues(day)]


# --------------------------------------------------------------------------- pure


def test_ledger_rows_follow_the_quota_split_and_share_octets_exactly() -> None:
    rec = {
        "pid": "p1",
        "client": "nas",
        "acct_session_id": "s1",
        "start": "1764086400",
        "closed": "1764088800",
        "seen": "1200",
        "in": "1001",
        "out": "7",
        "d:20251125": "400",
        "d:20251126": "800",
        "venue": "station",
        "known": "1",
    }
    rows = ledger_rows(rec, SH, 5)
    assert [(r.day, r.seconds) for r in rows] == [
        (date(2025, 11, 25), 400),
        (date(2025, 11, 26), 800),
    ]
    assert sum(r.octets_in for r in rows) == 1001 and sum(r.octets_out for r in rows) == 7
    assert rows[0].octets_in == 333 and rows[0].record_id == rows[1].record_id
    assert all(r.session_seconds == 1200 and r.archived_at == 5 for r in rows)


def test_a_session_without_seconds_still_makes_one_row() -> None:
    start = int(datetime(2025, 11, 25, 8, tzinfo=SH).timestamp())
    rows = ledger_rows({"start": str(start), "closed": str(start), "in": "9"}, SH, 1)
    assert [(r.day, r.seconds, r.octets_in) for r in rows] == [(date(2025, 11, 25), 0, 9)]


def test_day_close_is_the_next_midnight_plus_settle() -> None:
    close = day_close_ms(date(2025, 11, 25), SH, 6)
    assert close == int(datetime(2025, 11, 26, 6, tzinfo=SH).timestamp()) * 1000


# --------------------------------------------------------------------------- through RADIUS


async def test_session_spanning_midnight_is_on_both_days(ctl: Controller, clock: Clock) -> None:
    clock.set(datetime(2025, 11, 26, 0, 10, tzinfo=SH))
    issued = await login(ctl, phone=PHONES["A"])
    await acct(ctl, "Interim-Update", "mid", 1200, user=issued.username)
    await acct(ctl, "Stop", "mid", 1500, user=issued.username, Acct_Terminate_Cause=1)
    await drain(ctl)  # the background loop may have archived them first: same result
    now = clock()
    assert figures(ctl, date(2025, 11, 25), now) == [("station", 1, 1, 600)]
    assert figures(ctl, date(2025, 11, 26), now) == [("station", 1, 1, 900)]
    # the same split as the quota counters
    assert ctl.store is not None
    assert await ctl.store.used_on(issued.person, "20251125") == 600
    assert await ctl.store.used_on(issued.person, "20251126") == 900


async def test_retransmitted_stops_do_not_duplicate(ctl: Controller, clock: Clock) -> None:
    pid = await use(ctl, "A", "station", 600, "dup")
    for _ in range(3):  # the NAS did not hear our answer (new identifiers: processed again)
        await use(ctl, "A", "station", 600, "dup")
    await drain(ctl)
    day = date(2025, 11, 10)
    assert len(rows_of(ctl, day)) == 1  # the archived version is remembered: not even written
    assert figures(ctl, day, clock()) == [("station", 1, 1, 600)]
    assert ctl.store is not None
    assert await ctl.store.redis.xlen(keys.OUTBOX) == 0  # drained: out of Redis
    assert pid


async def test_redelivered_entries_are_deduplicated_when_read(
    ctl: Controller, clock: Clock, city: Config
) -> None:
    """A crash after the Parquet write but before the ack: the entry comes again."""
    assert ctl.archiver is not None and ctl.store is not None
    await ctl.archiver.stop()  # no background drains from here on
    await use(ctl, "A", "hospital", 300, "crash")
    entries = await ctl.store.outbox_read("dead-consumer", 100, 60_000)
    assert len(entries) == 1  # delivered to a consumer that then "crashes"
    first = Archiver(ctl.store, ctl.archive, lambda: city, clock=clock, claim_idle_ms=0)
    await first.drain()  # claims the dead consumer's entry, archives it
    # the same entry written again (as if the ack had been lost after the write)
    rec = (await ctl.store.outbox_sessions([entries[0].fields["ref"]]))[0].record
    ctl.archive.write("sessions", ledger_rows(rec, SH, int(clock() * 1000)))
    day = date(2025, 11, 10)
    assert len(rows_of(ctl, day)) == 2
    assert figures(ctl, day, clock()) == [("hospital", 1, 1, 300)]
    assert await ctl.store.redis.xlen(keys.OUTBOX) == 0


async def test_open_day_flagged_and_closed_figures_never_change(
    ctl: Controller, clock: Clock
) -> None:
    day = date(2025, 11, 10)
    await use(ctl, "A", "station", 600, "s1")
    await drain(ctl)
    reader = LedgerReader(ctl.archive, ctl.config, clock())
    assert reader.is_open(day)
    # the next morning, before the settle period (6 h) ends: a late Stop still counts
    clock.set(datetime(2025, 11, 11, 5, 0, tzinfo=SH))
    await use(ctl, "B", "station", 300, "s2", Acct_Delay_Time=18 * 3600)
    await drain(ctl)
    assert figures(ctl, day, clock()) == [("station", 2, 2, 900)]
    # after the close: a Stop for that day is kept out of its figures (logged, counted)
    clock.set(datetime(2025, 11, 11, 7, 0, tzinfo=SH))
    assert not LedgerReader(ctl.archive, ctl.config, clock()).is_open(day)
    await use(ctl, "C", "station", 120, "s3", Acct_Delay_Time=20 * 3600)
    await drain(ctl)
    assert len(rows_of(ctl, day)) == 3  # archived all the same
    assert figures(ctl, day, clock()) == [("station", 2, 2, 900)]
    # sealing (an hour after the close) writes exactly those figures and keeps them
    clock.set(datetime(2025, 11, 11, 8, 0, tzinfo=SH))
    assert ctl.archiver is not None
    ctl.archiver.maintain(clock(), wait=True)
    assert ctl.archive.sealed("sessions", day) is not None
    assert figures(ctl, day, clock()) == [("station", 2, 2, 900)]
    clock.set(datetime(2025, 12, 1, tzinfo=SH))
    assert figures(ctl, day, clock()) == [("station", 2, 2, 900)]


async def test_accounting_on_closes_and_archives_open_sessions(
    ctl: Controller, clock: Clock
) -> None:
    issued = await login(ctl, phone=PHONES["B"])
    await acct(ctl, "Interim-Update", "boot", 900, user=issued.username)
    await acct(ctl, "Accounting-On", "", 0)
    await drain(ctl)
    rows = ctl.archive.query(
        "SELECT seconds, cause FROM read_parquet(?)",
        [[str(p) for _, p in ctl.archive.parts("sessions", date(2025, 11, 10))]],
    )
    assert rows == [(900, "11")]  # NAS-Reboot (RFC 2866 §5.10)


async def test_open_days_parts_are_merged_without_changing_figures(
    ctl: Controller, clock: Clock
) -> None:
    from controller.storage import archive as archive_mod

    day = date(2025, 11, 10)
    for i in range(archive_mod.MERGE_PARTS + 2):
        await use(ctl, "ABC"[i % 3], "park", 60, f"m{i}")
        await drain(ctl)  # one part file per drain
    before = figures(ctl, day, clock())
    assert len(ctl.archive.parts("sessions", day)) > archive_mod.MERGE_PARTS
    assert ctl.archiver is not None
    ctl.archiver.maintain(clock(), wait=True)
    assert len(ctl.archive.parts("sessions", day)) == 1
    assert figures(ctl, day, clock()) == before == [("park", 34, 3, 34 * 60)]


async def test_archive_lives_under_the_data_dir(city: Config) -> None:
    assert archive_root(city) == city.redis.data_dir / "archive"


def test_ledger_sql_of_no_data_is_empty(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    sql = ledger_sql(archive, [date(2025, 1, 1)], SH, 6, 0)
    assert archive.query(f"SELECT count(*) FROM ({sql})") == [(0,)]


async def test_outbox_survives_until_an_archiver_runs(
    city: Config, clock: Clock, tmp_path: Path
) -> None:
    """No serve running: closes wait in Redis; the report command's drain takes them."""
    from controller.domain import quota
    from controller.domain.state import AccountingWrite, SessionFields
    from controller.storage.redis_conn import client_from_url

    store = Store(client_from_url(city.redis.url))
    await store.load_scripts()
    try:
        end = int(clock())
        bounds = [
            (epoch, quota.day_key(d)) for epoch, d in quota.day_boundaries(end - 300, end, SH)
        ]
        await store.account(
            AccountingWrite(
                pid="0123456789abcdef0123",
                sid="nas-local/x1",
                client_id="nas-local",
                status=2,
                reported=300,
                event_time=end,
                input_octets=10,
                output_octets=20,
                cause="1",
                boundaries=bounds,
                session=SessionFields(
                    pid="0123456789abcdef0123",
                    known=True,
                    client="nas-local",
                    acct_session_id="x1",
                    venue="mall",
                    venue_type="shopping_mall",
                    district="裕华区",
                    operator="op-mobile",
                ),
            )
        )
        assert await store.redis.xlen(keys.OUTBOX) == 1
        archiver = Archiver(store, Archive(archive_root(city)), lambda: city, clock=clock)
        assert await archiver.drain() == 1
        reader = LedgerReader(Archive(archive_root(city)), city, clock())
        assert [(r.venue, r.seconds) for r in reader.day_venues(date(2025, 11, 10))] == [
            ("mall", 300)
        ]
    finally:
        await store.close()


@pytest.mark.parametrize("settle", [0, 6])
def test_settle_hours_move_the_close(settle: int) -> None:
    day = date(2025, 11, 25)
    assert day_close_ms(day, SH, settle) - day_close_ms(day, SH, 0) == settle * 3600_000


@given(
    seconds=st.lists(st.integers(min_value=0, max_value=86400), min_size=1, max_size=8),
    octets_in=st.integers(min_value=0, max_value=2**63 - 1),
    octets_out=st.integers(min_value=0, max_value=2**40),
)
def test_day_rows_keep_every_second_and_octet(
    seconds: list[int], octets_in: int, octets_out: int
) -> None:
    rec = {"start": "1764000000", "in": str(octets_in), "out": str(octets_out)}
    for i, s in enumerate(seconds):
        rec[f"d:202511{10 + i:02d}"] = str(s)
    rows = ledger_rows(rec, SH, 0)
    assert sum(r.seconds for r in rows) == sum(seconds)
    assert sum(r.octets_in for r in rows) == octets_in
    assert sum(r.octets_out for r in rows) == octets_out
    assert all(r.octets_in >= 0 for r in rows) and len({r.first_day for r in rows}) == 1
