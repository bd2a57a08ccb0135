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


def device_holds(pid: str) -> str:
    """Device slots held by an Access-Accept until the device's session is seen open:
    MAC (or ``?<authenticator>`` without one) -> epoch the hold ends."""
    return f"{person(pid)}:hold"


def profile(pid: str) -> str:
    return f"{person(pid)}:p"


_PROFILE_HEAD, _, _PROFILE_TAIL = profile("\0").encode().partition(b"\0")


def profile_raw(pid: bytes) -> bytes:
    """``profile`` of a pid as bytes (the archiver's phone lookups: one per person of a
    round, without decoding and encoding it again)."""
    return _PROFILE_HEAD + pid + _PROFILE_TAIL


PROFILE_INDEX = f"{PREFIX}:idx:profiles"  # zset pid -> epoch last seen (the retention purge)


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


def session_id(client_id: str, acct_session_id: str, generation: int = 1) -> str:
    """Acct-Session-Id is unique only per NAS (RFC 2866 §5.5), so qualify it by client;
    and a NAS reuses ids (Cisco restarts them at 1 after a reload), so a later session
    with the same id is generation 2, 3, … of it: ``<client>#<n>/<id>`` (client ids never
    hold ``#`` or ``/``). Generation 1 keeps the plain ``<client>/<id>``, whose record
    also holds the current generation (field ``gen``)."""
    if generation <= 1:
        return f"{client_id}/{acct_session_id}"
    return f"{client_id}#{generation}/{acct_session_id}"


def session_generation(sid: str, generation: int) -> str:
    """The sid of another generation of the same (client, Acct-Session-Id)."""
    head, _, acct_session_id = sid.partition("/")
    return session_id(head.partition("#")[0], acct_session_id, generation)


def client_of(sid: str) -> str:
    """The client id a session id was qualified with."""
    return sid.partition("/")[0].partition("#")[0]


# -- outbox: closed sessions and login results on their way to the archive (services.archiver)

OUTBOX = f"{PREFIX}:outbox"  # global stream, XADDed in the pipeline of the close / login
OUTBOX_GROUP = "archiver"  # its consumer group (every serve's archiver is a consumer)


def archived_mark(pid: str, sid: str) -> str:
    """Session-Time of the version of a closed session already in the archive (dedup)."""
    return f"{person(pid)}:a:{sid}"


# -- captive portal: SMS codes, rate limits, what the NAS redirect said about an address


def otp(phone_id: str) -> str:
    """Hash of the pending SMS code of one phone (``phone_id``: keyed hash, never the number)."""
    return f"{PREFIX}:otp:{{{phone_id}}}"


def rate(dimension: str, ident: str) -> str:
    """Sliding-window log of SMS-code requests for one phone / MAC / NAS / source IP."""
    return f"{PREFIX}:rl:{{{dimension}:{ident}}}"


def portal_client(address: str) -> str:
    """Portal memory of a client address: NAS, MAC, venue and, after login, the person."""
    return f"{PREFIX}:pc:{{{address}}}"


def device_tokens(pid: str) -> str:
    """Remembered-device cookies of a person still honoured: zset token id -> expiry."""
    return f"{person(pid)}:dev"


# -- quota enforcer (controller.services.enforcer)

DUE_INDEX = f"{PREFIX}:idx:due"  # zset pid -> epoch the enforcer should look at the person


CADENCE = f"{PREFIX}:idx:cadence"  # zset client id -> largest gap between reports seen (s)


def closing(pid: str) -> str:
    """Sessions whose NAS acknowledged a Disconnect-Request: sid -> epoch of the ACK."""
    return f"{person(pid)}:closing"


def lease(pid: str) -> str:
    """Which enforcer process acts on the person right now (SET NX PX, token value)."""
    return f"{person(pid)}:lease"


def health_probe(instance: str) -> str:
    """A process's store health probe (``Store.probe``): a short-lived write."""
    return f"{PREFIX}:health:{instance}"


def eap_credential(username: str) -> str:
    """An EAP (Passpoint) credential by username: hash of person, argon2id hash, times
    (``storage/eap_credentials.py``). Global, like ``mac_owner``: a login knows only the
    username."""
    return f"{PREFIX}:eap:{username}"


def eap_credentials(pid: str) -> str:
    """The usernames of a person's EAP credentials (a set), for the status page and revoke."""
    return f"{person(pid)}:eap"


# -- console accounts (storage/accounts.py, issue 17)

USERS = f"{PREFIX}:acct:users"


def user_key(name: str) -> str:
    """A console account (hash: argon2id hash, role, TOTP secret, disabled)."""
    return f"{PREFIX}:acct:user:{name}"


def failures_key(name: str) -> str:
    """A console account's failed sign-ins in the lock-out window."""
    return f"{PREFIX}:acct:fail:{name}"


def lock_key(name: str) -> str:
    """Present while a console account is locked out (TTL: the rest of the lock)."""
    return f"{PREFIX}:acct:lock:{name}"


