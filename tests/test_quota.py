from datetime import date, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from controller.domain import quota
from controller.domain.quota import (
    MAX_SPLIT_DAYS,
    DayShare,
    day_boundaries,
    day_start,
    local_day,
    next_midnight,
    reset_time,
    session_timeout,
    split_interval,
    usage_delta,
)

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")


def at(tz: ZoneInfo, *args: int) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp())  # type: ignore[misc]


def test_local_midnight_shanghai() -> None:
    t = at(SH, 2026, 11, 25, 23, 59, 0)
    assert local_day(t, SH) == date(2026, 11, 25)
    assert next_midnight(t, SH) == at(SH, 2026, 11, 26)
    # Shanghai midnight is 16:00 UTC the day before
    assert datetime.fromtimestamp(next_midnight(t, SH), ZoneInfo("UTC")).hour == 16


def test_split_across_midnight() -> None:
    end = at(SH, 2026, 11, 26, 0, 10, 0)
    shares = split_interval(end - 1200, end, SH)
    assert shares == [DayShare(date(2026, 11, 25), 600), DayShare(date(2026, 11, 26), 600)]


def test_split_across_dst_change() -> None:
    # 2026-03-08 is 23 h long in New York
    start, end = at(NY, 2026, 3, 7, 12), at(NY, 2026, 3, 9, 12)
    shares = split_interval(start, end, NY)
    assert [s.seconds for s in shares] == [12 * 3600, 23 * 3600, 12 * 3600]


def test_usage_delta_never_counts_twice_or_decreases() -> None:
    t = at(SH, 2026, 11, 25, 12)
    assert usage_delta(None, 300, t, SH) == [DayShare(date(2026, 11, 25), 300)]
    assert usage_delta(300, 300, t, SH) == []
    assert usage_delta(600, 300, t, SH) == []
    assert usage_delta(300, 900, t, SH) == [DayShare(date(2026, 11, 25), 600)]


def test_session_timeout_rules() -> None:
    noon = at(SH, 2026, 11, 25, 12)
    assert session_timeout(0, noon, SH, 7200) == 7200
    assert session_timeout(7000, noon, SH, 7200) == 200
    assert session_timeout(7200, noon, SH, 7200) == 0
    assert session_timeout(9999, noon, SH, 7200) == 0
    late = at(SH, 2026, 11, 25, 23, 30)
    # 1800 s to midnight, 7200 left: runs into tomorrow's full allowance
    assert session_timeout(0, late, SH, 7200) == 1800 + 7200
    assert session_timeout(5400, late, SH, 7200) == 1800 + 7200
    assert session_timeout(5401, late, SH, 7200) == 1799


def test_reset_time_is_next_local_midnight() -> None:
    r = reset_time(at(SH, 2026, 11, 25, 9), SH)
    assert (r.year, r.month, r.day, r.hour, r.minute) == (2026, 11, 26, 0, 0)


def test_boundaries_capped() -> None:
    end = at(SH, 2026, 11, 25, 12)
    b = day_boundaries(end - 30 * 86400, end, SH)
    assert len(b) == MAX_SPLIT_DAYS
    assert b[0][0] == end - 30 * 86400
    assert b[-1] == (day_start(date(2026, 11, 25), SH), date(2026, 11, 25))


zones = st.sampled_from([SH, NY, ZoneInfo("UTC"), ZoneInfo("Australia/Lord_Howe")])


@given(
    tz=zones,
    end=st.integers(1_700_000_000, 1_900_000_000),
    length=st.integers(0, 6 * 86400),
)
def test_shares_add_up(tz: ZoneInfo, end: int, length: int) -> None:
    shares = split_interval(end - length, end, tz)
    assert sum(s.seconds for s in shares) == length
    assert all(s.seconds > 0 for s in shares)
    assert [s.day for s in shares] == sorted({s.day for s in shares})
    if shares:
        assert shares[-1].day == local_day(end, tz) or end == day_start(local_day(end, tz), tz)


@given(
    start=st.integers(min_value=1_600_000_000, max_value=1_900_000_000),
    length=st.integers(min_value=0, max_value=10 * 86400),
    warm=st.integers(min_value=1_600_000_000, max_value=1_900_000_000),
    zone=st.sampled_from(["Asia/Shanghai", "Europe/London", "America/Sao_Paulo", "UTC"]),
)
def test_day_clock_agrees_with_the_full_computation(
    start: int, length: int, warm: int, zone: str
) -> None:
    tz = ZoneInfo(zone)
    clock = quota.DayClock(tz)
    clock.key(warm)  # whatever day it cached before must not leak into the answer
    end = start + length
    expected = [(epoch, quota.day_key(day)) for epoch, day in quota.day_boundaries(start, end, tz)]
    assert clock.boundaries(start, end) == expected
    assert clock.key(end) == quota.day_key(quota.local_day(end, tz))
    assert clock.key(start) == quota.day_key(quota.local_day(start, tz))
