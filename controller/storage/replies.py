"""What the storage modules read out of Redis replies (redis-py hands back ``bytes`` unless
a client decodes; hashes and streams read through either kind of client)."""

from __future__ import annotations


def as_text(value: object) -> str:
    """A reply value as text: bytes decoded as UTF-8, anything else as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)
