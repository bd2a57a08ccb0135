"""The browser the Playwright tests drive: Debian's chromium (``bootstrap.sh --test``
installs it), headless with the background services off, and the mark that skips a test
module where it is not installed."""

from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="chromium not installed (bootstrap.sh --test)"
)
