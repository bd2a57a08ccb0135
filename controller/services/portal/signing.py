"""Signed tokens of the portal: the NAS redirect context carried through the forms, the
remembered-device cookie and the CSRF double-submit token.

HMAC-SHA256 (RFC 2104) over ``purpose`` + payload, so a token minted for one purpose is
never accepted for another; verified with ``hmac.compare_digest``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

MAC_BYTES = 16  # 128-bit tags: far beyond online guessing


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


class Signer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, purpose: str, payload: bytes) -> bytes:
        msg = purpose.encode() + b"\x00" + payload
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:MAC_BYTES]

    def sign(self, purpose: str, payload: bytes) -> str:
        return f"{b64(payload)}.{b64(self._tag(purpose, payload))}"

    def unsign(self, purpose: str, token: str) -> bytes | None:
        """The payload of a token we signed for ``purpose``, else None."""
        body, sep, tag = token.partition(".")
        if not sep:
            return None
        payload, given = unb64(body), unb64(tag)
        if payload is None or given is None:
            return None
        return payload if hmac.compare_digest(self._tag(purpose, payload), given) else None

    def digest(self, purpose: str, text: str) -> str:
        """A keyed digest (hex) of ``text``, e.g. an SMS code bound to a person."""
        return self._tag(purpose, text.encode()).hex()
