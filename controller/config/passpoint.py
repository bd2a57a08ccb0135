"""The ``[passpoint]`` settings: "connect automatically" profiles and the EAP-TTLS server.

The runtime type (``PasspointSettings``) and the patterns its schema checks; the file's
model is ``controller.config.schema.PasspointTable``. Off by default; when ``enabled``,
the realm, the CA and the server certificate and key are required (``check-config``
reports them like any other key).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["DNS_NAME", "ROAMING_OI", "PasspointSettings"]

# A lower-case DNS name of at least two labels (RFC 7542 §2.2 realms are DNS names).
DNS_NAME: Final = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
# A roaming consortium OI: 3 or 5 octets in hex (IEEE 802.11u, Hotspot 2.0).
ROAMING_OI: Final = re.compile(r"^([0-9a-f]{6}|[0-9a-f]{10})$")


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
