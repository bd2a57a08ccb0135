"""Redis storage of the NAS health counters (issue 17; the layout is described in
``controller.domain.nas_health``).

- ``cw:stats:{nas:<client>}`` / ``cw:stats:{scope:<scope>}``: hashes of totals;
- ``…:m:<hour>``: the per-minute ring, a hash per hour (fields
  ``<epoch minute>|<series>``), expiring three hours on;
- ``…:b:<day>``: the same in 30-minute bins, a hash per UTC day expiring two days on
  (the day chart: at most 48 x 8 fields a day);
- ``cw:stats:nas_heard``: sorted set client -> epoch of its last request (``ZADD GT``:
  a slower worker's flush never lowers it).

A flush is one non-transactional pipeline (one round trip; on a Cluster redis-py splits
it per slot) of one ``nas_stats_add.lua`` call per target — its three keys share a hash
tag, its increments one JSON argument — and one ``ZADD GT``. (One HINCRBY per field
sent cost the worker's event loop about 0.5 ms per active client each second.) Redis
errors become ``StoreUnavailable`` (the store's guard).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from controller.domain.nas_health import (
    BINS_KEPT,
    MINUTES_KEPT,
    SERIES,
    StatsDelta,
    bin_fields,
    by_minute,
    minute_fields,
)
from controller.storage import keys
from controller.storage.replies import as_text
from controller.storage.store import Store


def _counts(raw: Any) -> dict[str, int]:
    return {as_text(k): int(v) for k, v in (raw or {}).items()}


class NasStatsStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, delta: StatsDelta) -> None:
        """Add one flush's increments: one script call per target, one pipeline."""
        hour, day = delta.minute // 60, delta.minute // 1440
        targets = [
            (keys.nas_totals(c), keys.nas_minutes(c, hour), keys.nas_bins(c, day), row)
            for c, row in delta.clients.items()
        ]
        for s, row in delta.scopes.items():
            targets.append(
                (keys.scope_totals(s), keys.scope_minutes(s, hour), keys.scope_bins(s, day), row)
            )
        calls = [
            (
                (totals, minutes, bins),
                json.dumps(
                    {
                        "t": row,
                        "m": minute_fields(row, delta.minute),
                        "b": bin_fields(row, delta.minute),
                    },
                    separators=(",", ":"),
                ),
            )
            for totals, minutes, bins, row in targets
        ]

        async def op() -> None:
            pipe = self.store.redis.pipeline(transaction=False)
            for keys_, add in calls:
                self.store._evalsha(pipe, "nas_stats_add", keys_, (MINUTES_KEPT, BINS_KEPT, add))
            if delta.heard:
                pipe.zadd(keys.NAS_HEARD, dict(delta.heard), gt=True)
            await pipe.execute()

        if calls or delta.heard:
            await self.store._guard(op)

    async def clients(
        self, clients: Sequence[str], minute: int
    ) -> list[tuple[dict[str, int], dict[str, int], int | None, int]]:
        """For each client: (totals, the series of epoch minute ``minute``, last request
        epoch or None, open sessions). One pipeline."""

        async def op() -> list[tuple[dict[str, int], dict[str, int], int | None, int]]:
            if not clients:
                return []
            pipe = self.store.redis.pipeline(transaction=False)
            for c in clients:
                pipe.hgetall(keys.nas_totals(c))
                pipe.hmget(keys.nas_minutes(c, minute // 60), [f"{minute}|{s}" for s in SERIES])
                pipe.scard(keys.nas_sessions(c))
            pipe.zmscore(keys.NAS_HEARD, list(clients))
            replies = await pipe.execute()
            heard = replies[-1]
            out = []
            for i, _ in enumerate(clients):
                totals, ring, open_ = replies[3 * i : 3 * i + 3]
                at = heard[i]
                out.append(
                    (
                        _counts(totals),
                        {s: int(n) for s, n in zip(SERIES, ring, strict=True) if n},
                        None if at is None else int(at),
                        int(open_),
                    )
                )
            return out

        return await self.store._guard(op)

    async def totals(self, scopes: Sequence[str]) -> list[dict[str, int]]:
        """The totals hash of each scope (``city``, ``op:<id>``)."""

        async def op() -> list[dict[str, int]]:
            pipe = self.store.redis.pipeline(transaction=False)
            for s in scopes:
                pipe.hgetall(keys.scope_totals(s))
            return [_counts(r) for r in await pipe.execute()]

        return await self.store._guard(op) if scopes else []

    async def client_totals(self, clients: Sequence[str]) -> list[dict[str, int]]:
        async def op() -> list[dict[str, int]]:
            pipe = self.store.redis.pipeline(transaction=False)
            for c in clients:
                pipe.hgetall(keys.nas_totals(c))
            return [_counts(r) for r in await pipe.execute()]

        return await self.store._guard(op) if clients else []

    async def heard(self, clients: Sequence[str]) -> list[int | None]:
        async def op() -> list[int | None]:
            scores: list[Any] = await self.store.redis.zmscore(keys.NAS_HEARD, list(clients))
            return [None if v is None else int(v) for v in scores]

        return await self.store._guard(op) if clients else []

    async def recent(
        self, target: str, minutes: Sequence[int], *, client: bool
    ) -> dict[int, dict[str, int]]:
        """The series of the given epoch minutes of a client (``client``) or scope, read
        field by field from the minute ring (one HMGET per hour touched)."""
        name = keys.nas_minutes if client else keys.scope_minutes
        by_hour: dict[int, list[str]] = {}
        for m in minutes:
            by_hour.setdefault(m // 60, []).extend(f"{m}|{s}" for s in SERIES)

        async def op() -> dict[int, dict[str, int]]:
            pipe = self.store.redis.pipeline(transaction=False)
            for hour, fields in by_hour.items():
                pipe.hmget(name(target, hour), fields)
            got: dict[str, int] = {}
            for fields, values in zip(by_hour.values(), await pipe.execute(), strict=True):
                got.update({f: int(v) for f, v in zip(fields, values, strict=True) if v})
            return by_minute(got)

        return await self.store._guard(op) if minutes else {}

    async def bins(self, target: str, now: int, *, client: bool) -> dict[int, dict[str, int]]:
        """The day-chart ring of a client (``client``) or scope over the last 24 hours:
        bin (epoch minute // BIN) -> series -> count (yesterday's and today's hashes)."""
        day = now // 86400
        name = keys.nas_bins if client else keys.scope_bins

        async def op() -> dict[int, dict[str, int]]:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.hgetall(name(target, day - 1))
            pipe.hgetall(name(target, day))
            merged: dict[str, int] = {}
            for raw in await pipe.execute():
                merged.update(_counts(raw))
            return by_minute(merged)

        return await self.store._guard(op)
