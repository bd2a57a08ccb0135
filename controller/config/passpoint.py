"""The ``[passpoint]`` section: "connect automatically" profiles and the EAP-TTLS server.

Read by ``controller.config.loader`` through the reader's typed getters (``Getters``
below, so this module needs nothing of the loader). Off by default; when ``enabled``,
the realm, the CA and the server certificate and key are required and checked here
(``check-config`` reports them like any other key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from controller.config.problems import KeyPath

__all__ = ["PASSPOINT_KEYS", "Getters", "PasspointSettings", "read_passpoint"]


@dataclass(frozen=True, slots=True)
class PasspointSettings:
    enabled: bool = False
    realm: str = ""  # NAI realm of the credentials, a DNS name (wifi.city.example)
    home_domain: str = ""  # Hotspot 2.0 home SP FQDN; empty: the realm
    friendly_name: str = "City WiFi"  # shown by the phone for the profile
    roaming_consortium: tuple[str, ...] = ()  # OIs, hex (3 or 5 octets: 6 or 10 digits)
    ca_cert: Path | None = None  # PEM: the CA the phone trusts for the EAP server
    server_cert: Path | None = None  # PEM: the EAP server certificate (+ intermediates)
    server_key: Path | None = None  # PEM: its private key (unencrypted; mode 0600)
    credential_days: int = 365  # an EAP credential's lifetime (1..3650)
    fragment_size: int = 1398  # largest EAP packet sent (RFC 5281 §9.2.2), 256..4000
    resumption_seconds: int = 3600  # TLS session resumption lifetime (60..86400)
    state_seconds: int = 60  # an EAP conversation's time between rounds (10..600)


PASSPOINT_KEYS: Final = (
    "enabled",
    "realm",
    "home_domain",
    "friendly_name",
    "roaming_consortium",
    "ca_cert",
    "server_cert",
    "server_key",
    "credential_days",
    "fragment_size",
    "resumption_seconds",
    "state_seconds",
)

_DNS: Final = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_OI: Final = re.compile(r"^([0-9a-f]{6}|[0-9a-f]{10})$")


class Getters(Protocol):
    """The reader's typed getters (``controller.config.reader.Reader``)."""

    def string(
        self,
        t: Mapping[str, Any],
        path: KeyPath,
        key: str,
        default: str = "",
        *,
        required: bool = False,
        nonempty: bool = False,
    ) -> str: ...

    def integer(
        self,
        t: Mapping[str, Any],
        path: KeyPath,
        key: str,
        default: int,
        low: int | None = None,
        high: int | None = None,
        hint: str = "",
    ) -> int: ...

    def boolean(self, t: Mapping[str, Any], path: KeyPath, key: str, default: bool) -> bool: ...

    def file_path(self, t: Mapping[str, Any], path: KeyPath, key: str, default: Path) -> Path: ...

    def report(self, path: KeyPath, message: str) -> None: ...


def _pem_file(
    g: Getters, t: Mapping[str, Any], p: KeyPath, key: str, marker: str, what: str
) -> Path | None:
    if not str(t.get(key, "")).strip():
        g.report((*p, key), f"missing required key '{key}' (passpoint is enabled)")
        return None
    path = g.file_path(t, p, key, Path())
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        g.report((*p, key), f"cannot read {path}: {err.strerror}")
        return None
    if marker not in text:
        g.report((*p, key), f"{path} holds no PEM {what}")
        return None
    return path


def read_passpoint(g: Getters, t: Mapping[str, Any]) -> PasspointSettings:
    p: KeyPath = ("passpoint",)
    d = PasspointSettings()
    enabled = g.boolean(t, p, "enabled", d.enabled)
    realm = g.string(t, p, "realm", "", required=enabled).strip()
    if realm and not _DNS.match(realm):
        g.report((*p, "realm"), f"'{realm}' is not a lower-case DNS name (RFC 7542 §2.2)")
    home = g.string(t, p, "home_domain", "").strip()
    if home and not _DNS.match(home):
        g.report((*p, "home_domain"), f"'{home}' is not a lower-case DNS name")
    ois: list[str] = []
    raw = t.get("roaming_consortium", [])
    if not isinstance(raw, list):
        g.report((*p, "roaming_consortium"), "expected an array of hex strings")
        raw = []
    for i, item in enumerate(raw):
        oi = str(item).strip().lower().replace("-", "").replace(":", "")
        if not _OI.match(oi):
            g.report(
                (*p, "roaming_consortium", i),
                f"'{item}' is not an OI of 3 or 5 octets in hex (e.g. 5a03ba0000)",
            )
        else:
            ois.append(oi)
    ca = cert = key = None
    if enabled:
        ca = _pem_file(g, t, p, "ca_cert", "-----BEGIN CERTIFICATE-----", "certificate")
        cert = _pem_file(g, t, p, "server_cert", "-----BEGIN CERTIFICATE-----", "certificate")
        key = _pem_file(g, t, p, "server_key", "PRIVATE KEY-----", "private key")
    return PasspointSettings(
        enabled=enabled,
        realm=realm,
        home_domain=home or realm,
        friendly_name=g.string(t, p, "friendly_name", d.friendly_name, nonempty=True),
        roaming_consortium=tuple(ois),
        ca_cert=ca,
        server_cert=cert,
        server_key=key,
        credential_days=g.integer(t, p, "credential_days", d.credential_days, 1, 3650),
        fragment_size=g.integer(t, p, "fragment_size", d.fragment_size, 256, 4000),
        resumption_seconds=g.integer(t, p, "resumption_seconds", d.resumption_seconds, 60, 86400),
        state_seconds=g.integer(t, p, "state_seconds", d.state_seconds, 10, 600),
    )
