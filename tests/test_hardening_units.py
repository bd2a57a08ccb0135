"""The pure parts behind issue 13's HTTP and storage hardening: the bounded date parser,
connection counting, the fd budget, the memory-shedding decision, the INFO reading, the
owner-only file helpers and the archive's file check (tests/test_sec_hardening.py
performs the attacks against live servers)."""

from __future__ import annotations

import ipaddress
import os
import stat
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.domain import periods
from controller.domain.ledger import LEDGER_SCHEMA
from controller.domain.periods import PeriodError, parse_day, parse_instant, parse_period
from controller.services.metrics import RedisMemory, memory_of
from controller.storage.archive import Archive, _paths_in, empty_select
from controller.storage.datafiles import append_private, private_dir, write_private
from controller.web.app import sheds
from controller.web.http_edge import Admission, ConnectionCounts, connection_cap, source_key

SH = ZoneInfo("Asia/Shanghai")
ZONES = [ZoneInfo(z) for z in ("Asia/Shanghai", "Pacific/Kiritimati", "Etc/GMT+12", "UTC")]


# -- dates


@pytest.mark.parametrize(
    "text",
    ["0001-01-01", "9999-12-31", "1969-12-31", "2026-W01-1", "20261201", "2026-02-30",
     "２０２６-１２-０１", "2026-1-1", "", "  ", "x" * 1000],
)  # fmt: skip
def test_bad_days_are_period_errors(text: str) -> None:
    with pytest.raises(PeriodError) as err:
        parse_day(text, "from")
    assert err.value.code in ("bad_date", "missing_parameter") and "'from'" in err.value.message


@given(
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
    st.sampled_from(ZONES),
    st.booleans(),
)
def test_every_date_parses_or_is_refused_never_overflows(
    day: date, tz: ZoneInfo, end: bool
) -> None:
    """Whatever day and zone: an epoch, or a PeriodError; and the month after exists."""
    text = f"{day.year:04d}-{day.month:02d}-{day.day:02d}"
    try:
        epoch = parse_instant(text, tz, name="to", end=end)
    except PeriodError as exc:
        assert not periods.FIRST_DAY <= day <= periods.LAST_DAY, exc
        return
    assert periods.next_month(day) > day
    assert isinstance(epoch, int)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2026-11-25", 1795536000),
        ("2026-11-25T10:30", 1795573800),
        ("2026-11-25T02:30:00Z", 1795573800),
        ("2026-11-25T02:30:00.5+00:00", 1795573800),
        ("2026-11-25 10:30:00", 1795573800),
    ],
)
def test_instants(text: str, epoch: int) -> None:
    assert parse_instant(text, SH, name="from") == epoch


def test_instant_end_of_a_day_is_the_next_midnight() -> None:
    assert parse_instant("2026-11-25", SH, name="to", end=True) == 1795536000 + 86400


@pytest.mark.parametrize(
    "text", ["9999-01-01T00:00-14:00", "0001-01-01T00:00+14:00", "2026-11-25T10", "2026-11-25T"]
)
def test_bad_instants(text: str) -> None:
    with pytest.raises(PeriodError):
        parse_instant(text, SH, name="until")


def test_period_order_and_length() -> None:
    assert parse_period("2026-01-01", "2026-01-31", longest=31, hint="h").days == 31
    with pytest.raises(PeriodError, match="before"):
        parse_period("2026-01-02", "2026-01-01", longest=31, hint="h")
    with pytest.raises(PeriodError) as err:
        parse_period("2026-01-01", "2026-02-01", longest=31, hint="reports.max_range_days")
    assert err.value.code == "range_too_long" and "reports.max_range_days" in err.value.message


# -- connections


