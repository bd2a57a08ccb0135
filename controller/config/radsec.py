"""The ``[radsec]`` settings (RFC 6614 RADIUS over TLS) and the checks of its files.

The runtime type (``RadsecSettings``), the fingerprint notation of ``[[clients]]``
``radsec_fingerprint``, and what ``check-config`` says of the certificate files: each
exists and holds PEM that parses, the private key is the certificate's, and no
certificate is expired or not yet valid (one expiring within ``EXPIRY_WARNING_DAYS`` is
a warning). The file's model is ``controller.config.schema.RadsecTable``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "CertificateProblem",
    "RadsecSettings",
    "check_ca_bundle",
    "check_certificate",
    "check_private_key",
    "normalize_fingerprint",
]

EXPIRY_WARNING_DAYS: Final = 30
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class RadsecSettings:
    enabled: bool = False
    bind: str = "0.0.0.0"
    port: int = 2083  # RFC 6614 §2.1
    certificate: Path | None = None  # PEM: the server certificate (+ intermediates)
    private_key: Path | None = None  # PEM: its key (unencrypted; mode 0600)
    ca_certificates: Path | None = None  # PEM bundle: the CAs client certificates chain to
    idle_timeout: float = 120.0  # seconds a connection may stay silent
    max_in_flight: int = 256  # requests in progress on one connection


class CertificateProblem(ValueError):
    """What is wrong with a certificate file, in check-config's words."""


def normalize_fingerprint(value: str) -> str | None:
    """A SHA-256 fingerprint as 64 lower-case hex digits, from ``AB:CD:…``, ``abcd…`` or
    ``sha256:…`` (None: not one)."""
    text = value.strip().lower().removeprefix("sha256:").removeprefix("sha256 ")
    text = text.replace(":", "").replace(" ", "")
    return text if _HEX64.match(text) else None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CertificateProblem(f"cannot read {path}: {err.strerror}") from None


def _certificates(path: Path) -> list[x509.Certificate]:
    data = _read(path)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateProblem(f"{path} holds no PEM certificate")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise CertificateProblem(f"{path}: the certificate does not parse ({err})") from None


def _validity(path: Path, cert: x509.Certificate, now: datetime) -> str | None:
    """Refuse an expired or not yet valid certificate; a warning when it expires soon."""
    subject = cert.subject.rfc4514_string() or "(no subject)"
    if cert.not_valid_after_utc <= now:
        raise CertificateProblem(
            f"{path}: certificate '{subject}' expired on {cert.not_valid_after_utc:%Y-%m-%d}"
        )
    if cert.not_valid_before_utc > now:
        raise CertificateProblem(
            f"{path}: certificate '{subject}' is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if cert.not_valid_after_utc - now < timedelta(days=EXPIRY_WARNING_DAYS):
        return (
            f"{path}: certificate '{subject}' expires on {cert.not_valid_after_utc:%Y-%m-%d}"
            f" (within {EXPIRY_WARNING_DAYS} days)"
        )
    return None


def check_certificate(
    path: Path, now: datetime | None = None
) -> tuple[x509.Certificate, str | None]:
    """The server certificate (the first of the file) and a warning, if any."""
    now = now or datetime.now(UTC)
    certs = _certificates(path)
    warning = None
    for cert in certs:
        warning = _validity(path, cert, now) or warning
    return certs[0], warning


def check_private_key(path: Path, certificate: x509.Certificate | None) -> PrivateKeyTypes:
    """The private key; it must be ``certificate``'s (when that parsed)."""
    data = _read(path)
    if b"PRIVATE KEY-----" not in data:
        raise CertificateProblem(f"{path} holds no PEM private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateProblem(f"{path}: the private key is encrypted (it must not be)") from None
    except ValueError as err:
        raise CertificateProblem(f"{path}: the private key does not parse ({err})") from None
    if certificate is not None:
        ours = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        theirs = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if ours != theirs:
            raise CertificateProblem(f"{path}: this private key is not the certificate's")
    return key


def check_ca_bundle(path: Path, now: datetime | None = None) -> str | None:
    """The CA bundle client certificates must chain to: every certificate parses, none
    expired; a warning, if any."""
    now = now or datetime.now(UTC)
    warning = None
    for cert in _certificates(path):
        warning = _validity(path, cert, now) or warning
    return warning
