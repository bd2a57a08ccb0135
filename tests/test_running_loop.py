"""``radius.running_loop.running_loop`` answers what ``asyncio.get_running_loop`` would:
the loop running in this thread, a new one after the old stopped, none outside a loop,
and each thread its own (it remembers the loop to spare CPython 3.11's ``getpid()`` per
call, issue 16)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from radius.running_loop import running_loop


async def _both() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
    return running_loop(), asyncio.get_running_loop()


def test_the_running_loop_then_the_next_one_after_it_stopped() -> None:
    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:
        found, actual = first.run_until_complete(_both())
        assert found is actual is first
        found, actual = second.run_until_complete(_both())  # first stopped: looked up again
        assert found is actual is second
    finally:
        first.close()
        second.close()


def test_outside_a_loop_it_raises_as_asyncio_does() -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_both())  # remembered, then stopped
    finally:
        loop.close()
    with pytest.raises(RuntimeError):
        running_loop()


def test_each_thread_finds_its_own_loop() -> None:
    seen: dict[str, tuple[object, object]] = {}
    go = threading.Barrier(2)

    def run(name: str) -> None:
        async def inside() -> None:
            go.wait(5)  # both loops running at once
            seen[name] = (running_loop(), asyncio.get_running_loop())

        asyncio.run(inside())

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["a"][0] is seen["a"][1]
    assert seen["b"][0] is seen["b"][1]
    assert seen["a"][0] is not seen["b"][0]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+: asyncio's own, no cache")
def test_a_forked_child_forgets_the_parents_loop() -> None:
    async def fork() -> int:
        running_loop()  # remembered in the parent
        pid = os.fork()
        if pid == 0:  # the child: the copied loop claims to run, but none runs here
            from radius import running_loop as module

            os._exit(0 if module._found.loop is None else 1)
        _, status = os.waitpid(pid, 0)
        return status

    assert asyncio.run(fork()) == 0
