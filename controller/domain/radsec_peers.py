"""Which client a RadSec certificate names (RFC 6614 §2.3: by certificate, not address).

A client with ``radsec_fingerprint`` is named only by a certificate of one of those
SHA-256 fingerprints (pinned; with ``radsec_subject`` too, the certificate must also
carry that name). A client with only ``radsec_subject`` is named by a certificate that
carries it as its common name or a subject alternative name. The certificate has
already been verified against ``[radsec] ca_certificates`` by the TLS handshake. Pure;
built from the config once (a reload builds a new one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from controller.config import Client

__all__ = ["RadsecPeers"]


class RadsecPeers:
    def __init__(self, clients: Iterable[Client]) -> None:
        self._by_fingerprint: dict[str, Client] = {}
        self._by_subject: dict[str, Client] = {}
        for client in clients:
            for fingerprint in client.radsec_fingerprint:
                self._by_fingerprint.setdefault(fingerprint, client)
            if client.radsec_subject and not client.radsec_fingerprint:
                self._by_subject.setdefault(client.radsec_subject.lower(), client)

    def __bool__(self) -> bool:
        return bool(self._by_fingerprint or self._by_subject)

    def client_for(self, fingerprint: str, names: Sequence[str]) -> Client | None:
        """The client a certificate of ``fingerprint`` (hex) holding ``names`` (its
        common name and subject alternative names, lower-case) names, or None."""
        client = self._by_fingerprint.get(fingerprint.lower())
        if client is not None:
            if client.radsec_subject and client.radsec_subject.lower() not in names:
                return None
            return client
        for name in names:
            client = self._by_subject.get(name)
            if client is not None:
                return client
        return None
