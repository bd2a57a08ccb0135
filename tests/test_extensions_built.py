"""In CI the optional C extensions must have been built (issue 16: "``pip install .`` on a
fresh Debian builds the extension from the README commands").

Both extensions are ``optional=True`` in setup.py, so a broken build only warns and every
compiled-path test then skips: CI would stay green on the fallback alone. With
``CI`` set, this test fails instead, naming the module that did not import.
"""

from __future__ import annotations

import importlib
import os

import pytest

EXTENSIONS = ("radius._speedups", "controller.storage._archive_fmt")


@pytest.mark.parametrize("module", EXTENSIONS)
def test_the_compiled_extension_is_built_in_ci(module: str) -> None:
    if not os.environ.get("CI"):
        pytest.skip("only CI insists: a machine without a compiler runs the fallback")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"{module} was not built by `pip install .` ({exc}); see setup.py")
