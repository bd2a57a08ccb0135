"""One real redis-server and one ``Store`` on it for a whole test module, driven from
synchronous (hypothesis) tests through one event loop.

Property tests run hundreds of examples; a redis-server per example would cost seconds
each, so the examples share one server and keep apart by key (a fresh person id per
example). The loop is an ``asyncio.Runner`` kept open for the module, because the store's
batched link belongs to the loop it was first used on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from tests.support.redis_proc import RedisProcess

T = TypeVar("T")


class StoreRig:
    def __init__(self, runner: asyncio.Runner, store: Store, proc: RedisProcess) -> None:
        self.runner = runner
        self.store = store
        self.proc = proc

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)


@contextmanager
def store_rig(directory: Path) -> Iterator[StoreRig]:
    proc = RedisProcess(directory)
    proc.start()
    runner = asyncio.Runner()
    try:

        async def connect() -> Store:
            store = Store(client_from_url(proc.url))
            await store.load_scripts()
            return store

        store = runner.run(connect())
        try:
            yield StoreRig(runner, store, proc)
        finally:
            runner.run(store.close())
    finally:
        runner.close()
        proc.stop()
