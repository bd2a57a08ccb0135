"""The bounded CI run of ``tests/fuzz_atheris_archive.py``: the archiver's C formatter
against ``controller.storage.archive_text``, coverage-guided, for a few seconds (the
mechanism of ``tests/test_fuzz_atheris_speedups_ci.py``). Skipped (with the reason) when
atheris or the extension is missing, or ``CITYWIFI_PURE_PYTHON`` switches it off."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from controller.storage import archive_text

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 8


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
@pytest.mark.skipif(
    archive_text.compiled() is None,
    reason="controller.storage._archive_fmt is not built or CITYWIFI_PURE_PYTHON is set",
)
def test_differential_fuzz_finds_no_difference(tmp_path: Path) -> None:
    work = tmp_path / "corpus"
    work.mkdir()
    seed = work / "seed"  # a login, a close's session record, a console entry
    seed.write_bytes(b'\x00\x00\xfe\x01\x03\xfe\x02p1\xfe\x09a"b\xff\x14\x04\xfe\x15\x04\xff')
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "fuzz_atheris_archive.py"),
            f"-max_total_time={SECONDS}",
            "-seed=16",
            f"-artifact_prefix={tmp_path}/",
            str(work),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0 and not crashes, done.stderr[-3000:]
    assert "Done" in done.stderr, done.stderr[-3000:]
