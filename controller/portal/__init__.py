"""Captive portal: phone + SMS code login, hand-off to the NAS per vendor, JSON API,
RFC 8908 Captive Portal API and venue pages (docs/portal.md)."""

from __future__ import annotations

from controller.portal.routes import add_routes

__all__ = ["add_routes"]
