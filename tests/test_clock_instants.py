"""The time-sensitive tests, run again at the instants where a day, a month and a year
end: a guard against tests (and code) that hold only far from local midnight.

The suite books usage to "today" in Asia/Shanghai (conftest's ``[quota] timezone``); runs
at 23:00, 00:03 and 00:40 local once failed tests whose sessions ran over midnight
(tests/support/clocks.py). This module runs a chosen subset of the suite in a subprocess
under libfaketime (``faketime -f +N``: a fixed offset from the real clock, so the test
process and every peer it starts, redis-server included, share one shifted clock that
advances at real speed) at two instants: 00:05 local on the 1st of a month and of a year,
and 23:58 local on the last day of a year. Skipped, with the reason, where faketime is
not installed (``scripts/bootstrap.sh --test`` installs it).

The subset is fast files that book sessions on today's allowance through the shared
clocks and fixtures (about 45 s an instant on the 2-core box); the slow ones (browsers,
FreeRADIUS peers, the report pages, whose tests mostly use fixed dates) stay out of it.
The wider sweep (every file that reads the clock, at 23:55, 00:05 and 01:30 local on the
ends of a month and a year) is run by hand the same way: ``faketime -f +N pytest ...``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parent.parent
SH = ZoneInfo("Asia/Shanghai")
SUBSET = (
    "tests/test_quota.py",
    "tests/test_quota_memo.py",
    "tests/test_due_lua.py",
    "tests/test_accounts.py",
    "tests/test_radius_integration.py",
    "tests/test_portal_api.py",
)
INSTANTS = {
    "0005-on-the-1st": datetime(2027, 1, 1, 0, 5, tzinfo=SH),
    "2358-on-12-31": datetime(2026, 12, 31, 23, 58, tzinfo=SH),
}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime (libfaketime) not installed")
@pytest.mark.parametrize("instant", list(INSTANTS.values()), ids=list(INSTANTS))
def test_time_sensitive_subset_passes_at(instant: datetime) -> None:
    faked = ["faketime", "-f", f"{int(instant.timestamp() - time.time()):+d}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FAKETIME"))}
    shifted = subprocess.run(
        [*faked, sys.executable, "-c", "import time; print(time.time())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    # the shift took (a faketime that did not preload would run the subset at the real hour)
    assert abs(float(shifted.stdout) - instant.timestamp()) < 60, shifted.stdout
    done = subprocess.run(
        [*faked, sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SUBSET],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"at {instant.isoformat()}:\n{done.stdout[-6000:]}"
