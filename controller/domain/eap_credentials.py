"""EAP credentials for "connect automatically" (Passpoint): who they name, how long they
live, how their secret is kept. Pure: time and randomness are arguments.

A verified person gets a username in the city's realm and a random secret, installed on
the phone inside a Passpoint profile (``services.passpoint``). The phone then joins by
itself with EAP-TTLS/PAP, the secret crossing only inside TLS. We keep an argon2id hash
of the secret (RFC 9106), never the secret itself.

- **Username**: ``<random local part>@<realm>``. The local part is random, not derived
  from the person id or the number, so a username seen by an operator (it travels inside
  TLS, but an operator running its own EAP proxy could see the realm-routed outer one if
  a phone sends it) links to nobody. The outer identity phones send is ``anonymous@realm``
  (RFC 7542 §2.4), which is what roaming partners route on.
- **Secret**: 24 characters of a 31-letter alphabet (about 119 bits) from the injected random
  octets. With that much entropy a fast hash would already resist guessing; argon2id is
  there so a leaked Redis dump gives nothing even to a GPU farm, at a cost per login
  (measured in docs/performance.md) that the parameters below keep modest.
- **Expiry**: ``credential_days`` after issue, fixed (no sliding renewal: a lost phone's
  profile stops working by itself), and revocable at any time (storage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import hash_secret, verify_secret

__all__ = [
    "CredentialPolicy",
    "EapCredential",
    "IssuedCredential",
    "hash_secret_argon2id",
    "issue_credential",
    "realm_of",
    "valid_realm",
    "verify_credential",
]

ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"
"""Lower-case letters and digits without the look-alikes (i l o 0 1): a secret a
person may have to type on a device that cannot install the profile."""
SECRET_CHARS: Final = 24
LOCAL_CHARS: Final = 12
SALT_OCTETS: Final = 16
RANDOM_OCTETS: Final = 2 * (SECRET_CHARS + LOCAL_CHARS) + SALT_OCTETS
"""Random octets to pass to ``issue_credential``: letters take about 1.03 octets each
(a few values are skipped to keep them unbiased), so twice as many is ample."""

_REALM: Final = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def valid_realm(realm: str) -> bool:
    """A realm is a DNS name (RFC 7542 §2.2: NAI realms are domain names), lower case,
    with at least two labels, so that roaming partners can route it (RFC 7585)."""
    return bool(_REALM.match(realm))


def realm_of(username: str) -> str:
    """The realm of a NAI (``local@realm``, RFC 7542 §2.1); "" when it has none."""
    _, at, realm = username.rpartition("@")
    return realm.lower() if at else ""


@dataclass(frozen=True, slots=True)
class CredentialPolicy:
    """How credentials are made. The argon2id cost defaults to OWASP's minimum for
    argon2id (19 MiB, 2 passes, 1 lane): the secret is random, so the hash only has to
    make a leaked store useless, not stretch a weak password."""

    realm: str
    lifetime_days: int = 365
    time_cost: int = 2
    memory_kib: int = 19 * 1024
    parallelism: int = 1

    def __post_init__(self) -> None:
        if not valid_realm(self.realm):
            raise ValueError(f"realm {self.realm!r} is not a lower-case DNS name")
        if not 1 <= self.lifetime_days <= 3650:
            raise ValueError("lifetime_days outside 1..3650")


@dataclass(frozen=True, slots=True)
class EapCredential:
    """A stored credential: the username, whose it is, the argon2id hash and its times
    (epoch seconds). ``label`` names the device for the person ("Pixel 8"), free text."""

    username: str
    person_id: str
    secret_hash: str = field(repr=False)
    issued_at: int
    expires_at: int
    label: str = ""

    def valid_at(self, now: float) -> bool:
        return self.issued_at <= now < self.expires_at

    def public(self) -> dict[str, str | int]:
        """What may be shown of it (the person's own list, the admin's): never the hash."""
        return {
            "username": self.username,
            "label": self.label,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """A credential just made: the stored part and the secret, shown once and put into
    the profile, then forgotten."""

    credential: EapCredential
    secret: str = field(repr=False)


def _unbiased(random_octets: bytes, count: int) -> tuple[str, bytes]:
    """``count`` letters from the front of ``random_octets`` (octets ≥ 248 are skipped so
    that each of the 31 letters is equally likely); returns the rest."""
    limit = 256 - 256 % len(ALPHABET)
    out: list[str] = []
    pos = 0
    while len(out) < count:
        if pos >= len(random_octets):
            raise ValueError("not enough random octets")
        b = random_octets[pos]
        pos += 1
        if b < limit:
            out.append(ALPHABET[b % len(ALPHABET)])
    return "".join(out), random_octets[pos:]


def hash_secret_argon2id(secret: str, salt: bytes, policy: CredentialPolicy) -> str:
    """The argon2id hash of ``secret`` in the PHC string form (``$argon2id$v=19$m=…``),
    which carries its own parameters and salt, so a policy change later still verifies
    old hashes."""
    return hash_secret(
        secret.encode(),
        salt,
        time_cost=policy.time_cost,
        memory_cost=policy.memory_kib,
        parallelism=policy.parallelism,
        hash_len=32,
        type=Type.ID,
    ).decode("ascii")


def issue_credential(
    person_id: str,
    policy: CredentialPolicy,
    now: int,
    random_octets: bytes,
    *,
    label: str = "",
) -> IssuedCredential:
    """A new credential for ``person_id`` from ``random_octets``
    (``secrets.token_bytes(RANDOM_OCTETS)``): they make the local part, the secret and
    the salt, in that order. ValueError if they run out."""
    local, rest = _unbiased(random_octets, LOCAL_CHARS)
    secret, rest = _unbiased(rest, SECRET_CHARS)
    if len(rest) < SALT_OCTETS:
        raise ValueError("not enough random octets")
    salt = rest[:SALT_OCTETS]
    credential = EapCredential(
        username=f"{local}@{policy.realm}",
        person_id=person_id,
        secret_hash=hash_secret_argon2id(secret, salt, policy),
        issued_at=now,
        expires_at=now + policy.lifetime_days * 86400,
        label=label[:64],
    )
    return IssuedCredential(credential, secret)


def verify_credential(credential: EapCredential | None, password: bytes, now: float) -> bool:
    """Whether ``password`` opens ``credential`` at ``now``: it exists, has not expired,
    and the argon2id hash matches (constant time inside argon2). None (an unknown
    username) is checked against nothing and is False."""
    if credential is None or not credential.valid_at(now):
        return False
    try:
        return verify_secret(credential.secret_hash.encode("ascii"), password, Type.ID)
    except (VerificationError, InvalidHashError):
        return False
