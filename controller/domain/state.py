"""What the store reads and writes, as domain types: a person at an Access-Request
(``PersonState``), where a login comes from (``Origin``), one accounting report and what
it did (``AccountingWrite``, ``AccountingResult``), a person as the quota enforcer sees
them (``PersonSnapshot``). Plain frozen values; ``controller.storage.store`` maps Redis
and the Lua replies to and from them, the rest of the code never sees Redis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Final, Literal

from controller.domain.quota import StaleRule
from radius.attrs import AcctStatus
from radius.record import record

LOGIN_REUSE_GRACE = 60  # seconds a consumed credential still admits the same NAS session
DEFAULT_STALE: Final = StaleRule(750, 300)  # the QuotaPolicy defaults


@record
class Origin:
    """Where an Access-Request for a login comes from: the client (NAS) it came through,
    the NAS's session for it (Acct-Session-Id, "" when not sent), its Request
    Authenticator (hex; RFC 2865 §3: unique per request, so a replay repeats it) and the
    source address and port it was sent from ("host:port")."""

    client: str
    session: str = ""
    authenticator: str = ""
    source: str = ""


@record
class LoginUse:
    """The Access-Accept that consumed a one-time credential: when, for which device."""

    at: int
    mac: str
    origin: Origin


@record
class PersonState:
    password: str  # "" when there is no such credential
    client: str  # id of the client the credential was issued for
    bound_mac: str
    used: LoginUse | None
    used_today: int
    other_devices: int  # other devices online or holding a slot (see commit_login.lua)
    block: str  # "" when not blocked, else "until|reason"


CommitStatus = Literal["ok", "gone", "used", "device_limit"]


@record
class Committed:
    """``commit_login.lua``'s answer: ok | gone (the credential expired meanwhile) |
    used | device_limit, and the nonce of the login (the Class's; the same again for a
    NAS retry of one login)."""

    status: CommitStatus
    nonce: str = ""


@record
class MacLoginAsk:
    """One MAC re-authentication for ``mac_login.lua``: the MAC the User-Name names
    (``user_mac``, its owner looked up in the same call when ``pid`` is None: one Redis),
    the device (``mac``), the decision's thresholds as integers (``to_midnight``: seconds
    from ``now`` to the next local midnight; ``min_grant``: at least 1), the nonce of the
    login an acceptance starts, and the audit record's fields but pid and result
    (``record``: queued in the same call on one Redis; None: the caller queues it)."""

    pid: str | None
    user_mac: str
    mac: str
    now: int
    today: str
    stale_before: int
    daily: int
    to_midnight: int
    min_grant: int
    max_devices: int
    nonce: str
    record: Mapping[str, str] | None = None


@record
class MacLoginDone:
    """``mac_login.lua``'s answer: the outcome (a ``controller.domain.access.Outcome``
    value), whose (None: the MAC has no owner), the Session-Timeout of an acceptance, its
    nonce, the block of a blocked person, and whether the audit record is queued."""

    outcome: str
    pid: str | None
    session_timeout: int
    nonce: str
    block: str
    recorded: bool


@record
class OtpAttempt:
    """One counted attempt at a pending SMS code (``otp_attempt.lua``): ``gone``
    (expired, used or never sent), ``locked`` (over the limit until it expires) or
    ``check`` (compare ``digest``, in constant time); ``tries`` so far, this one included."""

    status: Literal["gone", "locked", "check"]
    digest: str
    tries: int


@record
class StaleCheck:
    """What ``enforce_stale.lua`` did with a session the sweep found silent: ``closed``
    now at ``last`` (its last report); ``fresh`` after all (a report arrived, or its
    cadence slack covers it), ``last`` = last report + slack, the open-index score to
    keep; ``gone``: closed already or unknown (``last`` 0)."""

    outcome: Literal["closed", "fresh", "gone"]
    last: int


@record
class DuePerson:
    """An entry of the enforcer's due index: look at ``pid`` by ``at`` (epoch)."""

    pid: str
    at: float


@record
class EnforcerTimers:
    """The earliest due time and the oldest last report among open sessions (None: the
    index is empty): when the enforcer must look next at the latest."""

    next_due: float | None
    oldest_report: float | None


@record
class OutboxEntry:
    """One outbox stream entry (a closed session ``{"k": "close", "ref"}`` or a login
    result for the audit archive), by its stream id."""

    id: str
    fields: Mapping[str, str]


@record
class OpenPage:
    """One page of a walk over the open-session index: its session refs (``pid|sid``)
    and the cursor to go on from (0: the walk is complete, Redis SCAN semantics)."""

    cursor: int
    refs: Sequence[str]


@record
class SessionVersion:
    """A session record as the archiver reads it (empty when expired) and the version
    (its ``seen``) archived already ("" when none)."""

    record: Mapping[str, str]
    archived: str


@record
class CredentialIssue:
    """Which client a credential username was issued for and its login's nonce ("" until
    an Access-Accept consumed it): the accounting fallback when a NAS drops Class."""

    client: str
    nonce: str