def totp_used_key(name: str, step: int) -> str:
    """A TOTP step already used by this account (refuses a replayed code)."""
    return f"{PREFIX}:acct:totp:{name}:{step}"


def session_key(session_id: str) -> str:
    """A console session, server-side (random id; TTL: its expiry)."""
    return f"{PREFIX}:acct:sess:{session_id}"


def user_sessions_key(name: str) -> str:
    """A console account's sessions (ended when it is disabled)."""
    return f"{PREFIX}:acct:usess:{name}"


# -- per-client RADIUS trace (storage/trace.py, issue 17)

TRACE_SWITCHES = f"{PREFIX}:trace:on"  # sorted set: client -> epoch second its trace ends


def trace_log(client_id: str) -> str:
    """The stream of a traced client's packets (capped, expiring after the trace)."""
    return f"{PREFIX}:trace:log:{client_id}"


# -- config reload status (storage/reload_status.py, issue 17): the console's registry page

RELOAD_STATUS = f"{PREFIX}:stats:reload"  # JSON of the last SIGHUP reload (any process)

# -- NAS health counters (controller.storage.nas_stats; controller.domain.nas_health) -----
# A target's three keys (totals, minute ring, 30-minute ring) share its hash tag, so the
# one script that adds a flush to them (nas_stats_add.lua) runs on one Cluster slot.

NAS_HEARD = f"{PREFIX}:stats:nas_heard"  # zset client id -> epoch of its last request seen


def nas_totals(client_id: str) -> str:
    """Hash of one client's counters since the start (``radius.tally`` field names)."""
    return f"{PREFIX}:stats:{{nas:{client_id}}}"


def nas_minutes(client_id: str, hour: int) -> str:
    """Hash ``<epoch minute>|<series>`` -> count of one client's hour ``hour``
    (epoch // 3600); expires three hours on."""
    return f"{nas_totals(client_id)}:m:{hour}"


def nas_bins(client_id: str, day: int) -> str:
    """Hash ``<epoch minute // 30>|<series>`` -> count of one client's UTC day ``day``
    (epoch // 86400; the day chart); expires two days on."""
    return f"{nas_totals(client_id)}:b:{day}"


def scope_totals(scope: str) -> str:
    """Hash of the counters of a scope: ``city`` or ``op:<operator id>``."""
    return f"{PREFIX}:stats:{{scope:{scope}}}"


def scope_minutes(scope: str, hour: int) -> str:
    return f"{scope_totals(scope)}:m:{hour}"


def scope_bins(scope: str, day: int) -> str:
    return f"{scope_totals(scope)}:b:{day}"


# -- personal-data inventory (services/persons.py: erase, export; docs/audit.md)

# A person's own keys by family (the first word after ``cw:{pid}:``). An erasure deletes
# the personal ones and keeps the anonymous usage the settlement needs until its own
# expiry: day counters, session records and their indexes, the archive marks, a block.
ERASED_FAMILIES = frozenset({"p", "c", "dev", "eap"})  # profile, credentials, devices, EAP
USAGE_FAMILIES = frozenset({"u", "open", "s", "a", "closing", "lease", "hold", "block"})
MAC_PREFIX = f"{PREFIX}:mac:"  # MAC memory: its value names the person
PORTAL_CLIENT_PREFIX = f"{PREFIX}:pc:"  # portal client memory (field ``pid``)
SCAN_ALL = f"{PREFIX}:*"  # an erasure reads the key space once (SCAN), sorting as below


def person_family(key: str, pid: str) -> str | None:
    """The family of one of a person's own keys (``p``, ``u``, ``s``, …), else None."""
    head = f"{person(pid)}:"
    if not key.startswith(head):
        return None
    return key[len(head) :].partition(":")[0]


def erase_family(key: str, pid: str) -> str | None:
    """What an erasure of ``pid`` does with ``key``: the family to delete (``p``, ``c``,
    ``dev``, ``eap``; ``otp``: a pending SMS code of one of the person's devices; ``rl``:
    a rate-limit log of the person's number), ``mac`` / ``pc`` (MAC or portal memory:
    read its value first), or None (not the person's, or their anonymous usage)."""
    family = person_family(key, pid)
    if family is not None:
        return family if family in ERASED_FAMILIES else None
    if key.startswith(otp(f"{pid}:")[:-1]):  # cw:otp:{<pid>:<device>}
        return "otp"
    rate_head = f"{PREFIX}:rl:{{"
    if key.startswith(rate_head) and key.endswith("}"):  # cw:rl:{<dimension>:<value>}
        value = key[len(rate_head) : -1].partition(":")[2]
        return "rl" if value == pid or value.startswith(f"{pid}:") else None
    if key.startswith(MAC_PREFIX):
        return "mac"
    if key.startswith(PORTAL_CLIENT_PREFIX):
        return "pc"
    return None
