"""Ending the background tasks of the service loops (enforcer, archiver, online count,
memory watch) so that a shutdown cannot hang on a task that swallowed its cancel."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if it carries on.

    A cancel that lands while a library is inside its own await (a Redis call, a
    ``wait_for`` racing an event) can be swallowed there; the task then goes back to its
    loop and a plain ``await task`` after one ``cancel()`` waits for ever: a hung
    shutdown (seen as hung test teardowns). The caller's own cancellation propagates.
    """
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    if task is not None and not task.cancelled():
        task.exception()  # retrieved: a failure was logged where it happened
