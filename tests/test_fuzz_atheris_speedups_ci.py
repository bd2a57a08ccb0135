"""The bounded CI run of ``tests/fuzz_atheris_speedups.py``: the compiled codec against
``radius.packet``, coverage-guided from the seed corpus, for a few seconds. Skipped
(with the reason) when atheris or the extension is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from radius import fastpath
from tests.support.atheris_run import ROOT, fuzz_clean

SECONDS = 8


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
@pytest.mark.skipif(not fastpath.available(), reason=fastpath.reason())
def test_differential_fuzz_finds_no_difference(tmp_path: Path) -> None:
    work = tmp_path / "corpus"
    work.mkdir()
    seeds = ROOT / "tests" / "fuzz_corpus"
    fuzz_clean(
        "fuzz_atheris_speedups.py", SECONDS, tmp_path, work, seeds / "seeds", seeds / "crashers"
    )
