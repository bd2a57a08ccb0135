"""A MAC re-authentication decided inside Redis (``storage/lua/mac_login.lua``) held
against its reference model, ``controller.domain.access.decide_access`` on the state
``auth_state.lua`` would have read, with the device count of
``controller.domain.enforcement.other_devices``.

On a real redis-server, over random persons: usage below, at and beyond the allowance,
the minimum grant, midnight near (in a zone with DST too), blocks (until a time, until
lifted), open sessions fresh, stale or saved by their slack, device holds ended or not,
device limits, a MAC with and without an owner; both ways the store calls it (one Redis:
the owner read and the audit record queued in the call; a Cluster's way: the pid given,
the record queued by the caller). The outcome, the Session-Timeout and the Reply-Message
must be ``decide_access``'s; an acceptance holds the device's slot, a refusal does not.
"""

from __future__ import annotations

import itertools
import random
from zoneinfo import ZoneInfo

from hypothesis import given, note, settings
from hypothesis import strategies as st

from controller.config import QuotaPolicy
from controller.domain.access import Outcome, decide_access, mac_decision
from controller.domain.audit import login_result
from controller.domain.enforcement import other_devices
from controller.domain.quota import day_key, local_day, next_midnight
from controller.domain.state import (
    MacLoginAsk,
    MacLoginDone,
    Origin,
    PersonSnapshot,
    PersonState,
)
from controller.storage import keys
from controller.storage.store import DEVICE_HOLD, StoreUnavailable
from tests.support.store_rig import StoreRig

