"""The pure checks and words the schema's validators share: secret strength (placeholders,
published examples, RFC 2865's 16 octets), the patterns of ids, hosts, digests and memory
sizes, "did you mean", and how a TOML value is named in a message."""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import re
from collections.abc import Iterable
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

# Secrets and keys (check-config refuses what anyone who read the docs could know).
SECRET_MIN_LENGTH: Final = 16  # RFC 2865 §3: "preferred that the secret be at least 16 octets"
_PLACEHOLDERS: Final = ("changeme", "replaceme", "placeholder", "example", "yoursecret")
_WELL_KNOWN: Final = {"testing123": "FreeRADIUS's well-known test secret"}
EXAMPLE_TOKENS: Final = ("change-me-reports-token",)  # the token docs/reports.md once showed
EXAMPLE_TOKEN_DIGESTS: Final = MappingProxyType(
    {hashlib.sha256(t.encode()).hexdigest(): t for t in EXAMPLE_TOKENS}
)


def placeholder_reason(value: str) -> str | None:
    """Why ``value`` is a published placeholder or example, or None (pure)."""
    folded = re.sub(r"[^a-z0-9]", "", value.lower())
    # the words are not repeated: a real secret that happens to contain one stays unsaid
    for word, what in _WELL_KNOWN.items():
        if word in folded:
            return f"is {what}: use a random one (e.g. `openssl rand -base64 24`)"
    if any(word in folded for word in _PLACEHOLDERS):
        return (
            "is a placeholder, not a secret: replace it with a random one "
            "(e.g. `openssl rand -base64 24`)"
        )
    return None


def secret_weakness(value: str, min_length: int = SECRET_MIN_LENGTH) -> str | None:
    """Why ``value`` protects nothing (a placeholder, an example, too short, a repeated
    character), or None. Pure; the reason never repeats the value."""
    reason = placeholder_reason(value)
    if reason is not None:
        return reason
    if len(value) < min_length:
        return (
            f"must be at least {min_length} characters, got {len(value)} "
            "(e.g. `openssl rand -base64 24`)"
        )
    distinct = len(set(value))
    if distinct < 6:
        return f"has only {distinct} distinct characters: not a secret"
    return None


# Ids end up in Redis keys, CSV reports and URLs: no spaces, braces (hash tags) or quotes.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
HOST_PATTERN = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
MEMORY_SIZE = re.compile(r"(\d{1,15})\s*(b|kb|mb|gb|)")
MEMORY_UNITS: Final = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}


def http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def kind_of(value: object) -> str:
    """A value's TOML type (and the value, when short), for "expected X, got Y" messages."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "float"
    elif isinstance(value, str):
        return f"string {value!r}" if len(value) <= 40 else "a string"
    else:
        kind = "date/time"
    return f"{kind} {str(value).lower() if isinstance(value, bool) else value}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(choices: Iterable[str]) -> str:
    return ", ".join(sorted(choices))
