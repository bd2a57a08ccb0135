"""Duplicate request detection (RFC 5080 §2.2.2), pure: the caller passes the time in.

A NAS retransmits a request it got no answer to with the same source, code, Identifier
and Request Authenticator. The server must not process it twice: while the original is
being processed the copy is dropped, afterwards the cached reply is sent again.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Final, Protocol

__all__ = ["IN_PROGRESS", "DedupCache", "DedupKey", "DuplicateCache", "InProgressType"]

DedupKey = tuple[str, int, int, int, bytes]
"""(source address, source port, code, identifier, request authenticator)."""


class InProgressType(enum.Enum):
    """Type of the ``IN_PROGRESS`` sentinel (an enum so that ``is`` narrows for mypy)."""

    IN_PROGRESS = "in_progress"


IN_PROGRESS: Final = InProgressType.IN_PROGRESS


class DuplicateCache(Protocol):
    """What the server needs of a duplicate cache: ``DedupCache`` below (the reference
    model and the fallback) or its compiled twin ``radius._speedups.DedupCache``, which
    ``radius.fastpath.load()`` picks (tests/test_dedup_compiled.py holds the two against
    each other)."""

    window: float
    max_entries: int

    def __len__(self) -> int: ...
    def lookup(self, key: DedupKey, now: float) -> bytes | InProgressType | None: ...
    def begin(self, key: DedupKey, now: float) -> None: ...
    def finish(self, key: DedupKey, reply: bytes | None, now: float) -> None: ...


class DedupCache:
    """Replies by request key, kept for ``window`` seconds after they were sent.

    Entries sit in an ``OrderedDict`` in the order of their last update, which is also
    the order of their timestamps as long as ``now`` does not go backwards (pass a
    monotonic clock), so expiry pops from the front: amortised O(1) per call. At most
    ``max_entries`` are kept; the oldest go first.
    """

    __slots__ = ("_entries", "max_entries", "window")

    def __init__(self, window: float, max_entries: int = 200_000) -> None:
        if window <= 0 or max_entries <= 0:
            raise ValueError("window and max_entries must be positive")
        self.window = window
        self.max_entries = max_entries
        self._entries: OrderedDict[DedupKey, tuple[float, bytes | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        entries = self._entries
        horizon = now - self.window
        while entries:
            key = next(iter(entries))
            if entries[key][0] > horizon:
                break
            del entries[key]

    def _store(self, key: DedupKey, now: float, reply: bytes | None) -> None:
        entries = self._entries
        entries[key] = (now, reply)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def lookup(self, key: DedupKey, now: float) -> bytes | InProgressType | None:
        """The reply sent for ``key`` within the window, ``IN_PROGRESS`` while the
        original is being processed (for at most ``window``), else None."""
        self._expire(now)
        entry = self._entries.get(key)
        if entry is None:
            return None
        reply = entry[1]
        return IN_PROGRESS if reply is None else reply

    def begin(self, key: DedupKey, now: float) -> None:
        """Mark ``key`` as being processed."""
        self._expire(now)
        self._store(key, now, None)

    def finish(self, key: DedupKey, reply: bytes | None, now: float) -> None:
        """Cache the reply sent for ``key``; with None (nothing was sent) forget the key,
        so that a retransmission is processed afresh."""
        self._expire(now)
        if reply is None:
            self._entries.pop(key, None)
        else:
            self._store(key, now, reply)
