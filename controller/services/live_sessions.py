"""The console's live sessions: who is online where now, filtered by venue, operator,
NAS or venue type (and, for an operator-scoped account, never beyond its own venues),
and disconnecting one session (RFC 5176 Disconnect-Request through the enforcer, the
person's other devices staying online). Persons are shown masked: the first characters
of the opaque person id, never a phone number."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import urlencode

import structlog

from controller.config import Config
from controller.domain.accounts import AccountError
from controller.domain.identity import PERSON_ID_HEX
from controller.services.enforcer import Enforcer, EnforcerBusy, SessionOutcome
from controller.storage import keys
from controller.storage.accounts import AccountStore
from controller.storage.live_sessions import latest_open
from controller.storage.store import Store

log = structlog.get_logger("citywifi.console")

PAGE: Final = 200  # sessions read per page view (the most recently reported)


@dataclass(frozen=True, slots=True)
class LiveSession:
    ref: str  # "pid|sid": what a disconnect names
    person: str  # masked person id
    client: str
    venue: str
    venue_type: str
    operator: str
    mac: str
    ip: str
    start: str  # local time
    last_report: str


@dataclass(frozen=True, slots=True)
class SessionFilter:
    venue: str = ""
    operator: str = ""
    client: str = ""
    venue_type: str = ""

    @classmethod
    def of(cls, query: Mapping[str, str]) -> SessionFilter:
        return cls(*(query.get(k, "").strip()[:64] for k in ("venue", "operator", "nas", "type")))

    def query(self) -> str:
        """The filters as a query string (``""``: none), for a form that comes back here."""
        pairs = zip(
            ("venue", "operator", "nas", "type"),
            (self.venue, self.operator, self.client, self.venue_type),
            strict=True,
        )
        return urlencode([(k, v) for k, v in pairs if v])


def _clock(epoch: int, config: Config) -> str:
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, config.quota.timezone).strftime("%m-%d %H:%M:%S")


async def live_sessions(
    store: Store, config: Config, want: SessionFilter, scope: frozenset[str] | None
) -> list[LiveSession]:
    out = []
    for s in await latest_open(store, PAGE):
        r = s.record
        venue = config.venues.get(r.get("venue", ""))
        operator = venue.operator if venue else ""
        if scope is not None and operator not in scope:
            continue  # equal access: another operator's session is not shown at all
        row = LiveSession(
            ref=keys.session_ref(s.pid, s.sid),
            person=s.pid[:6] + "…",
            client=r.get("client", keys.client_of(s.sid)),
            venue=r.get("venue", ""),
            venue_type=r.get("venue_type", venue.type if venue else ""),
            operator=operator,
            mac=r.get("mac", ""),
            ip=r.get("ip", ""),
            start=_clock(int(r.get("start") or 0), config),
            last_report=_clock(s.last_report, config),
        )
        if (
            (want.venue and row.venue != want.venue)
            or (want.operator and row.operator != want.operator)
            or (want.client and row.client != want.client)
            or (want.venue_type and row.venue_type != want.venue_type)
        ):
            continue
        out.append(row)
    return out


def parse_ref(ref: str) -> tuple[str, str]:
    pid, sid = keys.parse_session_ref(ref.strip())
    if len(pid) != PERSON_ID_HEX or not all(c in "0123456789abcdef" for c in pid) or not sid:
        raise AccountError("bad_session", "not a session of the list")
    return pid, sid


async def disconnect_one(
    store: Store, enforcer: Enforcer, ref: str, *, by: str, address: str, now: int
) -> SessionOutcome | None:
    """Disconnect one session now; None when it is no longer open. Audited."""
    pid, sid = parse_ref(ref)
    try:
        outcomes = await enforcer.disconnect_sessions(pid, [sid], reason="admin")
    except EnforcerBusy:
        raise AccountError("busy", "the enforcer is acting on this person; retry") from None
    outcome = outcomes[0] if outcomes else None
    result = outcome.result if outcome else "not_open"
    log.info("console.disconnect", who=by, session=ref, result=result)
    await AccountStore(store).audit(
        {
            "t": str(now),
            "user": by,
            "action": "disconnect",
            "target": ref,
            "result": result,
            "address": address,
        }
    )
    return outcome


@dataclass(frozen=True, slots=True)
class FilterChoices:
    """What the filters can name (the page offers them as suggestions), within scope."""

    venues: tuple[str, ...]
    operators: tuple[str, ...]
    clients: tuple[str, ...]
    venue_types: tuple[str, ...]


def filter_choices(config: Config, scope: frozenset[str] | None) -> FilterChoices:
    venues = [v for v in config.venues.values() if scope is None or v.operator in scope]
    ids = {v.id for v in venues}
    return FilterChoices(
        venues=tuple(sorted(ids)),
        operators=tuple(sorted({v.operator for v in venues})),
        clients=tuple(sorted(c.id for c in config.clients if c.venue in ids)),
        venue_types=tuple(sorted({v.type for v in venues})),
    )
