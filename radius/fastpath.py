"""The one import point of the compiled data path (``radius._speedups``, issue 16).

The C extension is optional: ``pip install .`` builds it when a C compiler and the Python
headers are there and installs without it otherwise. ``radius.packet`` stays the
reference model and the fallback; the compiled codec mirrors it exactly (same
``Request``, same ``PacketError`` reasons and messages; tests/test_speedups.py holds the
two against each other). ``CITYWIFI_PURE_PYTHON=1`` forces the fallback, so that the
suite can run both ways and an operator can rule the extension out.

The server calls ``load()`` once at start and logs ``DataPath.reason``:
"compiled data path" or "pure-Python fallback: <why>". Batched datagram I/O
(``recvmmsg``/``sendmmsg``, Linux) exists only on the compiled path; with the fallback
``DataPath.batch_io`` is None and the server keeps the event loop's transport.
``CITYWIFI_NO_BATCH_IO=1`` keeps the compiled codec on the loop's transport (to compare
the two, or to rule batching out).

The compiled path also has the RFC 5080 duplicate cache (``DataPath.dedup_cache``: the C
twin of ``radius.dedup.DedupCache``, which stays the reference model and the fallback;
tests/test_dedup_compiled.py drives both with the same operations) and the RESP packer
of the Redis batch link (``DataPath.pack_commands``: the octets of
``controller.storage.redis_batch.pack`` in one call; None on the fallback, which then
uses that one) and its reply router (``DataPath.reply_router``: RESP2 replies parsed in C
and handed straight to the futures of the units waiting for them, from the link's
``data_received``; the reference and fallback is ``redis_batch.ReplyRouter``, hiredis's
Reader and a Python loop; tests/test_redis_replies.py holds the two together).
``DataPath.counters`` makes the C counters of the RADIUS shell (``radius.metrics``:
per-answer increments in C arrays, read at scrape and flush time; None on the fallback,
where the shell moves the prometheus objects and the tally).

``accounting_values(...)`` gives the C twin of ``radius.events._accounting_values`` (an
Accounting-Request's twenty field values in one call instead of twenty small Python
ones; tests/test_accounting_values.py holds the two together), bound to the attribute
numbers, statuses and IPv6 formatter that ``radius.events`` passes; None on the fallback,
where ``radius.events`` keeps its Python reference.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Protocol

from radius import dedup, packet
from radius.attrs import AcctStatus

__all__ = [
    "COMPILED",
    "ENV_NO_BATCH_IO",
    "ENV_PURE_PYTHON",
    "AccountingValues",
    "AccountingValuesOf",
    "Address",
    "BatchIO",
    "CompiledCounters",
    "Counters",
    "DataPath",
    "accounting_values",
    "available",
    "load",
    "reason",
    "switched_off",
]

ENV_PURE_PYTHON: Final = "CITYWIFI_PURE_PYTHON"
ENV_NO_BATCH_IO: Final = "CITYWIFI_NO_BATCH_IO"
COMPILED: Final = "compiled data path"

Address = tuple[str, int] | tuple[str, int, int, int]
"""A datagram peer as Python's socket module gives it: IPv4 (host, port), IPv6
(host, port, flowinfo, scope_id); hosts are numeric."""

_FIELDS: Final = ("code", "identifier", "authenticator", "attrs", "vsas", "raw")


def _request_slots() -> list[object] | None:
    """``Request``'s slot descriptors in field order when it is still the plain frozen
    slots dataclass of those six fields (the compiled decoder then fills the slots
    directly); None makes it call the class instead, whatever the class became."""
    fields = tuple(f.name for f in dataclasses.fields(packet.Request))
    if fields != _FIELDS or hasattr(packet.Request, "__post_init__"):
        return None
    slots = [vars(packet.Request).get(name) for name in fields]
    if not all(isinstance(d, types.MemberDescriptorType) for d in slots):
        return None
    return slots


try:
    from radius import _speedups as _compiled

    _compiled.bind(packet.Request, packet.PacketError, _request_slots())
    _compiled.bind_dedup(dedup.IN_PROGRESS)
    _missing = ""
except ImportError as exc:  # the optional build did not happen (no compiler or headers)
    _compiled_or_none: ModuleType | None = None
    _missing = f"radius._speedups is not built ({exc})"
else:
    _compiled_or_none = _compiled


def _switched(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")


def _forced_off() -> bool:
    return _switched(ENV_PURE_PYTHON)


def switched_off() -> bool:
    """Whether ``CITYWIFI_PURE_PYTHON`` rules out compiled code, built or not: the one
    switch for every optional extension (``controller.storage._archive_fmt`` too)."""
    return _forced_off()


def available() -> bool:
    """Whether the compiled path is used: built, and not switched off by the environment."""
    return _compiled_or_none is not None and not _forced_off()


def reason() -> str:
    """The line the server logs at start: which data path runs, and why not the other."""
    if _forced_off():
        return f"pure-Python fallback: {ENV_PURE_PYTHON}={os.environ[ENV_PURE_PYTHON]}"
    if _compiled_or_none is None:
        return f"pure-Python fallback: {_missing}"
    return COMPILED


class DecodeRequest(Protocol):
    def __call__(
        self, data: bytes, secret: bytes, *, require_message_authenticator: bool = True
    ) -> packet.Request: ...


class EncodeReply(Protocol):
    def __call__(
        self,
        code: int,
        request: packet.Request,
        secret: bytes,
        attrs: bytes = b"",
        *,
        message_authenticator: bool | None = None,
    ) -> bytes: ...


@dataclass(frozen=True, slots=True)
class BatchIO:
    """``recvmmsg``/``sendmmsg`` on a non-blocking datagram socket's file descriptor.

    ``recv(fd, max_count)`` returns up to ``max_count`` (≤ ``max_batch``) datagrams
    waiting now, [] when none (it never blocks); datagrams above 4096 octets are cut, as
    ``recvfrom(4096)`` would. ``send(fd, items)`` returns how many of the items went out,
    in order: fewer than given when the socket buffer filled (the caller keeps the rest
    until the socket is writable); an error before the first is raised as OSError.
    """

    recv: Callable[[int, int], list[tuple[bytes, Address]]]
    send: Callable[[int, Sequence[tuple[bytes, Address]]], int]
    max_batch: int


DedupFactory = Callable[[float], dedup.DuplicateCache]
"""``factory(window)``: a duplicate cache keeping answers ``window`` seconds."""

PackCommands = Callable[[Sequence[Sequence[object]]], bytes]
"""``pack(commands)``: RESP arrays of bulk strings, every command in one buffer."""


class Counters(Protocol):
    """The shell's per-packet counting (``radius.metrics``): ``radius._speedups.Counters``,
    or ``radius.metrics.PyCounters``, its reference model. ``role`` is 0 (auth) or 1
    (acct); ``sent`` is False when it did not count (a code it does not keep)."""

    def sent(self, role: int, client: str, code: int, reason: str, latency: float, /) -> bool: ...
    def dropped(self, role: int, client: str | None, reason: str, /) -> None: ...
    def at_once(self, role: int, status: bool, client: str | None, /) -> None: ...


class CompiledCounters(Counters, Protocol):
    """``radius._speedups.Counters``: what was counted is taken, not kept in Python."""

    def take_metrics(
        self,
    ) -> tuple[
        list[tuple[int, str, int, int]],  # (role, client, code, n)
        list[tuple[int, str, int]],  # (role, reason, n)
        list[tuple[int, int, int]],  # (role, status n, duplicate n)
        list[tuple[int, tuple[int, ...], float]],  # (role, counts by bucket, sum)
    ]: ...
    def take_tally(
        self,
    ) -> tuple[
        list[tuple[str, int, int, int]],  # (client, role, code, n)
        list[tuple[str, str, int]],  # (client, reject reason, n)
        list[tuple[str | None, str, int]],  # (client, drop reason, n)
        list[str],  # clients heard
    ]: ...


CountersFactory = Callable[[Sequence[float]], CompiledCounters]
"""``factory(bounds)``: counters whose latency histogram has these upper bounds."""


class ReplyRouting(Protocol):
    """A Redis link's replies, parsed and handed to the units waiting for them in order.

    ``push(count, future)`` queues a unit waiting for its next ``count`` replies;
    ``feed(data)`` parses every complete reply while units wait and gives each unit's
    future the list of its replies once the last arrives (a future already done is
    skipped); garbage raises the ``protocol_error`` given to the factory, again on every
    later call. ``take()`` removes and returns the waiting units' futures (for the link to
    fail), ``answered`` counts the units completed, ``len()`` those waiting. ``gets()``
    is hiredis.Reader's: the next reply, False when none is complete."""

    answered: int

    def push(self, count: int, future: Any, /) -> None: ...
    def feed(self, data: bytes, /) -> None: ...
    def gets(self) -> Any: ...
    def take(self) -> list[Any]: ...
    def __len__(self) -> int: ...


