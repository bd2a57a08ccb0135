"""``radius.record``: frozen to the type checker, plain slots at run time (issue 16)."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

from controller.domain.state import Origin
from radius.events import AccessReject, AccountingResponse
from radius.record import record


@record
class _Pair:
    a: int
    b: str = "x"


def test_a_record_is_a_hashable_slotted_value() -> None:
    p = _Pair(1)
    assert p == _Pair(1, "x") and p != _Pair(2)
    assert hash(p) == hash(_Pair(1, "x"))  # usable as a key, as a frozen dataclass is
    assert {p: 1}[_Pair(1)] == 1
    assert not hasattr(p, "__dict__")
    assert dataclasses.replace(p, a=2) == _Pair(2, "x") and p.a == 1
    # the project's own: built positionally and by keyword, compared by value
    o = Origin("nas-a", "s1", "00" * 16, "10.0.0.1:1000")
    assert o == Origin(client="nas-a", session="s1", authenticator="00" * 16, source=o.source)
    assert AccessReject(result="blocked") != AccountingResponse(result="blocked")


def test_mypy_refuses_an_assignment_to_a_record_field(tmp_path: Path) -> None:
    """The immutability the run time no longer enforces is enforced statically."""
    src = tmp_path / "snippet.py"
    src.write_text(
        textwrap.dedent(
            """
            from radius.record import record

            @record
            class P:
                a: int

            p = P(1)
            p.a = 2
            """
        )
    )
    root = Path(__file__).resolve().parents[1]
    config = ["--config-file", str(root / "pyproject.toml")]
    out, _, status = mypy_api.run(
        ["--strict", "--no-incremental", "--python-version", "3.11", str(src), *config]
    )
    assert status == 1, out
    assert 'Property "a" defined in "P" is read-only' in out


@pytest.mark.parametrize("name", ["radius/events.py", "controller/domain/state.py"])
def test_hot_types_are_records(name: str) -> None:
    """The hot path's value types use ``record``, not ``dataclass(frozen=True)``."""
    text = (Path(__file__).resolve().parents[1] / name).read_text()
    assert "@record" in text and "@dataclass(frozen=True" not in text
