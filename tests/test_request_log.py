"""One structured event per RADIUS request outcome (issue #7): who, where, what, how long.

Real UDP and Redis; the events are captured from structlog as the server emits them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from controller.cli.serve import Controller
from controller.config import Config
from tests.test_radius_integration import PHONE, acct, auth, login


@pytest.fixture
async def chatty(config: Config) -> AsyncIterator[Controller]:
    """A controller logging at info (the tests' default config logs warnings only)."""
    ctl = Controller(dataclasses.replace(config, log=dataclasses.replace(config.log, level="info")))
    await ctl.start()
    try:
        yield ctl
    finally:
        await ctl.stop()


def events(captured: list[dict[str, Any]], port: str) -> list[dict[str, Any]]:
    return [e for e in captured if e["event"] == "radius.request" and e["port"] == port]


async def test_every_outcome_is_one_event_without_secrets(chatty: Controller) -> None:
    controller = chatty
    issued = await login(controller)
    with structlog.testing.capture_logs() as captured:
        assert (await auth(controller, issued.username, issued.password)) is not None
        assert (await auth(controller, issued.username, "wrong-password")) is not None
        assert (await acct(controller, "Start", "log-1", 0, user=issued.username)) is not None
        assert (
            await acct(controller, "Interim-Update", "log-1", 60, user=issued.username)
        ) is not None

    accept, reject = events(captured, "auth")
    assert accept["result"] == "accept" and accept["person"] == issued.person
    assert accept["client"] == "nas-local" and accept["venue"] == "station"
    assert reject["result"] != "accept" and reject["ms"] >= 0
    start, interim = events(captured, "acct")
    assert (start["result"], interim["result"]) == ("start", "interim")
    assert start["session"] == interim["session"] and "log-1" in start["session"]
    assert interim["person"] == issued.person and isinstance(interim["ms"], float)

    text = repr(captured)
    for secret in (PHONE, PHONE[1:], issued.password, "wrong-password", "testing123"):
        assert secret not in text


async def test_quiet_when_request_events_are_off(config: Config) -> None:
    quiet = dataclasses.replace(config.log, level="info", requests=False)
    ctl = Controller(dataclasses.replace(config, log=quiet))
    await ctl.start()
    try:
        issued = await login(ctl)
        with structlog.testing.capture_logs() as captured:
            assert (await auth(ctl, issued.username, issued.password)) is not None
            assert (await auth(ctl, issued.username, "wrong-password")) is not None
        assert events(captured, "auth") == []
        assert [e["event"] for e in captured] == ["radius.reject"]  # rejects are still told
    finally:
        await ctl.stop()
