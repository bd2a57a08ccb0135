"""Persons online for an ``operator:<id>`` console account (issue 17, the pilot's
equal-access rule): distinct persons with an open session at the NAS of the operator's
own venues, counted from those NAS's open-session sets when asked. There is no city-wide
figure in it: a person also online elsewhere counts once here, and nothing about the
other operators' NAS is read. The city account's figure stays ``OnlineStats``'s
(``citywifi_persons_online``, ``controller.services.overview``)."""

from __future__ import annotations

from controller.config import Config
from controller.services.overview import scoped_clients
from controller.storage.live_sessions import persons_at_clients
from controller.storage.store import Store


async def operator_persons_online(store: Store, config: Config, scope: frozenset[str]) -> int:
    """Distinct persons with an open session at the NAS of ``scope``'s venues."""
    return await persons_at_clients(store, sorted(set(scoped_clients(config, scope))))
