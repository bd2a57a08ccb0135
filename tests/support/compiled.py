"""The compiled extension, if this checkout has it built, for the differential tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from radius import fastpath


def _compiled() -> ModuleType | None:
    try:
        from radius import _speedups
    except ImportError:
        return None
    return _speedups


C = _compiled()
needs_c = pytest.mark.skipif(
    C is None or not fastpath.available(),
    reason=f"compiled path not in use here ({fastpath.reason()}); the fallback is tested",
)


ROOT = Path(__file__).resolve().parents[2]

# a prelude that makes ``import radius._speedups`` fail, as after a `pip install .`
# without a compiler
BLOCK_EXTENSION = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'radius._speedups':\n"
    "            raise ImportError('no compiler here')\n"
    "sys.meta_path.insert(0, Block())\n"
)


def run_python(code: str, env: dict[str, str]) -> str:
    """``code`` run by a fresh interpreter from the checkout, with ``env`` on top of
    ours (the data path is chosen at import: only a new process shows the choice)."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout
