"""The per-client RADIUS trace (issue 17): while the client is in ``cw:trace:on``, every
request from that client and every reply to it is decoded with names, secrets redacted
(``radius.trace``), logged (``radius.trace`` events) and written to the client's trace
stream, which ``citywifi trace`` prints — citywifi's ``radiusd -X`` for one NAS.

``Tracer.observe`` is called by the RADIUS endpoint for every datagram it accepts from a
known client and every reply it sends (the hook in ``radius/server.py``). It must cost
nothing for an untraced client: a set lookup. Which clients are traced is read from
Redis once a second (``refresh``, configured clients only), and traced packets are
written in one pipeline by the same loop, never on the request path.

A client with ``trace = true`` in its ``[[clients]]`` entry (``configured``) is traced
from the first packet, whatever the switch says; the config in force is read again at
each refresh (and at once by ``follow_config`` after a reload), so a reload turns it on
or off. The switch adds to it: it cannot turn a configured trace off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Final

import structlog

from controller.services.tasks import cancel_and_wait
from controller.storage.store import Store, StoreUnavailable
from controller.storage.trace import TraceStore
from radius.trace import trace

log = structlog.get_logger("citywifi.trace")

INTERVAL: Final = 1.0  # seconds between reads of the switch (and writes of the log)
MAX_BUFFER: Final = 5_000  # packets held between writes (a flood is cut, not buffered)


class Tracer:
    def __init__(
        self,
        store: Store,
        clients: Callable[[], Iterable[str]],
        *,
        configured: Callable[[], Iterable[str]] = tuple,
        interval: float = INTERVAL,
    ) -> None:
        self.db = TraceStore(store)
        self.clients = clients
        self.configured = configured  # clients with `trace = true` in the config in force
        self.interval = interval
        self.switched: frozenset[str] = frozenset()  # on by cw:trace:on (console, CLI)
        self.traced: frozenset[str] = frozenset(configured())
        self._buffer: list[tuple[str, str, str]] = []
        self._task: asyncio.Task[None] | None = None

    def observe(self, client_id: str, data: bytes, direction: str) -> None:
        """A datagram from (``in``) or to (``out``) a client; traced if it is switched on."""
        if client_id not in self.traced or len(self._buffer) >= MAX_BUFFER:
            return
        lines = trace(data).lines()
        log.info("radius.trace", client=client_id, direction=direction, packet=lines)
        self._buffer.append((client_id, direction, "\n".join(lines)))

    async def refresh(self) -> None:
        """Write what was traced, then read which clients are traced now."""
        batch, self._buffer = self._buffer, []
        try:
            await self.db.append(batch)
        except StoreUnavailable:
            self._buffer = batch + self._buffer  # kept for the next round
            self.follow_config()
            raise
        self.switched = await self.db.active(sorted(set(self.clients())))
        self.follow_config()

    def follow_config(self) -> None:
        """Traced now: the switched-on clients and those with ``trace = true``."""
        self.traced = self.switched | frozenset(self.configured())

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(StoreUnavailable):
            await self.db.append(self._buffer)
        self._buffer = []

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except StoreUnavailable:
                pass  # the request path logs outages; the next round tries again
            except Exception:
                log.exception("trace.refresh_failed")
            await asyncio.sleep(self.interval)
