# Types of the optional C extension radius/_speedups.c (see radius/fastpath.py).
from collections.abc import Callable, Sequence
from typing import Final

from radius.attrs import AcctStatus
from radius.dedup import DedupKey, InProgressType
from radius.fastpath import AccountingValues
from radius.packet import PacketError, Request

MAX_BATCH: Final[int]

def bind(
    request_type: type[Request],
    packet_error: type[PacketError],
    slots: Sequence[object] | None = None,
    /,
) -> None: ...
def decode_request(
    data: bytes, secret: bytes, require_message_authenticator: bool = True
) -> Request: ...
def encode_reply(
    code: int,
    request: Request,
    secret: bytes,
    attrs: bytes = b"",
    *,
    message_authenticator: bool | None = None,
) -> bytes: ...
def recv_batch(
    fd: int, max_count: int, bufsize: int = 4096, /
) -> list[tuple[bytes, tuple[str, int] | tuple[str, int, int, int]]]: ...
def send_batch(
    fd: int, items: Sequence[tuple[bytes, tuple[str, int] | tuple[str, int, int, int]]], /
) -> int: ...
def md5(data: bytes, /) -> bytes: ...
def hmac_md5(key: bytes, data: bytes, /) -> bytes: ...
def bind_dedup(in_progress: InProgressType, /) -> None: ...
def pack_commands(commands: Sequence[Sequence[object]], /) -> bytes: ...
def bind_accounting(
    attrs: tuple[int, ...],
    statuses: dict[int, AcctStatus],
    ipv6_text: Callable[[bytes], str],
    /,
) -> None: ...
def accounting_values(attrs: dict[int, list[bytes]], /) -> AccountingValues: ...

class DedupCache:
    window: float
    max_entries: int

    def __init__(self, window: float, max_entries: int = 200_000) -> None: ...
    def __len__(self) -> int: ...
    def lookup(self, key: DedupKey, now: float) -> bytes | InProgressType | None: ...
    def begin(self, key: DedupKey, now: float) -> None: ...
    def finish(self, key: DedupKey, reply: bytes | None, now: float) -> None: ...

class Counters:
    """The RADIUS shell's per-answer counters (radius/metrics.py)."""

    def __init__(self, bounds: Sequence[float]) -> None: ...
    def sent(self, role: int, client: str, code: int, reason: str, latency: float, /) -> bool: ...
    def dropped(self, role: int, client: str | None, reason: str, /) -> None: ...
    def at_once(self, role: int, status: bool, client: str | None, /) -> None: ...
    def take_metrics(
        self,
    ) -> tuple[
        list[tuple[int, str, int, int]],
        list[tuple[int, str, int]],
        list[tuple[int, int, int]],
        list[tuple[int, tuple[int, ...], float]],
    ]: ...
    def take_tally(
        self,
    ) -> tuple[
        list[tuple[str, int, int, int]],
        list[tuple[str, str, int]],
        list[tuple[str | None, str, int]],
        list[str],
    ]: ...