def test_caps_per_source_and_in_total() -> None:
    counts = ConnectionCounts(cap=5, per_source=2, exempt=[ipaddress.ip_network("10.0.0.0/8")])
    got = [counts.admit(h) for h in ("1.1.1.1", "1.1.1.1", "1.1.1.1", "10.1.1.1", "10.1.1.1")]
    assert [a for a, _ in got] == [Admission.OK, Admission.OK, Admission.PER_IP] + [
        Admission.OK
    ] * 2
    assert counts.admit("2.2.2.2")[0] is Admission.OK
    assert counts.admit("3.3.3.3")[0] is Admission.TOTAL  # five open
    counts.release(got[0][1])
    assert counts.admit("1.1.1.1")[0] is Admission.OK
    for _, key in (*got[1:2], *got[3:]):
        counts.release(key)
    assert counts.by_source == {"1.1.1.1": 1, "2.2.2.2": 1} and counts.total == 2


def test_an_ipv6_subscriber_is_its_slash_64() -> None:
    assert (
        source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9") == ("2001:db8:1:2::/64")
    )
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"  # a dual-stack listener's IPv4


@pytest.mark.parametrize(
    ("configured", "limit", "fds_open", "reserved", "cap"),
    [(4096, 1024, 30, 256, 738), (100, 65536, 30, 256, 100), (4096, 200, 20, 256, 0)],
)
def test_connection_cap_leaves_the_reserve(
    configured: int, limit: int, fds_open: int, reserved: int, cap: int
) -> None:
    assert connection_cap(configured, limit, fds_open, reserved) == cap


# -- memory


def test_shedding_spares_operator_routes_and_needs_a_budget() -> None:
    full = RedisMemory(used=900, counted=900, limit=1000)
    assert sheds("/api/v1/otp", full, 0.85) and sheds("/portal", full, 0.85)
    for path in ("/healthz", "/metrics", "/api/v1/admin/block", "/api/v1/reports/subsidy"):
        assert not sheds(path, full, 0.85)
    assert not sheds("/portal", RedisMemory(800, 800, 1000), 0.85)
    assert not sheds("/portal", RedisMemory(900, 900, 0), 0.85)  # no budget: nothing to keep
    assert not sheds("/portal", None, 0.85)  # not polled yet


def test_memory_of_one_server_and_of_a_cluster() -> None:
    one = {"used_memory": 900, "mem_not_counted_for_evict": 100, "maxmemory": 1000}
    assert memory_of(one) == RedisMemory(used=900, counted=800, limit=1000)
    cluster = {
        "a:6379": {"used_memory": 100, "maxmemory": 1000},
        "b:6379": {"used_memory": 950, "maxmemory": 1000},
    }
    assert memory_of(cluster).used == 950


# -- files


def test_private_files_and_dirs_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        d = private_dir(tmp_path / "a" / "b")
        append_private(d / "c" / "log.jsonl", b"1\n")
        append_private(d / "c" / "log.jsonl", b"2\n")
        write_private(d / "key", b"k")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "a", *tmp_path.rglob("*")]}
    assert modes == {"a": 0o700, "b": 0o700, "c": 0o700, "log.jsonl": 0o600, "key": 0o600}
    assert (d / "c" / "log.jsonl").read_bytes() == b"1\n2\n"


def test_paths_a_statement_reads() -> None:
    sql = "SELECT * FROM read_parquet(['/a/x.parquet', '/b/it''s.parquet']) WHERE 'y' = ?"
    assert _paths_in(sql, [["/c/z.parquet"], 5, "no"]) == [
        Path("/a/x.parquet"),
        Path("/b/it's.parquet"),
        Path("/c/z.parquet"),
    ]


def test_readable_checks_every_column_and_the_schema(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    good = tmp_path / "sessions" / "2026-11-25" / "part-1-a.parquet"
    other = tmp_path / "sessions" / "2026-11-25" / "part-2-b.parquet"
    good.parent.mkdir(parents=True)
    con = duckdb.connect()
    con.execute(f"COPY (SELECT range AS x FROM range(10)) TO '{other}' (FORMAT parquet)")
    one_row = empty_select(LEDGER_SCHEMA).replace(" WHERE false", "")
    con.execute(f"COPY ({one_row}) TO '{good}' (FORMAT parquet)")
    assert archive.readable(good)
    assert not archive.readable(other)  # Parquet, but not the ledger's columns
    good.write_bytes(b"PAR1" + b"\0" * 64)
    assert not archive.readable(good)
    assert archive.readable(tmp_path / "sessions" / "gone.parquet")  # merged away: not bad
