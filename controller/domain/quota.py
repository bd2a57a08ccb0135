"""Pure quota arithmetic: local days, midnight splits, usage deltas, Session-Timeout.

Everything here takes time as an argument (integer epoch seconds) and the zone as a
``ZoneInfo``, so tests can cross midnight in any timezone without waiting. The Lua
accounting script applies the same split with the day boundaries computed here
(``day_boundaries``); ``usage_delta`` is the reference model it is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# The accounting script carries at most this many day boundaries: a delta that reaches
# further back (an NAS silent for a week) is booked on the oldest day carried.
MAX_SPLIT_DAYS = 8


@dataclass(frozen=True, slots=True)
class DayShare:
    day: date
    seconds: int


def local_day(ts: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ts, tz).date()


def day_start(day: date, tz: ZoneInfo) -> int:
    """Epoch of local midnight starting ``day`` (the first instant of the day, DST-safe)."""
    naive = datetime.combine(day, time())
    aware = naive.replace(tzinfo=tz)
    # A zone whose DST jump skips midnight: the day starts at the first valid instant.
    if aware.astimezone(ZoneInfo("UTC")).astimezone(tz).replace(tzinfo=None) != naive:
        aware = (naive + timedelta(hours=1)).replace(tzinfo=tz)
    return int(aware.timestamp())


# The local day last asked about, per zone, as (its start, its end = the next midnight),
# kept only for days without a UTC offset change: inside such a day local time runs
# linearly, so every instant in [start, end) is on that local date and its next midnight
# is ``end``. A memo of a pure function (same answers); it saves the zoneinfo arithmetic
# that every accounting request's enforcer projection and every Session-Timeout needs.
_plain_days: dict[ZoneInfo, tuple[int, int]] = {}


def next_midnight(ts: int, tz: ZoneInfo) -> int:
    span = _plain_days.get(tz)
    if span is not None and span[0] <= ts < span[1]:
        return span[1]
    day = local_day(ts, tz)
    end = day_start(day + timedelta(days=1), tz)
    start = day_start(day, tz)
    if start <= ts < end and _offset(start, tz) == _offset(end - 1, tz):
        _plain_days[tz] = (start, end)
    return end


def _offset(ts: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(ts, tz).utcoffset()


def day_key(day: date) -> str:
    return day.strftime("%Y%m%d")


def day_boundaries(start: int, end: int, tz: ZoneInfo) -> list[tuple[int, date]]:
    """Start epochs of every local day touched by ``[start, end]``, oldest first.

    Capped at ``MAX_SPLIT_DAYS`` (the newest ones); the first entry's epoch is replaced by
    ``min(start, its epoch)`` so the first day absorbs anything earlier.
    """
    first, last = local_day(start, tz), local_day(end, tz)
    span = (last - first).days
    if span >= MAX_SPLIT_DAYS:
        first = last - timedelta(days=MAX_SPLIT_DAYS - 1)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    bounds = [(day_start(d, tz), d) for d in days]
    bounds[0] = (min(start, bounds[0][0]), bounds[0][1])
    return bounds


def split_interval(start: int, end: int, tz: ZoneInfo) -> list[DayShare]:
    """Seconds of ``(start, end]`` on each local day; the shares add up to ``end - start``."""
    if end <= start:
        return []
    bounds = day_boundaries(start, end, tz)
    shares: list[DayShare] = []
    for i, (lo, day) in enumerate(bounds):
        hi = bounds[i + 1][0] if i + 1 < len(bounds) else end
        seconds = min(end, hi) - max(start, lo)
        if seconds > 0:
            shares.append(DayShare(day, seconds))
    return shares


def usage_delta(
    previous: int | None, reported: int, event_time: int, tz: ZoneInfo
) -> list[DayShare]:
    """Usage to add for an accounting report of ``reported`` session seconds at ``event_time``.

    Only the increase over the highest value seen counts (DESIGN: retransmitted, reordered
    or replayed accounting never counts twice and never decreases usage); the increase is
    the stretch of session time just before ``event_time``, split at local midnight.
    """
    delta = reported - (previous or 0)
    if delta <= 0:
        return []
    return split_interval(event_time - delta, event_time, tz)


# A session's observed reporting gap is believed up to this many interim intervals: a
# NAS reporting less often than that is treated as silent (its session closes as stale
# and is re-opened if it reports after all).
MAX_CADENCE_FACTOR = 10


@dataclass(frozen=True, slots=True)
class StaleRule:
    """When a session without accounting counts as gone (DESIGN: judged on the cadence
    the NAS actually reports at).

    ``grace`` (``quota.stale_grace``, whole seconds) is for a NAS that reports every
    ``interim`` seconds, as asked in Acct-Interim-Interval. A NAS may report less often
    (CoovaChilli keeps its own 300 s when the value is below its floor; RFC 2869 §5.16
    only says SHOULD NOT be below 600): a session whose largest gap between two reports
    (the lesser of its Acct-Session-Time's increase and the time passed) was ``gap``
    gets ``grace × gap / interim`` instead, gap bounded by ``MAX_CADENCE_FACTOR ×
    interim``. ``slack`` is what that adds to ``grace``; ``account.lua`` computes the
    same, kept on the session (open hash and record).
    """

    grace: int
    interim: int

    @property
    def cap(self) -> int:
        return MAX_CADENCE_FACTOR * self.interim

    def slack(self, gap: int) -> int:
        gap = min(gap, self.cap)
        if gap <= self.interim:
            return 0
        return self.grace * (gap - self.interim) // self.interim


def remaining_today(used_today: int, daily_seconds: int) -> int:
    return max(0, daily_seconds - used_today)


def session_timeout(used_today: int, now: int, tz: ZoneInfo, daily_seconds: int) -> int:
    """Session-Timeout for a new session: seconds left today (0 means reject).

    When today's time left reaches past local midnight, the session may run on into the
    next day's fresh allowance (DESIGN, quota semantics).
    """
    left = remaining_today(used_today, daily_seconds)
    if left <= 0:
        return 0
    until_midnight = next_midnight(now, tz) - now
    if left >= until_midnight:
        return until_midnight + daily_seconds
    return left


def reset_time(now: int, tz: ZoneInfo) -> datetime:
    """When today's allowance is renewed: the next local midnight."""
    return datetime.fromtimestamp(next_midnight(now, tz), tz)


class DayClock:
    """The local day most requests fall in, computed once per day instead of per packet.

    Zone arithmetic (``zoneinfo``) costs several microseconds a call; nearly every
    request is about today, so the day's [start, next midnight) range and key are kept
    and anything outside it falls back to the full computation.
    """

    __slots__ = ("_end", "_key", "_start", "tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._start = self._end = 0
        self._key = ""

    def _load(self, ts: int) -> None:
        day = local_day(ts, self.tz)
        self._start = day_start(day, self.tz)
        self._end = day_start(day + timedelta(days=1), self.tz)
        self._key = day_key(day)

    def key(self, ts: int) -> str:
        """``day_key(local_day(ts))``."""
        if not self._start <= ts < self._end:
            self._load(ts)
        return self._key

    def boundaries(self, start: int, end: int) -> list[tuple[int, str]]:
        """``day_boundaries`` with day keys: one entry when ``[start, end]`` is one day."""
        if not self._start <= end < self._end:
            self._load(end)
        if start >= self._start:
            return [(self._start, self._key)]
        return [(epoch, day_key(day)) for epoch, day in day_boundaries(start, end, self.tz)]
