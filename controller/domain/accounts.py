"""Named console accounts: who may sign in, with which roles, and when a sign-in is
refused. Pure: time, randomness and the stored records are arguments.

People get named accounts (issue 17) instead of the shared bearer tokens machines keep:
a password (argon2id, hashed in ``controller.services.accounts``), an optional TOTP
second factor (RFC 6238), roles, a disabled flag. A sign-in is refused while the
account is locked after ``LockoutPolicy.max_failures`` failures within its window
(OWASP ASVS V2.2.1: anti-automation), and a TOTP code is accepted once only (RFC 6238
§5.2: "the verifier MUST NOT accept the second attempt of the OTP after the successful
validation has been issued for the first OTP").

Roles do not imply one another (as for the API tokens, ``controller.web.auth``):
``admin`` acts on persons, ``operations`` watches the network, ``reports`` reads the
subsidy figures, ``audit`` reads the security audit log, and ``operator:<id>`` sees only
the venues and NAS of operator ``<id>`` (the pilot's equal-access rule).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

import pyotp

from controller.domain import quota
from controller.domain.audit import AuditRow

ROLES: Final = frozenset(("admin", "operations", "reports", "audit"))
OPERATOR_PREFIX: Final = "operator:"
_USERNAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")
_OPERATOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PASSWORD: Final = 12  # NIST SP 800-63B §5.1.1.2 asks at least 8; an operations login more
MAX_PASSWORD: Final = 1024  # argon2 takes any length; a bound keeps a request's cost bounded
TOTP_PERIOD: Final = 30  # seconds per step (RFC 6238 §5.2 recommends 30)
TOTP_DRIFT: Final = 1  # steps of clock drift accepted either side (RFC 6238 §6)
SESSION_ID_BYTES: Final = 32  # 256 random bits (OWASP session management: at least 64)


class AccountError(Exception):
    """A request about accounts that cannot be done: a stable code and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Role:
    """One role; ``operator`` is set for ``operator:<id>``."""

    name: str
    operator: str | None = None

    def __str__(self) -> str:
        return f"{OPERATOR_PREFIX}{self.operator}" if self.operator else self.name


def parse_role(text: str, operators: frozenset[str] | None = None) -> Role:
    """A role as written (``admin``, ``operator:op-telecom``); ``operators``: the
    configured operator ids an ``operator:`` role must name (None: not checked)."""
    text = text.strip()
    if text in ROLES:
        return Role(text)
    if text.startswith(OPERATOR_PREFIX):
        op = text[len(OPERATOR_PREFIX) :]
        if not _OPERATOR_ID.fullmatch(op):
            raise AccountError("bad_role", f"'{text}': an operator id follows 'operator:'")
        if operators is not None and op not in operators:
            raise AccountError("bad_role", f"'{text}': no operator '{op}' is configured")
        return Role("operator", op)
    raise AccountError(
        "bad_role", f"'{text}' is not a role: {', '.join(sorted(ROLES))} or operator:<id>"
    )


def check_username(name: str) -> str:
    """A username: 2 to 32 of lower-case letters, digits, ``.``, ``_``, ``-``, from a letter
    (it is logged and shown, so no look-alike Unicode)."""
    if not _USERNAME.fullmatch(name):
        raise AccountError(
            "bad_username", "a username is 2-32 of a-z 0-9 . _ - and starts with a letter"
        )
    return name


