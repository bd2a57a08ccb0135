"""The enforcer's due time computed in Redis (``storage/lua/lib/due.lua``, run by
account.lua) held against its Python model, the enforcement projection
(``controller.domain.enforcement.plan_person(...).index_at(now)``, as the enforcer plans
after each report: not forced, no session starts).

Two ways, both on a real redis-server: the Lua function alone on random persons (open
sessions fresh, stale or saved by their slack, with and without a MAC, acknowledged
Disconnects, blocks, usage below and beyond the allowance, midnight near, device limits),
and through ``Store.account`` with a ``DueRule``: a Start's reply carries both the
snapshot and the due time, which must be the plan of that snapshot, and the due index
holds it (ZADD LT) when Redis is one.
"""

from __future__ import annotations

import itertools
from importlib import resources
from pathlib import Path

from hypothesis import given, note, settings
from hypothesis import strategies as st

from controller.domain.enforcement import plan_person
from controller.domain.state import AccountingWrite, DueRule, PersonSnapshot
from controller.storage import keys
from radius.attrs import AcctStatus
from tests.support.store_rig import StoreRig

LIB = Path(str(resources.files("controller.storage").joinpath("lua", "lib", "due.lua")))
NOON = 1_795_579_200  # 2026-11-25 12:00 Asia/Shanghai
MIDNIGHT = NOON + 12 * 3600
DAY = "20261125"

# ARGV: block used now daily midnight stale_before retry max_devices #open-flat open... closing...
WRAPPER = (
    LIB.read_text()
    + """
local open, closing = {}, {}
local k = tonumber(ARGV[9])
for i = 10, 9 + k do open[#open + 1] = ARGV[i] end
for i = 10 + k, #ARGV do closing[#closing + 1] = ARGV[i] end
local at = due_at(open, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
                  tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]),
                  function() return closing end)
if at == nil then return -1 end
return at
"""
)

MACS = ["", "AA-BB-CC-DD-EE-01", "AA-BB-CC-DD-EE-02", "AA-BB-CC-DD-EE-03"]


def _expected(
    snap: PersonSnapshot, now: int, daily: int, midnight: int, grace: int, retry: int, limit: int
) -> int:
    plan = plan_person(
        snap,
        now=now,
        daily=daily,
        next_midnight=midnight,
        stale_before=now - grace,
        retry_after=retry,
        max_devices=limit,
    )
    at = plan.index_at(now)
    return -1 if at is None else at


