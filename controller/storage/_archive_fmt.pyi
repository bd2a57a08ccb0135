"""Types of the optional C extension ``controller.storage._archive_fmt`` (see
``controller/storage/_archive_fmt.c``; ``archive_text`` is its reference model)."""

from collections.abc import Callable
from datetime import date

def route(
    entries: list[tuple[bytes, list[bytes]]],
    ids: list[bytes],
    logins: list[tuple[bytes, list[bytes]]],
    consoles: list[tuple[bytes, list[bytes]]],
    pids: set[bytes],
    refs: set[bytes],
    /,
) -> None: ...
def login_csv(
    logins: list[tuple[bytes, list[bytes]]],
    phones: dict[bytes, bytes],
    day_of: Callable[[bytes], tuple[bytes, date, bytes]],
    archived_at: bytes,
    /,
) -> list[tuple[date, bytes, int]]: ...
def session_csv(
    records: list[tuple[list[bytes], bytes]],
    day_of: Callable[[bytes], tuple[bytes, date, bytes]],
    archived_at: bytes,
    /,
) -> tuple[list[tuple[date, bytes, bytes, int]], list[int]]: ...