RouterFactory = Callable[[Any, type[Exception]], ReplyRouting]
"""``factory(reply_error, protocol_error)``: a router whose error replies are
``reply_error(message)`` and whose garbage raises ``protocol_error``."""

AccountingValues = tuple[
    int | None,  # status_type: Acct-Status-Type as sent (None unless 4 octets)
    AcctStatus | None,  # status: that number when it is an AcctStatus, else None
    str,  # session_id
    str,  # user_name
    str,  # calling_station_id
    str,  # called_station_id
    str,  # nas_identifier
    str,  # nas_ip_address
    str,  # nas_ipv6_address
    str,  # framed_ip_address
    str,  # framed_ipv6_address
    int,  # session_time
    int,  # input_octets, with Acct-Input-Gigawords (RFC 2869 §5.1)
    int,  # output_octets, with Acct-Output-Gigawords (RFC 2869 §5.2)
    int,  # delay
    int | None,  # event_timestamp
    int | None,  # terminate_cause
    bytes | None,  # klass
    str | None,  # operator_name
    tuple[bytes, ...],  # proxy_state
]
"""The fields of ``radius.events.AccountingRequest`` from ``status_type`` to
``proxy_state``, in its order."""

AccountingValuesOf = Callable[[dict[int, list[bytes]]], AccountingValues]
"""``values(attrs)``: an Accounting-Request's ``AccountingValues`` from its attributes."""