sessions = st.dictionaries(
    st.sampled_from([f"nas/s{i}" for i in range(6)]),
    st.tuples(st.sampled_from(MACS), st.integers(-1200, 0), st.sampled_from([0, 0, 120, 600])),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(
    open_=sessions,
    acked=st.dictionaries(st.sampled_from([f"nas/s{i}" for i in range(7)]), st.integers(-900, 0)),
    blocked=st.booleans() | st.just(False),
    used=st.integers(0, 7200),
    daily=st.sampled_from([0, 1, 600, 3600, 7200]),
    to_midnight=st.integers(1, 7200),
    grace=st.sampled_from([0, 300, 600]),
    retry=st.sampled_from([60, 300]),
    limit=st.integers(0, 3),
)
def test_lua_due_time_is_the_python_projection(
    rig: StoreRig,
    open_: dict[str, tuple[str, int, int]],
    acked: dict[str, int],
    blocked: bool,
    used: int,
    daily: int,
    to_midnight: int,
    grace: int,
    retry: int,
    limit: int,
) -> None:
    now = NOON
    midnight = now + to_midnight
    snap = PersonSnapshot(
        used=used,
        open={sid: (mac, now + back) for sid, (mac, back, _) in open_.items()},
        closing={sid: now + back for sid, back in acked.items() if sid in open_},
        block="1795600000|admin" if blocked else "",
        slack={sid: slack for sid, (_, _, slack) in open_.items() if slack},
    )
    expected = _expected(snap, now, daily, midnight, grace, retry, limit)
    flat_open = [
        x for sid, (mac, back, slack) in open_.items() for x in (sid, f"{mac}|{now + back}|{slack}")
    ]
    flat_closing = [x for sid, back in acked.items() for x in (sid, str(now + back))]
    args = [snap.block, used, now, daily, midnight, now - grace, retry, limit, len(flat_open)]
    note(f"snapshot {snap}, expected {expected}")
    got = rig.run(rig.store.redis.eval(WRAPPER, 0, *args, *flat_open, *flat_closing))
    assert got == expected


_persons = itertools.count()


@settings(max_examples=60, deadline=None)
@given(
    others=st.lists(st.tuples(st.sampled_from(MACS), st.integers(-900, 0)), max_size=4),
    used=st.integers(0, 4000),
    daily=st.sampled_from([600, 3600]),
    limit=st.integers(0, 3),
)
def test_account_lua_indexes_the_due_time_of_its_own_snapshot(
    rig: StoreRig,
    others: list[tuple[str, int]],
    used: int,
    daily: int,
    limit: int,
) -> None:
    """A Start through the store with the enforcer's rule: the reply's due time is the
    plan of the reply's own snapshot, and it is in the due index (one Redis)."""
    store = rig.store
    pid = f"u{next(_persons):019d}"
    rule = DueRule(
        daily=daily, next_midnight=MIDNIGHT, stale_before=NOON - 600, retry_after=300,
        max_devices=limit,
    )  # fmt: skip

    async def run() -> tuple[int | None, PersonSnapshot | None, float | None]:
        if others:
            await store.redis.hset(
                keys.open_sessions(pid),
                mapping={f"nas/o{i}": f"{m}|{NOON + back}|0" for i, (m, back) in enumerate(others)},
            )
        await store.redis.set(keys.day_usage(pid, DAY), used)
        write = AccountingWrite(
            pid=pid,
            sid="nas/new",
            client_id="nas",
            status=AcctStatus.START,
            reported=0,
            event_time=NOON,
            input_octets=0,
            output_octets=0,
            cause="",
            boundaries=[(NOON - 43200, DAY)],
            due=rule,
        )
        result = await store.account(write)
        assert result.due_known and result.due_indexed == store.indexes_in_scripts
        score = await store.redis.zscore(keys.DUE_INDEX, pid)
        return result.due, result.snapshot, score

    due, snap, score = rig.run(run())
    assert snap is not None
    expected = _expected(snap, NOON, daily, MIDNIGHT, 600, 300, limit)
    assert (-1 if due is None else due) == expected
    assert score == (None if due is None else float(due))


def test_an_interim_with_a_rule_returns_the_due_time_without_the_snapshot(rig: StoreRig) -> None:
    """What makes an Interim cheap: no snapshot in the reply, the due time instead; the
    open-session index is written by the script itself."""
    store = rig.store
    pid = f"i{next(_persons):019d}"
    rule = DueRule(
        daily=3600, next_midnight=MIDNIGHT, stale_before=NOON - 600, retry_after=300,
        max_devices=0,
    )  # fmt: skip

    def write(status: AcctStatus, reported: int) -> AccountingWrite:
        return AccountingWrite(
            pid=pid,
            sid="nas/x",
            client_id="nas",
            status=status,
            reported=reported,
            event_time=NOON + reported,
            input_octets=0,
            output_octets=0,
            cause="",
            boundaries=[(NOON - 43200, DAY)],
            due=rule,
        )

    async def run() -> None:
        await store.account(write(AcctStatus.START, 0))
        result = await store.account(write(AcctStatus.INTERIM_UPDATE, 600))
        assert result.snapshot is None and result.applied == 600
        assert result.due == NOON + 3600  # 3000 s left from NOON + 600
        assert await store.redis.zscore(keys.DUE_INDEX, pid) == NOON + 3600
        ref = keys.session_ref(pid, "nas/x")
        assert await store.redis.zscore(keys.OPEN_INDEX, ref) == NOON + 600
        assert await store.redis.sismember(keys.nas_sessions("nas"), ref)
        await store.account(write(AcctStatus.STOP, 900))
        assert await store.redis.zscore(keys.OPEN_INDEX, ref) is None

    rig.run(run())