NOON = 1_795_579_200  # 2026-11-25 12:00 Asia/Shanghai
ZONES = [ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Berlin")]
# 2026-03-28 12:00 UTC: Berlin's midnight before its spring-forward night
DST_NOON = 1_774_699_200
MACS = ["AA-BB-CC-DD-EE-01", "AA-BB-CC-DD-EE-02", "AA-BB-CC-DD-EE-03", ""]
HOLD_NAMES = [*MACS[:3], "?0123abcd"]


_persons = itertools.count()

sessions = st.dictionaries(
    st.sampled_from([f"nas/s{i}" for i in range(5)]),
    st.tuples(st.sampled_from(MACS), st.integers(-900, 60), st.sampled_from([None, 0, 120])),
    max_size=4,
)
holds = st.dictionaries(st.sampled_from(HOLD_NAMES), st.integers(-120, 120), max_size=3)
blocks = st.sampled_from(["", "0|abuse", "until|x"])


@settings(max_examples=300, deadline=None)
@given(
    open_=sessions,
    held=holds,
    mac=st.sampled_from(MACS[:3]),
    owned=st.booleans(),
    block=blocks,
    daily=st.sampled_from([0, 600, 3600, 7200, 86400]),
    used_share=st.integers(0, 110),
    edge=st.sampled_from(["share", "midnight", "grant"]),
    nudge=st.integers(-2, 2),
    min_grant=st.sampled_from([0, 1, 60, 300]),
    max_devices=st.one_of(st.integers(0, 3), st.sampled_from([-1, 0, 1]).map(str)),
    tz=st.sampled_from(ZONES),
    base=st.sampled_from([NOON, DST_NOON]),
    before_midnight=st.one_of(st.integers(0, 7200), st.integers(0, 86000)),
    one_call=st.booleans(),
)
def test_mac_login_decides_as_decide_access(
    rig: StoreRig,
    open_: dict[str, tuple[str, int, int | None]],
    held: dict[str, int],
    mac: str,
    owned: bool,
    block: str,
    daily: int,
    used_share: int,
    edge: str,
    nudge: int,
    min_grant: int,
    max_devices: int | str,
    tz: ZoneInfo,
    base: int,
    before_midnight: int,
    one_call: bool,
) -> None:
    pid = f"m{next(_persons):019d}"
    now = next_midnight(base, tz) - 1 - before_midnight
    today = day_key(local_day(now, tz))
    to_midnight = next_midnight(now, tz) - now
    used = {  # a share of the allowance, or right at the edges of the decision
        "share": daily * used_share // 100,
        "midnight": daily - to_midnight + nudge,  # the time left reaches midnight or not
        "grant": daily - max(1, min_grant) + nudge,  # the time left is the minimum grant
    }[edge]
    used = max(0, used)
    stale_before = now - 750
    if block == "until|x":
        block = f"{now + 3600}|x"
    entries = {
        sid: f"{m}|{now + offset}" + ("" if slack is None else f"|{slack}")
        for sid, (m, offset, slack) in open_.items()
    }
    ends = {name: now + offset for name, offset in held.items()}
    snapshot = PersonSnapshot(
        used=used,
        open={sid: (m, now + offset) for sid, (m, offset, _) in open_.items()},
        closing={},
        block=block,
        slack={sid: slack for sid, (_, _, slack) in open_.items() if slack},
    )
    others = other_devices(snapshot, ends, mac=mac, stale_before=stale_before, now=now)
    if isinstance(max_devices, str):  # the limit right at the count: -1, 0, +1
        max_devices = max(0, others + int(max_devices))
    policy = QuotaPolicy(
        daily_seconds=daily, timezone=tz, max_devices=max_devices, min_grant_seconds=min_grant
    )
    state = PersonState("", "", "", None, used, others, block)
    expected = decide_access(
        state, credential=False, password_ok=False, mac=mac, policy=policy, now=now
    )
    if not owned:
        expected = mac_decision(Outcome.UNKNOWN_DEVICE.value, 0, "", policy, now)
    note(f"now {now} ({tz}), used {used}/{daily}, others {others}, expected {expected}")
    record = {"k": "login", "t": str(now), "mac": mac, "client": "nas", "venue": "v1"}

    async def lua() -> tuple[MacLoginDone | None, dict[str, str], bytes | None]:
        r = rig.store.redis
        if owned:
            await r.set(keys.mac_owner(mac), pid)
        else:
            await r.delete(keys.mac_owner(mac))
        if entries:
            await r.hset(keys.open_sessions(pid), mapping=entries)
        if ends:
            await r.hset(keys.device_holds(pid), mapping=ends)
        if block:
            await r.set(keys.block(pid), block)
        if used:
            await r.set(keys.day_usage(pid, today), used)
        ask = MacLoginAsk(
            pid=None if one_call else (pid if owned else None),
            user_mac=mac,
            mac=mac,
            now=now,
            today=today,
            stale_before=stale_before,
            daily=daily,
            to_midnight=to_midnight,
            min_grant=max(1, min_grant),
            max_devices=max_devices,
            nonce="nonce1",
            record=record if one_call else None,
        )
        if ask.pid is None and not one_call:  # the Cluster's way: no owner, no call
            return None, {}, None
        before = await r.xlen(keys.OUTBOX)
        done = await rig.store.mac_login(ask)
        queued = await r.xrevrange(keys.OUTBOX, count=1) if await r.xlen(keys.OUTBOX) else []
        fields = (
            {k.decode(): v.decode() for k, v in queued[0][1].items()}
            if queued and await r.xlen(keys.OUTBOX) > before
            else {}
        )
        held_now = await r.hgetall(keys.device_holds(pid))
        return done, fields, held_now.get(mac.encode())

    done, queued, hold = rig.run(lua())
    if done is None:
        assert expected.outcome is Outcome.UNKNOWN_DEVICE
        return
    got = mac_decision(done.outcome, done.session_timeout, done.block, policy, now)
    assert got == expected
    assert done.pid == (pid if owned else None)
    if expected.accept:
        assert done.nonce == "nonce1"
        assert hold is not None and int(hold) == now + DEVICE_HOLD
    else:
        assert done.nonce == ""
        assert hold is None or int(hold) == ends.get(mac)  # not (re)held
    assert done.recorded is one_call
    if one_call:
        outcome = expected.outcome.value
        assert queued == {**record, "pid": pid if owned else "", "result": login_result(outcome)}
    else:
        assert queued == {}


def _ask(mac: str, now: int, *, daily: int, min_grant: int, max_devices: int) -> MacLoginAsk:
    """A MAC login of one remembered device at ``now``, asked in one call (the owner
    read by the script, the record queued by it)."""
    return MacLoginAsk(
        pid=None,
        user_mac=mac,
        mac=mac,
        now=now,
        today="20261125",
        stale_before=now - 750,
        daily=daily,
        to_midnight=43200,
        min_grant=min_grant,
        max_devices=max_devices,
        nonce="n",
        record={"k": "login", "t": str(now), "mac": mac},
    )


def test_a_record_that_cannot_be_queued_holds_no_slot(rig: StoreRig) -> None:
    """The XADD fails (here WRONGTYPE): the script's error is StoreUnavailable (no answer)
    and, as the record is queued before the hold is written, no slot is held."""
    pid, mac = f"m{next(_persons):019d}", MACS[0]
    ask = _ask(mac, NOON, daily=7200, min_grant=300, max_devices=2)

    async def run() -> tuple[bool, dict[bytes, bytes]]:
        r = rig.store.redis
        await r.set(keys.mac_owner(mac), pid)
        saved = await r.dump(keys.OUTBOX)
        await r.delete(keys.OUTBOX)
        await r.set(keys.OUTBOX, "not a stream")
        try:
            await rig.store.mac_login(ask)
            failed = False
        except StoreUnavailable:
            failed = True
        finally:
            await r.delete(keys.OUTBOX)
            if saved is not None:
                await r.restore(keys.OUTBOX, 0, saved)
        return failed, await r.hgetall(keys.device_holds(pid))

    failed, held = rig.run(run())
    assert failed and held == {}


def test_the_holds_hash_outlives_every_hold(rig: StoreRig) -> None:
    """300 logins of one person, mac_login.lua's and commit_login.lua's (they hold a slot
    alike): between two, the clock moves on by up to two holds (the hash's TTL aged by as
    much with PEXPIRE, or the hash deleted when it would have expired) and accounting may
    release a hold (HDEL; the hash goes with its last hold). After each, every hold that
    has not ended has its hash for at least as long as it runs (a hold gone early frees a
    device slot: the device limit counts it), and the hash lives no longer than one hold
    past the login (docs/radius.md: personal data, kept 90 s after the last hold). A
    script that saved its EXPIRE by refreshing the TTL only now and then must keep both
    (issue 16: an EXPIRE is a write the AOF copies)."""
    rng = random.Random(16)
    pid = f"h{next(_persons):019d}"
    macs = [f"AA-BB-CC-DD-02-{i:02X}" for i in range(6)]
    held = keys.device_holds(pid)
    slack = 1000  # ms the real clock may age the hash during a step

    async def run() -> None:
        r = rig.store.redis
        for mac in macs:
            await r.set(keys.mac_owner(mac), pid)
        now = NOON
        for login in range(300):
            gap = rng.choice([0, 1, 10, rng.randrange(2 * DEVICE_HOLD + 2)])
            now += gap
            ttl = await r.pttl(held)
            if ttl > gap * 1000:
                await r.pexpire(held, ttl - gap * 1000)
            elif ttl > 0:
                await r.delete(held)
            if rng.random() < 0.3:
                await r.hdel(held, rng.choice(macs))
            mac = rng.choice(macs)
            if rng.random() < 0.5:
                done = await rig.store.mac_login(
                    _ask(mac, now, daily=86400, min_grant=60, max_devices=len(macs))
                )
                assert done.outcome == "accept"
            else:
                committed = await rig.store.commit_login(
                    pid,
                    "",
                    mac,
                    now=now,
                    origin=Origin("nas", "s", f"{login:032x}", "10.0.0.1:1000"),
                    nonce="n",
                    max_devices=len(macs),
                    stale_before=now - 750,
                    remember_seconds=0,
                )
                assert committed.status == "ok"
            ttl, ends = await r.pttl(held), await r.hgetall(held)
            assert ends[mac.encode()] == str(now + DEVICE_HOLD).encode()
            seen = f"{now - NOON} s: {ttl} ms left, holds {ends}"
            assert 0 < ttl <= DEVICE_HOLD * 1000, seen
            for end in ends.values():
                assert ttl >= (int(end) - now) * 1000 - slack, seen

    rig.run(run())
