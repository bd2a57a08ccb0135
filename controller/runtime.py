"""The event loop the server runs on: uvloop when it is installed, else asyncio's own.

uvloop's UDP and TCP transports cost a fraction of the stock selector loop's per
datagram and per Redis reply (docs/performance.md); behaviour is the same, so it is a
drop-in. ``CITYWIFI_EVENT_LOOP=asyncio`` forces the stock loop (to compare, or debug).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get("CITYWIFI_EVENT_LOOP", "uvloop") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # not on this platform: the stock loop works the same, slower
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    # Requests allocate many short-lived objects and almost no reference cycles: collect
    # the young generation less often (the default 700 costs a few % at 10k requests/s).
    gc.set_threshold(50_000, 20, 100)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


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
