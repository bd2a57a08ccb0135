"""The one signer of every token citywifi hands out and takes back: the portal's NAS
context (``ctx``), the remembered-device cookie, the CSRF form tokens, the SMS-code and
device digests, and the report page's session cookie.

HMAC-SHA256 (RFC 2104) keyed per use, over a *purpose* label and the payload, so a
token minted for one purpose is never accepted for another; tags are truncated to 128
bits (RFC 2104 §5: at least half the hash, and far beyond online guessing) and checked
with ``hmac.compare_digest`` (constant time). A token may carry an expiry (Unix
seconds) inside what is signed; a verifier that expects one says so by passing ``now``,
and one that does not never accepts a token that has one, nor the other way round.

Token forms (URL- and cookie-safe, base64url without padding, RFC 4648 §5):

- ``b64(payload) "." b64(tag)``, tag over ``purpose 0x00 payload``;
- ``b64(payload) "." expires "." b64(tag)``, tag over
  ``purpose 0x01 expires 0x00 payload``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Final

MAC_BYTES: Final = 16  # 128-bit tags
_PURPOSE: Final = re.compile(r"[a-z][a-z0-9_.-]*")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # ValueError: not ASCII (lone surrogates too)
        return None


class Signer:
    """HMAC tokens under one key; ``purpose`` keeps the uses of that key apart."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, purpose: str, payload: bytes, expires: int | None = None) -> bytes:
        if not _PURPOSE.fullmatch(purpose):
            raise ValueError(f"a purpose is a lower-case label, not {purpose!r}")
        head = purpose.encode()
        if expires is None:
            msg = head + b"\x00" + payload
        else:
            msg = head + b"\x01" + str(expires).encode() + b"\x00" + payload
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:MAC_BYTES]

    def sign(self, purpose: str, payload: bytes, *, expires: int | None = None) -> str:
        """A token of ``payload`` for ``purpose``, valid until ``expires`` if given."""
        tag = b64(self._tag(purpose, payload, expires))
        if expires is None:
            return f"{b64(payload)}.{tag}"
        return f"{b64(payload)}.{expires}.{tag}"

    def unsign(self, purpose: str, token: str, *, now: float | None = None) -> bytes | None:
        """The payload of a token we signed for ``purpose``, else None.

        ``now`` given: only a token with an expiry is accepted, and only until then (the
        expiry second included); ``now`` omitted: only a token without one."""
        parts = token.split(".")
        expires: int | None = None
        if now is None and len(parts) == 2:
            body, tag = parts
        elif now is not None and len(parts) == 3 and parts[1].isascii() and parts[1].isdigit():
            body, stamp, tag = parts
            if len(stamp) > 12 or int(stamp) < now:
                return None
            expires = int(stamp)
        else:
            return None
        payload, given = unb64(body), unb64(tag)
        if payload is None or given is None:
            return None
        expected = self._tag(purpose, payload, expires)
        return payload if hmac.compare_digest(expected, given) else None

    def digest(self, purpose: str, text: str) -> str:
        """A keyed digest (hex) of ``text``, e.g. an SMS code bound to a person or a CSRF
        form token bound to a browser nonce; text that was not UTF-8 (lone surrogates
        from a form or header) is hashed as it came, never raises."""
        return self._tag(purpose, text.encode("utf-8", "surrogatepass")).hex()
