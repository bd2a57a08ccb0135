"""Persons and one-time login credentials.

A person is a verified mobile number; everywhere outside the audit record it is known
only by an opaque id, a keyed hash of the E.164 number. The credential username embeds
that id so the RADIUS side can find the person's Redis hash slot from the User-Name alone
(one round trip, and every key of the person on one Redis Cluster slot).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

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


def load_person_key(configured: str, data_dir: Path) -> bytes:
    """The person-id key: from config, else generated once into ``data_dir/person.key``."""
    if configured:
        return configured.encode()
    path = data_dir / "person.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic: the first process to create it wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()
