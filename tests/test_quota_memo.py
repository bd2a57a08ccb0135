"""``quota.next_midnight`` keeps the last plain local day per zone (issue 16): the memo
must give exactly what the full zoneinfo computation gives, whatever it held before,
in zones with DST at midnight (America/Sao_Paulo until 2019), half-hour DST
(Australia/Lord_Howe) and none."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.domain import quota

ZONES = ["America/Sao_Paulo", "Australia/Lord_Howe", "Europe/London", "Asia/Shanghai", "UTC"]


def full(ts: int, tz: ZoneInfo) -> int:
    """The computation without the memo."""
    return quota.day_start(quota.local_day(ts, tz) + timedelta(days=1), tz)


@settings(derandomize=True, database=None, max_examples=400)
@given(
    warm=st.integers(1_500_000_000, 1_900_000_000),
    near=st.integers(-3 * 86400, 3 * 86400),
    zone=st.sampled_from(ZONES),
)
def test_memo_agrees_with_the_full_computation(warm: int, near: int, zone: str) -> None:
    tz = ZoneInfo(zone)
    assert quota.next_midnight(warm, tz) == full(warm, tz)  # fills the memo
    for ts in (warm + near, warm + 1, warm - 1):
        assert quota.next_midnight(ts, tz) == full(ts, tz)


def test_every_hour_across_dst_changes() -> None:
    """Hour by hour (and around each midnight) through years with DST at midnight."""
    for zone in ("America/Sao_Paulo", "Australia/Lord_Howe", "America/Havana"):
        tz = ZoneInfo(zone)
        start = 1_540_000_000  # Oct 2018: Sao Paulo's last DST start was at midnight
        for ts in range(start, start + 200 * 86400, 1800):
            assert quota.next_midnight(ts, tz) == full(ts, tz), (zone, ts)
            midnight = full(ts, tz)
            for edge in (midnight - 1, midnight, midnight + 1):
                assert quota.next_midnight(edge, tz) == full(edge, tz), (zone, edge)