def check_password(password: str, username: str) -> str:
    """A new password: long enough, not absurdly long, not the username (NIST SP
    800-63B §5.1.1.2: length, no composition rules)."""
    if len(password) < MIN_PASSWORD:
        raise AccountError("weak_password", f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError("bad_password", f"a password has at most {MAX_PASSWORD} characters")
    if password.lower() == username.lower():
        raise AccountError("weak_password", "the password is the username")
    return password


@dataclass(frozen=True, slots=True)
class Account:
    """A stored account (the password only as its argon2id hash)."""

    name: str
    password_hash: str
    roles: tuple[Role, ...]
    totp_secret: str = ""  # base32; "" = no second factor
    disabled: bool = False
    created: int = 0

    @property
    def role_names(self) -> frozenset[str]:
        return frozenset(str(r) for r in self.roles)

    @property
    def operators(self) -> frozenset[str]:
        return frozenset(r.operator for r in self.roles if r.operator)

    @property
    def role_kinds(self) -> frozenset[str]:
        """The roles without their operator: ``operator:<id>`` counts as ``operator``."""
        return frozenset(r.name for r in self.roles)


CITY_WIDE: Final = frozenset(("admin", "operations", "reports"))


def operator_scope(account: Account) -> frozenset[str] | None:
    """Whose figures the account sees: None for the city (a city-wide role), else the
    set of its ``operator:<id>`` ids (the pilot's equal-access rule: an operator sees its
    own venues and NAS, never another's, nor the city's totals)."""
    if account.role_kinds & CITY_WIDE:
        return None
    return account.operators


# --------------------------------------------------------------------------- lock-out


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """``max_failures`` failed sign-ins within ``window`` seconds lock the account for
    ``lock_seconds`` (counted per username, so spraying from many addresses is counted)."""

    max_failures: int = 5
    window: int = 900
    lock_seconds: int = 900


def locks_now(failures: int, policy: LockoutPolicy) -> bool:
    """Whether the failure just counted (the ``failures``-th in the window) locks."""
    return failures >= policy.max_failures


# --------------------------------------------------------------------------- TOTP


def new_totp_secret(random_base32: str) -> str:
    """The secret to keep (``random_base32``: 32 base32 characters = 160 bits, the
    HMAC-SHA1 key length RFC 4226 §4 recommends; drawn by the caller)."""
    if not re.fullmatch(r"[A-Z2-7]{32}", random_base32):
        raise AccountError("bad_secret", "a TOTP secret is 32 base32 characters")
    return random_base32


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    """The ``otpauth://totp/…`` URI an authenticator app reads (as a QR code or typed)."""
    return pyotp.TOTP(secret, interval=TOTP_PERIOD).provisioning_uri(
        name=username, issuer_name=issuer
    )


def totp_step(secret: str, code: str, now: float) -> int | None:
    """The time step (RFC 6238 §4: floor(now / 30)) whose code ``code`` is, within
    ``TOTP_DRIFT`` steps of ``now``; None if it is none of them. Every candidate is
    compared (constant time, no early exit). The caller refuses a step already used."""
    code = code.strip()
    if not re.fullmatch(r"[0-9]{6}", code):
        return None
    totp = pyotp.TOTP(secret, interval=TOTP_PERIOD)
    current = int(now) // TOTP_PERIOD
    found = None
    for step in range(current - TOTP_DRIFT, current + TOTP_DRIFT + 1):
        if hmac.compare_digest(totp.at(step * TOTP_PERIOD).encode(), code.encode()):
            found = step
    return found


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in browser: a random id kept server-side (the cookie holds only the id),
    bound to the network the browser signed in from (IPv4 /24, IPv6 /48, as the portal
    buckets addresses), ending at ``expires``."""

    id: str
    user: str
    created: int
    expires: int
    network: str


def session_expiry(now: int, lifetime: int) -> int:
    return now + lifetime


def session_holds(session: ConsoleSession, *, now: float, network: str) -> bool:
    """Whether a stored session still signs its browser in from ``network`` at ``now``."""
    return now < session.expires and hmac.compare_digest(session.network.encode(), network.encode())


def new_session_id(random_bytes: bytes) -> str:
    if len(random_bytes) < SESSION_ID_BYTES:
        raise AccountError("bad_random", f"a session id needs {SESSION_ID_BYTES} random bytes")
    return random_bytes.hex()


# --------------------------------------------------------------------------- refusals


REFUSALS: Final = frozenset(
    ("unknown_or_bad_password", "disabled", "locked", "totp_required", "bad_totp", "totp_replayed")
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a sign-in failed. The browser is told only "wrong name, password or code"
    (or "locked", with when it ends): which part was wrong helps a guesser."""

    reason: str
    retry_after: int = 0  # seconds, for "locked"

    def __post_init__(self) -> None:
        if self.reason not in REFUSALS:
            raise ValueError(f"unknown refusal reason {self.reason!r}")

    @property
    def counts(self) -> bool:
        """Whether this refusal counts toward the lock-out (a locked or disabled account's
        attempts do not extend the lock)."""
        return self.reason not in ("disabled", "locked")


# --------------------------------------------------------------------------- audit rows


def console_audit_row(
    entry_id: str, entry: Mapping[str, str], tz: ZoneInfo, archived_at: int
) -> AuditRow:
    """The audit-log row of a console account action (an outbox entry ``k=console``):
    kind ``console``, ``ip`` the browser's address, ``result`` the action and its outcome
    (``login ok``, ``login locked``, ``user.disable ok``), ``cause`` who acted on whom
    (``by ops on ops``). No phone number: these are staff actions (docs/audit.md)."""
    at = int(entry.get("t", "") or 0) or archived_at // 1000
    return AuditRow(
        day=quota.local_day(at, tz),
        record_id=f"console:{entry_id}",
        kind="console",
        time=at,
        phone="",
        pid="",
        mac="",
        ip=entry.get("address", ""),
        client="",
        nas_id="",
        nas_ip="",
        ap="",
        venue="",
        start=None,
        stop=None,
        result=f"{entry.get('action', '')} {entry.get('result', '')}".strip(),
        cause=f"by {entry.get('user', '')} on {entry.get('target', '')}".strip(),
        archived_at=archived_at,
    )


def token_live(expires: int | None, now: float) -> bool:
    """Whether a machine's API token (``[[api_tokens]]``) still works: until its
    ``expires`` (exclusive), or for ever without one."""
    return expires is None or now < expires
