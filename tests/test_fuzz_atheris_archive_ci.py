"""The bounded CI run of ``tests/fuzz_atheris_archive.py``: the archiver's C formatter
against ``controller.storage.archive_text``, coverage-guided, for a few seconds (the
mechanism of ``tests/test_fuzz_atheris_speedups_ci.py``). Skipped (with the reason) when
atheris or the extension is missing, or ``CITYWIFI_PURE_PYTHON`` switches it off."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from controller.storage import archive_text
from tests.support.atheris_run import fuzz_clean

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
    fuzz_clean("fuzz_atheris_archive.py", SECONDS, tmp_path, work)
