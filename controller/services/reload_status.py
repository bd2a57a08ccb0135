"""The outcome of the last SIGHUP config reload, as the console's registry page shows it
(issue 17): when, applied or refused (with check-config's words for each problem), what
changed (ids of clients, venues, access points, operators and API tokens added, removed
or changed, and the settings sections that differ; ``controller.config.reload.changes``)
and which keys wait for a restart.

``Controller.reload`` records it (``record``) in Redis (``storage.reload_status``), so
every worker and every console reads the same outcome; it names ids and field names
only, never a secret, token digest or key. ``scoped`` is what an ``operator:<id>``
account may see of it: when and whether, not what (the ids are the whole city's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from controller.storage import reload_status
from controller.storage.store import Store, StoreUnavailable

log = structlog.get_logger("citywifi.config")

MAX_PROBLEMS = 20  # problems kept of a refused file (the log has all of them)


@dataclass(frozen=True, slots=True)
class ReloadRecord:
    at: int  # epoch second of the reload
    ok: bool  # applied (True) or refused, the previous config kept (False)
    source: str = ""  # the file read
    problems: tuple[str, ...] = ()  # check-config's words, when refused
    changes: Mapping[str, Any] = field(default_factory=dict)  # reload.changes(old, new)
    restart_needed: tuple[str, ...] = ()  # keys that take effect only after a restart
    counts: Mapping[str, int] = field(default_factory=dict)  # what the new config holds
    process: int = 0  # pid of the process that wrote it

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "result": "ok" if self.ok else "refused",
            "source": self.source,
            "problems": list(self.problems),
            "changes": dict(self.changes),
            "restart_needed": list(self.restart_needed),
            "counts": dict(self.counts),
            "process": self.process,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReloadRecord:
        return cls(
            at=int(raw.get("at", 0)),
            ok=raw.get("result") == "ok",
            source=str(raw.get("source", "")),
            problems=tuple(str(p) for p in raw.get("problems", [])),
            changes=dict(raw.get("changes", {})),
            restart_needed=tuple(str(k) for k in raw.get("restart_needed", [])),
            counts={str(k): int(v) for k, v in dict(raw.get("counts", {})).items()},
            process=int(raw.get("process", 0)),
        )

    def scoped(self) -> ReloadRecord:
        """When and whether only: an operator's account sees no city-wide ids."""
        return ReloadRecord(at=self.at, ok=self.ok)


def applied(
    at: int,
    source: str,
    changes: Mapping[str, Any],
    restart_needed: Sequence[str],
    counts: Mapping[str, int],
) -> ReloadRecord:
    return ReloadRecord(
        at=at,
        ok=True,
        source=source,
        changes=changes,
        restart_needed=tuple(restart_needed),
        counts=counts,
        process=os.getpid(),
    )


def refused(at: int, source: str, problems: Sequence[str]) -> ReloadRecord:
    return ReloadRecord(
        at=at,
        ok=False,
        source=source,
        problems=tuple(problems[:MAX_PROBLEMS])
        + ((f"… and {len(problems) - MAX_PROBLEMS} more",) if len(problems) > MAX_PROBLEMS else ()),
        process=os.getpid(),
    )


async def record(store: Store | None, outcome: ReloadRecord) -> None:
    """Keep the outcome for the console; Redis down: logged, the reload stands."""
    if store is None:
        return
    try:
        await reload_status.put(store, json.dumps(outcome.to_json(), sort_keys=True))
    except StoreUnavailable:
        log.warning("config.reload_status_unrecorded")


async def last_reload(store: Store) -> ReloadRecord | None:
    """The last recorded reload of any process; None when none was recorded (or the
    record is unreadable)."""
    raw = await reload_status.get(store)
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    try:
        return ReloadRecord.from_json(parsed)
    except (TypeError, ValueError):
        return None
