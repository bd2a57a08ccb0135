"""Lookups derived once from the config: which client sent a packet, which venue a
session belongs to. Immutable; a reload builds a new one and swaps it in."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from controller.config import Client, Config, Venue
from controller.domain.mac import called_station_mac


class Registry:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._hosts: dict[str, Client] = {}
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Client]] = []
        for client in config.clients:
            if client.network.num_addresses == 1:
                self._hosts[str(client.network.network_address)] = client
            else:
                self._networks.append((client.network, client))
        self._networks.sort(key=lambda nc: nc[0].prefixlen, reverse=True)
        self.clients_by_id: Mapping[str, Client] = {c.id: c for c in config.clients}
        self._by_nas_id: dict[str, Client] = {
            c.nas_identifier: c for c in config.clients if c.nas_identifier
        }

    def client_for(self, host: str) -> Client | None:
        """The client whose address or network holds ``host`` (longest prefix wins)."""
        client = self._hosts.get(host)
        if client is not None or not self._networks:
            return client
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return None
        for network, candidate in self._networks:
            if addr in network:
                return candidate
        return None

    def client_by_nas(self, nas_id: str) -> Client | None:
        """A client named in a portal redirect by its NAS-Identifier or its id."""
        return self._by_nas_id.get(nas_id) or self.clients_by_id.get(nas_id)

    def venue_for(
        self, client: Client, called_station_id: str = "", nas_identifier: str = ""
    ) -> Venue:
        """AP match on the Called-Station-Id MAC, then on NAS-Identifier, else the client's."""
        aps = self.config.access_points
        if aps:
            mac = called_station_mac(called_station_id) if called_station_id else None
            ap = (aps.get(mac) if mac else None) or (
                aps.get(nas_identifier) if nas_identifier else None
            )
            if ap is not None:
                return self.config.venues[ap.venue]
        return self.config.venues[client.venue]
