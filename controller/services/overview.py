"""The city overview of the operations console: the figures ``/metrics`` exports, read
from the same place (issue 17: "one source of truth").

Persons online and open sessions by venue type are the summary ``OnlineStats`` writes
to ``cw:stats:online`` (``controller.services.metrics``) and every process sets its
gauges from; a NAS's last accounting is ``cw:stats:client_seen``, the source of
``citywifi_radius_client_last_seen_timestamp_seconds``; Redis memory is the
``MemoryWatch`` reading behind ``citywifi_redis_memory_*``. So the console and a
Prometheus alert never disagree, and reading the overview costs three Redis commands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from controller.config import Config
from controller.domain.venue_types import VENUE_TYPES
from controller.services.metrics import UNKNOWN, RedisMemory
from controller.storage.metered import MeteredStore

SILENT_AFTER: Final = 15 * 60  # seconds without accounting: "silent" (two missed interims)


@dataclass(frozen=True, slots=True)
class NasSeen:
    client: str
    last_seen: int | None  # epoch of the last recorded accounting; None: never
    silent_for: int | None  # seconds since, when over SILENT_AFTER (None: not silent)


@dataclass(frozen=True, slots=True)
class CityOverview:
    """The city's figures; for an operator-scoped view (``scope``) only its NAS, and the
    city-wide totals are None (equal access: no operator reads the city's or another's)."""

    scope: frozenset[str] | None  # the operator ids shown; None: the whole city
    persons: int | None
    sessions_by_type: tuple[tuple[str, int], ...]  # venue type id -> open sessions
    counted_at: int  # when OnlineStats last counted (0: not yet)
    redis_used: int | None
    redis_limit: int | None
    outbox_backlog: int | None
    nas: tuple[NasSeen, ...]

    @property
    def sessions(self) -> int | None:
        return None if self.scope is not None else sum(n for _, n in self.sessions_by_type)


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1048576:.1f} MiB"


def memory_text(used: int | None, limit: int | None) -> str:
    if used is None:
        return "?"
    return _mib(used) + (f" / {_mib(limit)}" if limit else "")


def scoped_clients(config: Config, scope: frozenset[str] | None) -> list[str]:
    """The configured clients an overview shows: all, or those at the scope's venues."""
    return [
        c.id
        for c in config.clients
        if scope is None or (c.venue in config.venues and config.venues[c.venue].operator in scope)
    ]


async def city_overview(
    store: MeteredStore,
    memory: RedisMemory | None,
    config: Config,
    now: int,
    scope: frozenset[str] | None = None,
) -> CityOverview:
    """The overview now, of the whole city or of the operators in ``scope``."""
    clients = scoped_clients(config, scope)
    raw = await store.online_get() if scope is None else None
    summary = json.loads(raw) if raw else {}
    counts = summary.get("sessions", {})
    by_type = tuple((t, int(counts.get(t, 0))) for t in (*VENUE_TYPES, UNKNOWN) if counts.get(t, 0))
    ids = sorted(set(clients))
    seen = await store.client_seen_get(ids) if ids else []
    nas = []
    for client, at in zip(ids, seen, strict=True):
        last = int(at) if at is not None else None
        gap = None if last is None else now - last
        nas.append(NasSeen(client, last, gap if gap is not None and gap > SILENT_AFTER else None))
    city = scope is None
    return CityOverview(
        scope=scope,
        persons=int(summary.get("persons", 0)) if city else None,
        sessions_by_type=by_type,
        counted_at=int(summary.get("at", 0)),
        redis_used=memory.used if memory and city else None,
        redis_limit=memory.limit if memory and city else None,
        outbox_backlog=await store.outbox_backlog() if city else None,
        nas=tuple(nas),
    )
