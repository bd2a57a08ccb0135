"""One bounded run of an atheris harness in a subprocess, for CI (the speedups' and the
archive's differential fuzzes): it passes when the run ended cleanly with no crash file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fuzz_clean(harness: str, seconds: int, tmp_path: Path, *corpus: Path) -> None:
    """Run ``tests/<harness>`` for ``seconds`` on ``corpus`` (the first one is written to);
    fail with the harness's stderr on a crash or an unclean end."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / harness),
            f"-max_total_time={seconds}",
            "-seed=16",
            f"-artifact_prefix={tmp_path}/",
            *map(str, corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0 and not crashes, done.stderr[-3000:]
    assert "Done" in done.stderr, done.stderr[-3000:]
