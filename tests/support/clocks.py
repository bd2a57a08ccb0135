"""Clocks for tests whose outcome depends on the local time of day.

A Session-Timeout runs on into the next day's allowance when today's time left reaches
past local midnight (``domain.quota.session_timeout``), and usage is split at local
midnight: a test that expects "the time left today" or "used up today" holds only far
from midnight. Run at 23:00 in the configured zone, such a test failed (issue 16's
suite run of 2026-12-02 15:00 UTC = 23:00 Asia/Shanghai). These clocks put the
Controller at a fixed hour of today's local date, running at real speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

SUITE_ZONE = ZoneInfo("Asia/Shanghai")  # conftest's service_sections: [quota] timezone


def local_hour(tz: ZoneInfo, hour: int = 12) -> float:
    """``hour``:00 of today's local date in ``tz``, as an epoch (a settable Clock's start)."""
    local = datetime.fromtimestamp(time.time(), tz)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0).timestamp()


def local_hour_clock(tz: ZoneInfo, hour: int = 12) -> Callable[[], float]:
    """A clock at ``hour``:00 of today's local date in ``tz`` now, advancing with real time."""
    offset = local_hour(tz, hour) - time.time()
    return lambda: time.time() + offset


def midday_zone(now: float | None = None) -> str:
    """A fixed-offset zone (``Etc/GMT±N``) where it is about noon now, for a test whose
    server runs in another process and so cannot be handed a clock: the config's
    ``[quota] timezone`` set to it keeps the day's sessions away from local midnight."""
    hour = datetime.fromtimestamp(time.time() if now is None else now, ZoneInfo("UTC")).hour
    offset = (12 - hour + 12) % 24 - 12  # local = UTC + offset, in [-12, 11]
    return f"Etc/GMT{-offset:+d}"  # the Etc names count the other way (POSIX)
