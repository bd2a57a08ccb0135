"""Persons and one-time login credentials.

A person is a verified mobile number; everywhere outside the audit record it is known
only by an opaque id, a keyed hash of the E.164 number. The credential username embeds
that id so the RADIUS side can find the person's Redis hash slot from the User-Name alone
(one round trip, and every key of the person on one Redis Cluster slot). Each credential
is bound to the RADIUS client it was issued for (controller.domain.access).

The Class attribute of an Access-Accept (below) is signed, so accounting can be tied to
a person only by a Class this server issued to the client that sends it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from radius.record import record

PERSON_ID_HEX = 20  # 80 bits: collision-free for any city, short enough for keys and logs
_USERNAME = re.compile(rf"^([0-9a-f]{{{PERSON_ID_HEX}}})\.([a-z2-7]{{8}})$")
_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def person_id(e164: str, key: bytes) -> str:
    return hmac.new(key, e164.encode(), hashlib.sha256).hexdigest()[:PERSON_ID_HEX]


def chargeable_identity(pid: str, operator_id: str, key: bytes) -> bytes:
    """The person's Chargeable-User-Identity for one operator (RFC 4372): stable across
    logins and devices, different per operator (a venue operator cannot link its users
    to another's), a keyed hash of the person id, never of the number."""
    message = f"cui|{pid}|{operator_id}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32].encode()


def new_username(pid: str) -> str:
    token = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(8))
    return f"{pid}.{token}"


def new_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(12))


def person_of_username(username: str) -> str | None:
    """The person id a credential username was issued for, or None if it is not ours."""
    m = _USERNAME.match(username)
    return m.group(1) if m else None


# -- Class (RFC 2865 §5.25): what ties accounting to the login it belongs to ---------------
#
# The NAS echoes the Access-Accept's Class in every Accounting-Request of the session. Any
# NAS client can send any Class, and person ids are not secret (they are in every
# username), so the Class carries a MAC: HMAC-SHA-256 over the person, the login kind, the
# id of the client it was issued to and a per-login nonce, truncated to 128 bits. It is
# verified against the client the accounting comes from, so a Class is worth nothing at
# another client. ``cw1:`` (unsigned, before this format) is no longer believed.

CLASS_PREFIX = b"cw2:"
CLASS_KINDS = frozenset({"c", "m", "e"})  # credential | MAC (remembered device) | EAP-TTLS login
NONCE_HEX = 16  # 64 random bits per login
_TAG_HEX = 32  # HMAC-SHA-256 truncated to 128 bits (RFC 2104 §5: at least half the output)
_CLASS = re.compile(
    rb"cw2:([0-9a-f]{%d}):([cme]):([0-9a-f]{%d}):([0-9a-f]{%d})"
    % (PERSON_ID_HEX, NONCE_HEX, _TAG_HEX)
)


@record
class LoginClass:
    """A verified Class: whose login it is, how they logged in, and that login's nonce."""

    person: str
    kind: str
    nonce: str


def class_key(person_key: bytes) -> bytes:
    """The Class MAC key, derived from the person key with its own label (one key file)."""
    return hmac.new(person_key, b"citywifi Class MAC v2", hashlib.sha256).digest()


def new_nonce() -> str:
    return secrets.token_hex(NONCE_HEX // 2)


def _class_tag(key: bytes, person: str, kind: str, client_id: str, nonce: str) -> str:
    # length-prefixed client id: ids are free text, so no separator could be ambiguous
    msg = f"cw2|{person}|{kind}|{nonce}|{len(client_id)}:{client_id}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:_TAG_HEX]


def sign_class(key: bytes, person: str, kind: str, client_id: str, nonce: str) -> bytes:
    """The Class for an Access-Accept to ``client_id``: ``cw2:<pid>:<c|m>:<nonce>:<tag>``."""
    if kind not in CLASS_KINDS or len(nonce) != NONCE_HEX:
        raise ValueError(f"bad Class kind {kind!r} or nonce {nonce!r}")
    tag = _class_tag(key, person, kind, client_id, nonce)
    return f"cw2:{person}:{kind}:{nonce}:{tag}".encode()


def verify_class(key: bytes, value: bytes | None, client_id: str) -> LoginClass | None:
    """The login a Class names, if we issued it to ``client_id``; else None (forged, for
    another client, the old unsigned ``cw1:`` format, or not ours at all)."""
    if not value or not value.startswith(CLASS_PREFIX):
        return None
    m = _CLASS.fullmatch(value)
    if m is None:
        return None
    person, kind, nonce, tag = (g.decode() for g in m.groups())
    if not hmac.compare_digest(tag, _class_tag(key, person, kind, client_id, nonce)):
        return None
    return LoginClass(person, kind, nonce)


class ClassVerifier:
    """``verify_class`` with a bounded memory of the Classes it has verified (issue 16).

    Every Interim and Stop of a session carries the same Class (RFC 2865 §5.25: the NAS
    echoes it unchanged), so the HMAC and the pattern match of ``verify_class`` would be
    repeated for the same octets all session long. Only verified Classes are kept, under
    the exact octets *and* the client that presented them: a forged or foreign Class is
    never stored (a sender cannot fill the memory without our key), and a Class issued to
    one client still fails from another, since that pair was never verified. One verifier
    holds one key: a new key means a new verifier. The memory is bounded; when full, the
    oldest entry goes first.
    """

    __slots__ = ("_key", "_limit", "_seen")

    def __init__(self, key: bytes, limit: int = 65536) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self._key = key
        self._limit = limit
        self._seen: dict[tuple[bytes, str], LoginClass] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def verify(self, value: bytes | None, client_id: str) -> LoginClass | None:
        """``verify_class(key, value, client_id)``, the same answer for every input."""
        if not value:
            return None
        seen = self._seen
        pair = (value, client_id)
        claim = seen.get(pair)
        if claim is not None:
            return claim
        claim = verify_class(self._key, value, client_id)
        if claim is not None:
            if len(seen) >= self._limit:
                del seen[next(iter(seen))]
            seen[pair] = claim
        return claim
