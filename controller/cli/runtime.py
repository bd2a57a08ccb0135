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

REAP_TIMEOUT = 5.0  # seconds the tasks left over get to end once the main coroutine has


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get("CITYWIFI_EVENT_LOOP", "uvloop") == "asyncio":
        return None
    try:
        import uvloop  # an optional dependency (not on Windows): imported only if wanted
    except ImportError:  # not on this platform: the stock loop works the same, slower
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    # Requests allocate many short-lived objects and almost no reference cycles: collect
    # the young generation less often (the default 700 costs a few % at 10k requests/s).
    gc.set_threshold(50_000, 20, 100)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_then_reap(main))


def freeze_startup_objects() -> int:
    """Move everything alive now (modules, the config, the registry, compiled scripts) to
    the collector's permanent generation, once the server is built: a full collection
    then walks only what requests allocate, not the start-up heap (tens of MB with a
    large registry), which shortens the pauses behind the worst latencies (issue 16).
    Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def _then_reap(main: Coroutine[Any, Any, T]) -> T:
    try:
        return await main
    finally:
        await reap_tasks()


async def reap_tasks(timeout: float = REAP_TIMEOUT) -> list[str]:
    """Cancel every task still running, again while one carries on, for ``timeout`` s.

    ``asyncio.Runner`` cancels leftovers once and then waits for them without limit; a
    task that swallowed that cancel (see ``cancel_and_wait``) made a failed start hang
    for ever instead of exiting. Returns the names of the tasks that would not end."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    deadline = loop.time() + timeout
    while True:
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left or loop.time() >= deadline:
            break
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=min(0.5, max(0.0, deadline - loop.time())))
    return [t.get_name() for t in left]
