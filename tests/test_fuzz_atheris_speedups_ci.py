"""The bounded CI run of ``tests/fuzz_atheris_speedups.py``: the compiled codec against
``radius.packet``, coverage-guided from the seed corpus, for a few seconds. Skipped
(with the reason) when atheris or the extension is missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from radius import fastpath

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 8


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
@pytest.mark.skipif(not fastpath.available(), reason=fastpath.reason())
def test_differential_fuzz_finds_no_difference(tmp_path: Path) -> None:
    work = tmp_path / "corpus"
    work.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "fuzz_atheris_speedups.py"),
            f"-max_total_time={SECONDS}",
            "-seed=16",
            f"-artifact_prefix={tmp_path}/",
            str(work),
            str(ROOT / "tests" / "fuzz_corpus" / "seeds"),
            str(ROOT / "tests" / "fuzz_corpus" / "crashers"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0 and not crashes, done.stderr[-3000:]
    assert "Done" in done.stderr, done.stderr[-3000:]
