"""The console's "disconnect all of this person's sessions" (issue 17): one RFC 5176
Disconnect-Request to each open session of the person named by one of their sessions in
the live list, through the enforcer (its lease, its DAE client, its Disconnect metrics),
each NAS's answer returned. An ``operator:<id>``-scoped caller only reaches the person's
sessions at its own operators' venues. Audited with the console account
(``disconnect-person``) and logged (``console.disconnect_person``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import structlog

from controller.config import Config
from controller.domain.accounts import AccountError
from controller.services.enforcer import Enforcer, EnforcerBusy, SessionOutcome
from controller.services.live_sessions import parse_ref
from controller.storage.accounts import AccountStore
from controller.storage.store import Store

log = structlog.get_logger("citywifi.console")


@dataclass(frozen=True, slots=True)
class PersonDisconnect:
    person: str  # the person id
    outcomes: tuple[SessionOutcome, ...]  # one per open session asked to end

    @property
    def summary(self) -> str:
        """``acked 2, failed 1`` (or ``none open``)."""
        counted = Counter(o.result for o in self.outcomes)
        return ", ".join(f"{r} {n}" for r, n in sorted(counted.items())) or "none open"


def _in_scope(record: dict[str, str], config: Config, scope: frozenset[str] | None) -> bool:
    if scope is None:
        return True
    venue = config.venues.get(record.get("venue", ""))
    return venue is not None and venue.operator in scope


async def disconnect_person(
    store: Store,
    enforcer: Enforcer,
    config: Config,
    ref: str,
    *,
    scope: frozenset[str] | None,
    by: str,
    address: str,
    now: int,
) -> PersonDisconnect:
    """Disconnect every open session of the person of session ``ref`` (in ``scope``)."""
    pid, _ = parse_ref(ref)
    sessions = await store.open_sessions(pid)
    sids = sorted(sid for sid, record in sessions.items() if _in_scope(record, config, scope))
    try:
        outcomes = await enforcer.disconnect_sessions(pid, sids, reason="admin") if sids else []
    except EnforcerBusy:
        raise AccountError("busy", "the enforcer is acting on this person; retry") from None
    done = PersonDisconnect(pid, tuple(outcomes))
    log.info("console.disconnect_person", who=by, person=pid, result=done.summary)
    await AccountStore(store).audit(
        {
            "t": str(now),
            "user": by,
            "action": "disconnect-person",
            "target": pid,
            "result": done.summary,
            "address": address,
        }
    )
    return done