def accounting_values(
    attrs: tuple[int, ...],
    statuses: dict[int, AcctStatus],
    ipv6_text: Callable[[bytes], str],
) -> AccountingValuesOf | None:
    """``radius._speedups.accounting_values`` when ``available()``, bound first to the
    attribute numbers it reads (``attrs``, in the order ``radius.events._ACCOUNTING_ATTRS``
    lists them), the known Acct-Status-Types and the formatter of a 16-octet IPv6
    address (issue 16); None when the extension is not built or is switched off, and the
    caller keeps its Python reference. Bound whenever built, so that the differential
    tests can call the compiled one directly."""
    c = _compiled_or_none
    if c is None or not hasattr(c, "bind_accounting"):  # not built, or built before it
        return None
    c.bind_accounting(attrs, statuses, ipv6_text)
    if _forced_off():
        return None
    compiled: AccountingValuesOf = c.accounting_values
    return compiled


@dataclass(frozen=True, slots=True)
class DataPath:
    """The functions the RADIUS server runs per datagram, and why these."""

    compiled: bool
    reason: str
    decode_request: DecodeRequest
    encode_reply: EncodeReply
    batch_io: BatchIO | None
    dedup_cache: DedupFactory = dedup.DedupCache
    pack_commands: PackCommands | None = None
    counters: CountersFactory | None = None
    reply_router: RouterFactory | None = None


def load() -> DataPath:
    """The data path to run: compiled when ``available()``, else ``radius.packet``."""
    if _compiled_or_none is not None and not _forced_off():
        c = _compiled_or_none
        return DataPath(
            compiled=True,
            reason=COMPILED,
            decode_request=c.decode_request,
            encode_reply=c.encode_reply,
            batch_io=None
            if _switched(ENV_NO_BATCH_IO)
            else BatchIO(recv=c.recv_batch, send=c.send_batch, max_batch=c.MAX_BATCH),
            dedup_cache=c.DedupCache,
            pack_commands=c.pack_commands,
            counters=c.Counters,
            reply_router=c.ReplyRouter,
        )
    return DataPath(
        compiled=False,
        reason=reason(),
        decode_request=packet.decode_request,
        encode_reply=packet.encode_reply,
        batch_io=None,
        dedup_cache=dedup.DedupCache,
        pack_commands=None,
        counters=None,
        reply_router=None,
    )
