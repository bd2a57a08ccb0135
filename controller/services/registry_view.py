"""The console's registry page: venues, access points and RADIUS clients as loaded (the
config in force, ``LiveConfig``), scoped to an operator's own for an ``operator:<id>``
account, and the outcome of config reloads as this process's ``/metrics`` counts them
(``citywifi_config_last_reload_successful``, ``citywifi_config_reloads_total``). Never
a secret: client secrets, UAM secrets and token digests are not part of any row."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from controller.config import Config
from controller.services.metrics import CONFIG_RELOAD_OK, CONFIG_RELOADS


@dataclass(frozen=True, slots=True)
class VenueRow:
    id: str
    name: str
    type: str
    district: str
    operator: str
    access_points: int


@dataclass(frozen=True, slots=True)
class ClientRow:
    id: str
    network: str
    venue: str
    vendor: str
    nas_identifier: str


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    last_ok: bool
    ok: int
    refused: int


@dataclass(frozen=True, slots=True)
class RegistryView:
    source: str
    venues: tuple[VenueRow, ...]
    clients: tuple[ClientRow, ...]
    reload: ReloadStatus


def reload_status() -> ReloadStatus:
    """This process's reload outcome, from the metrics objects themselves."""
    last_ok = all(s.value == 1 for m in CONFIG_RELOAD_OK.collect() for s in m.samples)
    counts = {
        s.labels.get("result", ""): int(s.value)
        for m in CONFIG_RELOADS.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    return ReloadStatus(last_ok, counts.get("ok", 0), counts.get("refused", 0))


def registry_view(config: Config, scope: frozenset[str] | None, lang: str = "en") -> RegistryView:
    """The registry as the page shows it; venue names in ``lang`` (``zh`` or ``en``)."""
    aps = Counter(ap.venue for ap in config.access_points.values())
    venues = tuple(
        VenueRow(
            v.id,
            v.name.get(lang) or v.name.get("en", v.id),
            v.type,
            v.district,
            v.operator,
            aps[v.id],
        )
        for v in sorted(config.venues.values(), key=lambda v: v.id)
        if scope is None or v.operator in scope
    )
    shown = {v.id for v in venues}
    clients = tuple(
        ClientRow(c.id, str(c.network), c.venue, c.vendor, c.nas_identifier)
        for c in sorted(config.clients, key=lambda c: c.id)
        if scope is None or c.venue in shown
    )
    return RegistryView(str(config.source), venues, clients, reload_status())
