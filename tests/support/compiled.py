"""The compiled extension, if this checkout has it built, for the differential tests."""

from __future__ import annotations

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