@record
class SessionFields:
    """What a session record says about itself, written when it is first seen: whose
    (``known``: tied to a person by a Class this server signed or a credential issued
    for the client, else an anonymous stand-in id), which NAS session, device and
    addresses (``nas_src``: where the NAS sends from, for RFC 5176 requests; ``calling``:
    the Calling-Station-Id as sent, ``mac`` normalised), the login's nonce ("" when
    anonymous), the AP (Called-Station-Id) and the venue it counts for, and the
    Operator-Name the NAS sent (RFC 5580 §4.1, "" when none)."""

    pid: str = ""
    known: bool = False
    client: str = ""
    acct_session_id: str = ""
    user: str = ""
    mac: str = ""
    ip: str = ""
    nas_ip: str = ""
    nas_ipv6: str = ""  # RFC 3162 §2.1: echoed in RFC 5176 requests to an IPv6 NAS
    nas_id: str = ""
    login: str = ""
    calling: str = ""
    nas_src: str = ""
    ap: str = ""
    venue: str = ""
    venue_type: str = ""
    district: str = ""
    operator: str = ""
    operator_name: str = ""
    # the address record (docs/audit.md), "" when the NAS sent none: Framed-IPv6-Address
    # (RFC 6911), Framed-IPv6-Prefix (RFC 3162), Delegated-IPv6-Prefix (RFC 4818), the
    # NAS's public addresses (the client's ``public_addresses``), the NAT port block
    ipv6: str = ""
    ipv6_prefix: str = ""
    ipv6_delegated: str = ""
    nas_public: str = ""
    nat_ip: str = ""
    nat_ports: str = ""  # "first-last"


ADDRESS_FIELDS = ("ipv6", "ipv6_prefix", "ipv6_delegated", "nas_public", "nat_ip", "nat_ports")


@record
class DueRule:
    """What the quota enforcer plans a person with after a report (``plan_person``'s
    arguments at the report's event time), for ``account.lua`` to compute the person's
    due time in the same call (``storage/lua/lib/due.lua``) and index it itself."""

    daily: int  # quota.daily_seconds
    next_midnight: int  # the next local midnight after the event time
    stale_before: int  # sessions without accounting (and slack) since then are stale
    retry_after: int  # quota.interim_interval: a Disconnect ACK's wait before asking again
    max_devices: int  # quota.max_devices (0: no limit)


@record
class AccountingWrite:
    """One Start, Interim-Update or Stop to record (RFC 2866 §5.1), its times already
    corrected for Acct-Delay-Time, its span split at local midnights (``boundaries``)."""

    pid: str
    sid: str
    client_id: str
    status: AcctStatus
    reported: int
    event_time: int
    input_octets: int
    output_octets: int
    cause: str
    boundaries: Sequence[tuple[int, str]]  # (day start epoch, day key), oldest first
    session: SessionFields = SessionFields()  # written when first seen
    generation: int = 1  # the generation of ``sid`` believed current (keys.session_id)
    stale: StaleRule = DEFAULT_STALE  # quota.stale_grace and the interim asked for
    # False: the session is believed recorded already (an Interim/Stop after its Start),
    # so ``session`` is not sent; the store sends it when account.lua asks for it
    describe: bool = True
    # the enforcer's planning rule (Enforcer.due_rule): account.lua computes the due time
    # (and indexes it where the due index shares Redis); None: the snapshot comes back
    due: DueRule | None = None

    @property
    def fields(self) -> dict[str, str]:
        """``session`` as the session hash's fields (storage's mapping, kept here until
        ``controller.storage.store`` maps ``SessionFields`` itself): ``known`` as "1"/"0",
        ``operator_name`` and the address record's fields only when the NAS sent them."""
        f = self.session
        out = {
            "pid": f.pid,
            "known": "1" if f.known else "0",
            "client": f.client,
            "acct_session_id": f.acct_session_id,
            "user": f.user,
            "mac": f.mac,
            "ip": f.ip,
            "nas_ip": f.nas_ip,
            "nas_ipv6": f.nas_ipv6,
            "nas_id": f.nas_id,
            "login": f.login,
            "calling": f.calling,
            "nas_src": f.nas_src,
            "ap": f.ap,
            "venue": f.venue,
            "venue_type": f.venue_type,
            "district": f.district,
            "operator": f.operator,
        }
        if f.operator_name:
            out["operator_name"] = f.operator_name
        for name in ADDRESS_FIELDS:  # only what the NAS sent: most sessions have none
            value = getattr(f, name)
            if value:
                out[name] = value
        return out


@record
class AccountingResult:
    applied: int
    used_today: int
    open_sessions: int
    closed_now: bool
    snapshot: PersonSnapshot | None = None  # the person after this write (the enforcer's)
    sid: str = ""  # the session written: ``AccountingWrite.sid`` of ``generation``
    generation: int = 1
    reopened: bool = False  # a session closed as stale (or gone) reported again
    gap: int = 0  # the session's largest gap between two reports so far (its cadence)
    # with ``AccountingWrite.due``: the due time account.lua computed (None: nothing
    # running), and whether it wrote it to the due index itself (else the enforcer does)
    due_known: bool = False
    due: int | None = None
    due_indexed: bool = False


@record
class PersonRecords:
    """A person's personal records in Redis beyond usage and sessions (their export)."""

    phone: str  # "" once the profile is gone
    seen: int  # epoch of the last login that wrote the profile (0: none)
    device_tokens: tuple[tuple[str, int], ...]  # remembered-device token id -> expiry epoch
    macs: tuple[tuple[str, int], ...]  # MAC remembered for re-authentication -> TTL (s)


@record
class PersonSnapshot:
    """A person as the quota enforcer sees them (``enforce_state.lua``, one atomic read)."""

    used: int  # seconds used on the day asked for
    open: Mapping[str, tuple[str, int]]  # sid -> (mac, epoch of its last accounting)
    closing: Mapping[str, int]  # sid -> epoch its NAS acknowledged a Disconnect-Request
    block: str  # "" or "until|reason"
    # sid -> seconds its NAS's observed cadence adds to the stale grace (quota.StaleRule)
    slack: Mapping[str, int] = field(default_factory=dict)

    def live(self, stale_before: int) -> dict[str, int]:
        """sid -> last report of the sessions not stale at ``stale_before``."""
        return {
            sid: last
            for sid, (_, last) in self.open.items()
            if last + self.slack.get(sid, 0) >= stale_before
        }
