"""SMS login codes: 6 digits from ``secrets``, valid 5 minutes, at most 5 attempts,
compared in constant time, single use, kept in Redis only as a keyed digest.

Each code belongs to one phone *and the device that asked for it* (issue 13 finding 3):
a stranger asking for a code to someone else's number gets a code slot of their own,
so neither their requests (which replace only their own pending code) nor their wrong
guesses (which lock only their own code) touch the owner's code.

The pure rules (``new_code``, ``clean_code``, ``judge``) are separate from the Redis
calls (``OtpBook``) so tests can check each rule without a server. Attempts are counted
atomically in Lua (``controller/lua/otp_attempt.lua``); a sixth attempt finds the code
locked even when it is right. Single use: the verifying request must win the ``DEL``.
"""

from __future__ import annotations

import hmac
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from controller.domain.state import OtpAttempt
from controller.services.portal.errors import PortalError
from controller.services.signing import Signer
from controller.storage.store import Store

CODE_DIGITS: Final = 6
CODE_TTL: Final = 300  # seconds
MAX_ATTEMPTS: Final = 5


def new_code(randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    """Six uniformly random digits (leading zeros kept)."""
    return f"{randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def clean_code(raw: str) -> str:
    """What the person typed -> six ASCII digits; full-width digits (IME) and spaces are
    fine. Raises ``PortalError("invalid_code")`` otherwise (no attempt is counted)."""
    text = unicodedata.normalize("NFKC", raw or "").replace(" ", "").replace("-", "")
    if len(text) != CODE_DIGITS or not text.isascii() or not text.isdigit():
        raise PortalError("invalid_code", 400)
    return text


class Verdict(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"  # too many attempts: request a new code
    GONE = "gone"  # expired, already used, or never sent


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    attempts_left: int = 0


def judge(attempt: OtpAttempt, given: str, max_attempts: int) -> Outcome:
    """Decide one attempt from what ``otp_attempt.lua`` returned (pure)."""
    tries, stored = attempt.tries, attempt.digest
    if attempt.status == "gone":
        return Outcome(Verdict.GONE)
    if attempt.status == "locked" or tries > max_attempts:
        return Outcome(Verdict.LOCKED)
    if stored and hmac.compare_digest(stored.encode(), given.encode()):
        return Outcome(Verdict.OK, max_attempts - tries)
    left = max_attempts - tries
    return Outcome(Verdict.WRONG if left > 0 else Verdict.LOCKED, left)


class OtpBook:
    """Codes of phones, by person id (the keyed hash of the number, never the number)."""

    def __init__(self, store: Store, signer: Signer) -> None:
        self.store = store
        self.signer = signer

    def _digest(self, pid: str, code: str) -> str:
        return self.signer.digest("otp", f"{pid}|{code}")

    @staticmethod
    def _slot(pid: str, device: str) -> str:
        return f"{pid}:{device}"

    async def issue(self, pid: str, device: str, now: int) -> str:
        """A fresh code replacing this device's pending one; the caller sends it by SMS."""
        code = new_code()
        await self.store.otp_put(self._slot(pid, device), self._digest(pid, code), CODE_TTL, now)
        return code

    async def verify(self, pid: str, device: str, code: str) -> Outcome:
        outcome = await self.check(pid, device, code)
        if outcome.verdict is Verdict.OK and not await self.consume(pid, device):
            return Outcome(Verdict.GONE)  # a concurrent request used it first
        return outcome

    async def check(self, pid: str, device: str, code: str) -> Outcome:
        """Count one attempt and judge it; an OK code still has to be ``consume``d."""
        attempt = await self.store.otp_attempt(self._slot(pid, device), MAX_ATTEMPTS)
        return judge(attempt, self._digest(pid, code), MAX_ATTEMPTS)

    async def consume(self, pid: str, device: str) -> bool:
        """Use up a code ``check`` found right: False when a concurrent request won."""
        return await self.store.otp_consume(self._slot(pid, device))
