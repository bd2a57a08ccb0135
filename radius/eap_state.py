"""The conversations in progress between RADIUS rounds, keyed by the State attribute.

An EAP method takes several Access-Request/Access-Challenge round trips. The server puts
an opaque State (RFC 2865 §5.24) in each Access-Challenge and the NAS sends it back
unchanged in the next Access-Request (RFC 3579 §2.6.1), which is how that request finds
its conversation again. The value is random (16 octets from the injected source), never
reused: each round gets a fresh one and the old one stops working, so a replayed request
finds nothing. Entries expire ``lifetime`` seconds after their last round (RFC 3579 §2.6.1
leaves the timeout to the server; hostapd keeps 60 s) and the table holds at most
``max_entries``: when full, the oldest conversation is dropped (a flood of new EAP starts
cannot grow memory without bound; the dropped peer starts over). Pure: time is passed in.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = ["StateTable"]

S = TypeVar("S")
STATE_OCTETS: Final = 16


@dataclass(slots=True)
class _Entry(Generic[S]):
    session: S
    until: float
    client: str


class StateTable(Generic[S]):
    """State value -> conversation, bounded and expiring (see the module docstring).

    ``client`` binds an entry to the RADIUS client that started it: a State presented
    by another client finds nothing (a State is not a bearer token across NASes)."""

    def __init__(
        self,
        lifetime: float = 60.0,
        max_entries: int = 10_000,
        token: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if lifetime <= 0 or max_entries <= 0:
            raise ValueError("lifetime and max_entries are positive")
        self.lifetime = lifetime
        self.max_entries = max_entries
        self._token = token
        self._entries: OrderedDict[bytes, _Entry[S]] = OrderedDict()
        self.evicted = 0
        """Conversations dropped because the table was full (for a metric)."""

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, session: S, client: str, now: float) -> bytes:
        """Keep ``session`` for its next round; returns the State to send."""
        self.expire(now)
        state = self._token(STATE_OCTETS)
        while state in self._entries:  # only a broken token source repeats itself
            state = self._token(STATE_OCTETS)
        self._entries[state] = _Entry(session, now + self.lifetime, client)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evicted += 1
        return state

    def take(self, state: bytes, client: str, now: float) -> S | None:
        """The conversation ``state`` names, removed from the table (``put`` it back with
        a fresh State for the next round); None when unknown, expired or another
        client's."""
        entry = self._entries.get(state)
        if entry is None or entry.client != client:
            return None
        del self._entries[state]
        if entry.until <= now:
            return None
        return entry.session

    def expire(self, now: float) -> int:
        """Drop entries whose time is up (all share one lifetime and are kept in the
        order they were put, so those are at the front); returns how many."""
        gone = 0
        while self._entries:
            state, entry = next(iter(self._entries.items()))
            if entry.until > now:
                break
            del self._entries[state]
            gone += 1
        return gone
