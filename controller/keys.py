"""Every Redis key name is built here.

All keys of one person share the hash tag ``{pid}`` so a Lua script that touches them runs
on one Redis Cluster slot. Global indexes (MAC memory, open-session index, per-NAS sets)
are written by separate commands in the same pipeline, never inside a script.
"""

from __future__ import annotations

PREFIX = "cw"


def person(pid: str) -> str:
    return f"{PREFIX}:{{{pid}}}"


def credential(pid: str, username: str) -> str:
    return f"{person(pid)}:c:{username}"


def day_usage(pid: str, day_key: str) -> str:
    return f"{person(pid)}:u:{day_key}"


def open_sessions(pid: str) -> str:
    return f"{person(pid)}:open"


def session(pid: str, sid: str) -> str:
    return f"{person(pid)}:s:{sid}"


def block(pid: str) -> str:
    return f"{person(pid)}:block"


def profile(pid: str) -> str:
    return f"{person(pid)}:p"


def mac_owner(mac: str) -> str:
    return f"{PREFIX}:mac:{mac}"


OPEN_INDEX = f"{PREFIX}:idx:open"  # zset "pid|sid" -> last accounting epoch


def nas_sessions(client_id: str) -> str:
    return f"{PREFIX}:nas:{client_id}"


def session_ref(pid: str, sid: str) -> str:
    """Member naming a session in the global indexes (pid is hex, so split at the first '|')."""
    return f"{pid}|{sid}"


def parse_session_ref(ref: str) -> tuple[str, str]:
    pid, _, sid = ref.partition("|")
    return pid, sid


def session_id(client_id: str, acct_session_id: str) -> str:
    """Acct-Session-Id is unique only per NAS (RFC 2866 §5.5), so qualify it by client."""
    return f"{client_id}/{acct_session_id}"
