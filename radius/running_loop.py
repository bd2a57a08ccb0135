"""``asyncio.get_running_loop()`` for the per-request hot path, without a system call.

On CPython 3.11 every ``asyncio.get_running_loop()`` (and ``get_event_loop()``) calls
``getpid()`` to notice a fork (``Modules/_asynciomodule.c``, ``get_running_loop``; 3.12
keeps the loop in the thread state and dropped the check). A request on the RADIUS path
asks for the loop three or four times (its answer's future, the store's, the Redis
batch's), and a py-spy ``--native`` profile of ``bench.run auth`` showed the lines
doing it spending their time in ``getpid`` (issue 16).

``running_loop()`` remembers, per thread, the loop it last found and hands it back while
that loop is running: a loop runs in one thread at a time and cannot be nested, so a
running loop found by this thread is this thread's running loop. A loop that stopped
(a test's, or ``asyncio.run``'s) is looked up again, and a forked child forgets it
(``os.register_at_fork``), as CPython's pid check would. On 3.12 and later it is
``asyncio.get_running_loop`` itself.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable

__all__ = ["running_loop"]


class _Found(threading.local):
    loop: asyncio.AbstractEventLoop | None = None


_found = _Found()


def _cached() -> asyncio.AbstractEventLoop:
    """The running event loop (RuntimeError when none runs in this thread)."""
    loop = _found.loop
    if loop is not None and loop.is_running():
        return loop
    loop = _found.loop = asyncio.get_running_loop()
    return loop


def _forget() -> None:
    _found.loop = None


running_loop: Callable[[], asyncio.AbstractEventLoop]
if sys.version_info >= (3, 12):  # no getpid() there  # pragma: no cover
    running_loop = asyncio.get_running_loop
else:
    running_loop = _cached
    os.register_at_fork(after_in_child=_forget)
