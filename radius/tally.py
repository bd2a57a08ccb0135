"""Per-client RADIUS counters kept by this process until they are flushed to Redis.

The console's NAS health page and the ``citywifi_nas_*`` figures of ``/metrics`` are read
from Redis (``controller.storage.nas_stats``), so that they survive a restart and every
worker of every instance adds to the same figures (issue 17, "one source of truth").
Writing to Redis per request would cost a round trip on the hot path; instead the
RADIUS shell (``radius.server``), the Disconnect/CoA path (``controller.services.enforcer``)
and the SMS senders call one method of ``TALLY`` here — a dict increment, no I/O, no
clock — and ``controller.services.nas_stats.NasStats`` takes what was counted once a
second (``take``) and writes it with one pipelined call.

A counter is ``(client id, field)``; the client is None for what belongs to no configured
client (a packet from an unknown source; an SMS). Fields:

- ``auth:accept``, ``auth:reject``, ``auth:challenge``, ``acct:ok``: requests answered,
  by port and result (the labels of ``citywifi_radius_client_requests_total``);
- ``reject:<reason>``: Access-Rejects by reason (``controller.domain.access.Outcome``);
- ``drop:<reason>``: packets dropped without an answer (``radius.core.DROP_REASONS``);
- ``dis:<ack|nak|timeout>``, ``coa:<…>``: Disconnect and CoA results
  (``radius.dae.DaeOutcome``);
- ``sms:ok``, ``sms:failed``: SMS codes handed to the SMS backend (no client).

A Status-Server (RFC 5997) is answered by the core at once and counted in no field,
but its client is heard (``answered_at_once``): a NAS that only sends keepalives is
alive, not "silent".

Every field name is made from a bounded set (ports, codes, reasons, outcomes), and the
clients from the packets the core accepted, so the dicts stay small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

RESULTS: Final = {2: "accept", 3: "reject", 11: "challenge", 5: "ok"}  # reply code -> label
REJECT: Final = 3
_FIELDS: Final = {(p, c): f"{p}:{r}" for p in ("auth", "acct") for c, r in RESULTS.items()}


@dataclass(frozen=True, slots=True)
class Counted:
    """What was counted since the previous ``take``: ``(client, field) -> n`` and the
    clients a request was seen from (auth or acct, answered or dropped)."""

    counts: dict[tuple[str | None, str], int] = field(default_factory=dict)
    heard: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.counts or self.heard)


class Tally:
    """The counters; see the module docstring. Not thread-safe (one event loop)."""

    __slots__ = ("counts", "folds", "heard")

    def __init__(self) -> None:
        self.counts: dict[tuple[str | None, str], int] = {}
        self.heard: set[str] = set()
        # what counts elsewhere and adds itself here at each take (the compiled
        # counters of radius.metrics.RadiusMeters; in multi-process mode they also fold
        # into the prometheus objects here, taken once a second as they are)
        self.folds: list[Callable[[Tally], None]] = []

    @staticmethod
    def field(port: str, code: int) -> str:
        """The field of a reply of ``code`` sent on ``port`` ("auth"/"acct")."""
        return _FIELDS.get((port, code)) or f"{port}:{code}"

    @staticmethod
    def reject_field(reason: str) -> str:
        """The field of an Access-Reject for ``reason`` (an Accept too long for its
        Proxy-States goes as a Reject: its result is still "accept")."""
        return f"reject:{'reply_too_long' if reason == 'accept' else reason}"

    def add(self, client: str | None, name: str, n: int = 1) -> None:
        key = (client, name)
        self.counts[key] = self.counts.get(key, 0) + n

    def sent(self, client: str, port: str, code: int, reason: str = "") -> None:
        """A reply was sent to ``client`` on ``port`` ("auth"/"acct"). The hot path: one
        dict lookup for the field name, one increment, one set add."""
        key = (client, _FIELDS.get((port, code)) or f"{port}:{code}")
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        if code == REJECT and reason:
            self.add(client, self.reject_field(reason))
        self.heard.add(client)

    def dropped(self, client: str | None, reason: str) -> None:
        """A packet was dropped without an answer (``client`` None: no known source)."""
        self.add(client, f"drop:{reason}")
        if client is not None:
            self.heard.add(client)

    def answered_at_once(self, kind: str, client: str | None) -> None:
        """The core answered without the service (``radius.core.Answer``): a Status-Server
        (``kind`` "status") means ``client`` is alive; a duplicate's original was heard."""
        if kind == "status" and client is not None:
            self.heard.add(client)

    def dae(self, client: str, kind: str, outcome: str) -> None:
        """A Disconnect (``kind`` "dis") or CoA ("coa") request to ``client`` ended."""
        self.add(client, f"{kind}:{outcome}")

    def city(self, name: str) -> None:
        """A figure of the whole city, of no client (``sms:ok``, ``sms:failed``)."""
        self.add(None, name)

    def take(self) -> Counted:
        """Everything counted so far; the tally starts again from zero."""
        for fold in self.folds:
            fold(self)
        counted = Counted(self.counts, frozenset(self.heard))
        self.counts, self.heard = {}, set()
        return counted

    def give_back(self, counted: Counted) -> None:
        """Put a batch that could not be written back, to go with the next one."""
        for key, n in counted.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.heard |= counted.heard


TALLY: Final = Tally()  # the process's one tally (like the Prometheus registry)
