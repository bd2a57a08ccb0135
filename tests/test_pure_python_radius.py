"""The suite's RADIUS tests once more on the pure-Python data path (issue 16 item 5:
"the fault, fuzz and real-peer tests green with both the compiled path and the
fallback; CI runs the suite's RADIUS tests once with ``CITYWIFI_PURE_PYTHON=1``").

The data path is chosen when ``radius.fastpath`` is first imported, so the second run
is its own pytest process with the variable set; the header line it prints
(``tests/conftest.py``: ``pytest_report_header``) proves which path it ran on. When the
whole suite already runs on the fallback (the variable set, or the extension not
built), this one is that run and is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from radius import fastpath

ROOT = Path(__file__).resolve().parent.parent
RADIUS_TESTS = (
    "tests/test_radius_core.py",
    "tests/test_radius_integration.py",
    "tests/test_sec_radius.py",
    "tests/test_fuzz_server.py",
    "tests/test_faults.py",
    "tests/test_dae.py",
    "tests/test_interop_radius.py",
    "tests/test_radsec.py",
    "tests/test_eap_wiring.py",
)


@pytest.mark.peers
def test_the_radius_tests_pass_on_the_pure_python_data_path() -> None:
    if not fastpath.load().compiled:
        pytest.skip(f"the suite itself runs on the fallback: {fastpath.reason()}")
    env = dict(os.environ, **{fastpath.ENV_PURE_PYTHON: "1"})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *RADIUS_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert "data path: pure-Python fallback: CITYWIFI_PURE_PYTHON=1" in out, out[-3000:]
    assert proc.returncode == 0, out[-6000:]
