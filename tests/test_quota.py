import itertools
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from hypothesis import example, given, note, settings
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
from controller.domain.state import AccountingWrite
from controller.storage import keys
from tests.support.store_rig import StoreRig

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


# -- account.lua held against usage_delta --------------------------------------------------
#
# Production counts usage in ``storage/lua/account.lua``; ``usage_delta`` is the rule as
# DESIGN states it (only the increase over the highest Acct-Session-Time seen counts, as
# the stretch just before the event time, split at local midnight). The same random
# reports go through the real script (``Store.account`` on a real redis-server, the
# boundaries computed as ``RadiusService`` does, with ``DayClock``) and through the model,
# and the per-day usage must be equal. A report here is (generation, status, session time,
# event time); generation 2 is the NAS reusing the Acct-Session-Id after generation 1's
# Stop (docs/radius.md "Reused Acct-Session-Ids"): it is a session of its own, so the model
# keeps the highest time seen per generation.

START, STOP, INTERIM = 1, 2, 3
_MIDNIGHTS = [at(SH, 2026, 11, d) for d in (25, 26, 27)]


@dataclass(frozen=True)
class Report:
    generation: int
    status: int
    reported: int
    event_time: int


@st.composite
def _session(draw: st.DrawFn, generation: int, start: int) -> tuple[list[Report], int]:
    """One session's reports as the NAS sent them (a Start, interims, maybe a Stop), each
    with up to a second of rounding in its event time (Acct-Delay-Time is whole seconds),
    and its end."""
    times = sorted(set(draw(st.lists(st.integers(1, 30 * 3600), min_size=1, max_size=6))))
    jitter = st.integers(-1, 1)
    reports = [Report(generation, START, 0, start + draw(st.integers(0, 1)))]
    reports += [Report(generation, INTERIM, t, start + t + draw(jitter)) for t in times]
    end = start + times[-1]
    if draw(st.booleans()) or generation == 1:
        last = times[-1] + draw(st.integers(0, 600))
        end = start + last
        reports.append(Report(generation, STOP, last, end + draw(jitter)))
    return reports, end


@st.composite
def _arrivals(draw: st.DrawFn) -> list[Report]:
    """The reports in the order they arrive: each generation's reordered and partly
    retransmitted; generation 2 (when drawn) after generation 1's Stop, its Start first,
    with late retransmissions of generation 1 mixed in."""
    start = draw(st.sampled_from(_MIDNIGHTS)) + draw(st.integers(-3 * 3600, 3 * 3600))
    first, end = draw(_session(1, start))
    again = draw(st.lists(st.sampled_from(first), max_size=4))
    one = draw(st.permutations(first + again))
    stop = next(r for r in first if r.status == STOP)
    if stop in one and one.index(stop) != len(one) - 1 and not draw(st.booleans()):
        one.remove(stop)
        one.append(stop)  # often the Stop is last, sometimes reordered before interims
    if not draw(st.booleans()):
        return one
    second, _ = draw(_session(2, end + draw(st.integers(5, 4 * 3600))))
    late = draw(st.lists(st.sampled_from(first), max_size=3))
    rest = draw(st.permutations(second[1:] + late))
    return [*one, second[0], *rest]


def _model(arrivals: list[Report]) -> dict[str, int]:
    used: dict[str, int] = {}
    highest: dict[int, int] = {}
    for r in arrivals:
        for share in usage_delta(highest.get(r.generation), r.reported, r.event_time, SH):
            key = quota.day_key(share.day)
            used[key] = used.get(key, 0) + share.seconds
        highest[r.generation] = max(highest.get(r.generation, 0), r.reported)
    return used


_persons = itertools.count()


_T = _MIDNIGHTS[1] - 1
# found by this test: a Start retransmitted after the Stop, its event time rounded one
# second later than the first report's start, was taken for a reused id and counted again
_LATE_START = [
    Report(1, INTERIM, 4, _T + 4),
    Report(1, START, 0, _T + 1),
    Report(1, STOP, 4, _T + 5),
    Report(1, START, 0, _T + 1),
    Report(1, INTERIM, 1, _T + 2),
]


@settings(max_examples=300, deadline=None)
@example(arrivals=_LATE_START)
@given(arrivals=_arrivals())
def test_account_lua_counts_what_usage_delta_says(rig: StoreRig, arrivals: list[Report]) -> None:
    pid = f"p{next(_persons):019d}"
    note(f"arrivals: {arrivals}")
    clock = quota.DayClock(SH)

    async def play() -> dict[str, int]:
        believed = 1  # the generation this process believes current (as RadiusService)
        days: set[str] = set()
        for r in arrivals:
            boundaries = clock.boundaries(r.event_time - r.reported, r.event_time)
            days.update(k for _, k in boundaries)
            write = AccountingWrite(
                pid=pid,
                sid="nas/a1",
                client_id="nas",
                status=r.status,
                reported=r.reported,
                event_time=r.event_time,
                input_octets=0,
                output_octets=0,
                cause="1" if r.status == STOP else "",
                boundaries=boundaries,
                generation=believed,
            )
            believed = (await rig.store.account(write)).generation
        used = {k: await rig.store.used_on(pid, k) for k in sorted(days)}
        # the session records' d:<day> shares (the archive's split) are the same seconds
        shares: dict[str, int] = {}
        for generation in (1, 2):
            sid = keys.session_generation("nas/a1", generation)
            for field, value in (await rig.store.session(pid, sid)).items():
                if field.startswith("d:"):
                    shares[field[2:]] = shares.get(field[2:], 0) + int(value)
        assert shares == {k: v for k, v in used.items() if v}
        return {k: v for k, v in used.items() if v}

    assert rig.run(play()) == _model(arrivals)
