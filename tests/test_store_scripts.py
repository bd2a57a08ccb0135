"""The store's Lua scripts: found by listing the directory, includes expanded, headers
that say what the Python side really passes, a reload after NOSCRIPT (once), and the one
device-counting rule (``lua/lib/devices.lua``) held against its Python model.

Everything that runs a script runs it on a real redis-server.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from redis import exceptions as redis_errors

from controller.domain.enforcement import other_devices
from controller.domain.nas_health import StatsDelta
from controller.domain.state import AccountingWrite, MacLoginAsk, Origin, PersonSnapshot
from controller.storage import keys
from controller.storage.nas_stats import NasStatsStore
from controller.storage.redis_batch import Command
from controller.storage.redis_conn import client_from_url
from controller.storage.scripts import find_scripts, parse_header
from controller.storage.store import Store, StoreUnavailable
from tests.support.redis_proc import RedisProcess
from tests.support.store_rig import StoreRig

LUA = Path(str(resources.files("controller.storage").joinpath("lua")))
NOON = 1_795_579_200  # 2026-11-25 12:00 Asia/Shanghai
DAY = "20261125"


# -- registration ----------------------------------------------------------------------


def test_every_lua_file_is_a_script_and_nothing_else_is() -> None:
    scripts = find_scripts()
    assert set(scripts) == {p.stem for p in LUA.glob("*.lua")}
    for script in scripts.values():
        assert "#include" not in script.source, script.name  # expanded at load time


def test_includes_are_expanded_from_lib_and_hashed_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "fake_scripts"
    (package / "lua" / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "lua" / "one.lua").write_text("-- KEYS[1] k\n-- #include twice.lua\nreturn 1\n")
    (package / "lua" / "lib" / "twice.lua").write_text("local function two() return 2 end\n")
    (package / "lua" / "notes.txt").write_text("not a script")
    monkeypatch.syspath_prepend(str(tmp_path))
    scripts = find_scripts("fake_scripts")
    assert list(scripts) == ["one"]  # found by listing: no name list to keep
    assert "local function two() return 2 end" in scripts["one"].source
    assert scripts["one"].header.count("KEYS") == 1


def test_the_device_rule_is_written_once() -> None:
    """auth_state.lua, commit_login.lua and mac_login.lua include it; none spells the loop
    out."""
    loop = "string.match(open[i]"
    assert (LUA / "lib" / "devices.lua").read_text().count(loop) == 1
    for name in ("auth_state", "commit_login", "mac_login"):
        text = (LUA / f"{name}.lua").read_text()
        assert "-- #include devices.lua" in text and loop not in text
        assert find_scripts()[name].source.count(loop) == 1


def test_headers_parse_ranges_and_open_ends() -> None:
    header = parse_header(
        "-- KEYS[1] a   KEYS[3 .. 2+n] days   KEYS[6+n] b\n-- ARGV[1] x   ARGV[4+n ..] pairs\n"
        "local x = KEYS[9]\n"
    )
    assert header.count("KEYS", 2) == 8 and header.count("ARGV", 2) == 5
    assert header.variadic("ARGV") and not header.variadic("KEYS")


# -- headers against what the Python side passes -------------------------------------------

# the header's ``n`` from what is passed (scripts whose KEYS or ARGV depend on it):
# portal_rate's ARGV[4]; account.lua's packed numbers (ARGV[11]: 14 doubles, then n)
N_OF: dict[str, Callable[[Sequence[Any]], int]] = {
    "account": lambda args: len(args[10]) // 8 - 14,
    "portal_rate": lambda args: int(args[3]),
}


def _body_references(source: str) -> dict[str, int]:
    """The highest literal KEYS[i] / ARGV[i] the script's code (not its header) reads."""
    body = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("--"))
    highest = {"KEYS": 0, "ARGV": 0}
    for table, index in re.findall(r"\b(KEYS|ARGV)\[(\d+)\]", body):
        highest[table] = max(highest[table], int(index))
    return highest


async def _every_script(store: Store) -> None:
    """Run each script at least once through the Store's own methods."""
    pid, mac = "p" * 20, "AA-BB-CC-DD-EE-01"
    origin = Origin("nas", "s1", "00" * 16, "127.0.0.1:1000")
    await store.auth_state(pid, "", mac, DAY, NOON - 600, NOON)
    await store.commit_login(
        pid,
        "",
        mac,
        now=NOON,
        origin=origin,
        nonce="n1",
        max_devices=3,
        stale_before=NOON - 600,
        remember_seconds=0,
    )
    record = {"k": "login", "t": str(NOON), "mac": mac, "client": "nas", "venue": "v"}
    for owner, fields in ((None, record), (pid, None), (pid, record)):
        ask = MacLoginAsk(
            pid=owner,
            user_mac=mac,
            mac=mac,
            now=NOON,
            today=DAY,
            stale_before=NOON - 600,
            daily=3600,
            to_midnight=43200,
            min_grant=60,
            max_devices=3,
            nonce="n2",
            record=fields,
        )
        await store.mac_login(ask)
    for days in ([(NOON - 43200, DAY)], [(NOON - 129600, "20261124"), (NOON - 43200, DAY)]):
        write = AccountingWrite(
            pid=pid,
            sid=f"nas/a{len(days)}",
            client_id="nas",
            status=3,
            reported=60,
            event_time=NOON,
            input_octets=0,
            output_octets=0,
            cause="",
            boundaries=days,
        )
        await store.account(write)
    await store.person_snapshot(pid, DAY)
    await store.mark_closing(pid, "nas/a1", NOON)
    await store.close_stale(pid, "nas/a1", "nas", NOON - 10, "3", NOON)
    await store.close_session(pid, "nas/a2", "nas", "1", shut="gone", now=NOON)
    await store.index_due({pid: NOON})
    await store.reindex_due(pid, float(NOON), NOON + 60)
    await store.acquire_lease(pid, "t", 5000)
    await store.release_lease(pid, "t")
    await store.otp_put("phone", "d", 60, NOON)
    await store.otp_attempt("phone", 5)
    await store.rate_hit(
        [("phone", "x", [(3, 60_000), (10, 3_600_000)])], NOON * 1000, "m", record=True
    )
    await store.rate_admit(
        [("ip", "10.0.0.1", [(3, 60_000)]), ("phone", "x", [(3, 60_000), (10, 3_600_000)])],
        NOON * 1000,
        "m2",
    )
    await store.device_token_put(pid, "tok", NOON + 86400, NOON, 5)
    await store.forget_mac(mac, pid)
    await store.redis.zadd(keys.PROFILE_INDEX, {pid: NOON - 10})  # a profile past retention
    await store.purge_profiles(NOON)
    await NasStatsStore(store).write(
        StatsDelta(NOON // 60, clients={"nas": {"auth:accept": 2}}, heard={"nas": NOON})
    )
    await store.outbox_add({"k": "login", "pid": pid})
    read = await store.outbox_read_raw("c", 10, 60_000)
    await store.outbox_done([eid for eid, _ in read], {})


async def test_each_header_lists_the_keys_and_arguments_passed(
    redis_proc: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int, Sequence[Any]]] = []
    original = Store._script

    def recording(self: Store, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Command:
        calls.append((name, len(keys_), list(args)))
        return original(self, name, keys_, args)

    monkeypatch.setattr(Store, "_script", recording)
    store = Store(client_from_url(redis_proc.url))
    try:
        await store.load_scripts()
        await _every_script(store)
    finally:
        await store.close()
    assert {name for name, _, _ in calls} == set(store.scripts)  # every script exercised
    for name, n_keys, args in calls:
        header = store.scripts[name].header
        n = N_OF[name](args) if name in N_OF else 0
        assert n_keys == header.count("KEYS", n), f"{name}: KEYS passed vs header"
        if header.variadic("ARGV"):
            assert len(args) >= header.count("ARGV", n), f"{name}: ARGV passed vs header"
        else:
            assert len(args) == header.count("ARGV", n), f"{name}: ARGV passed vs header"
        body = _body_references(store.scripts[name].source)
        assert body["KEYS"] <= header.count("KEYS", n), f"{name} reads a KEYS its header lacks"
        assert body["ARGV"] <= header.count("ARGV", n), f"{name} reads an ARGV its header lacks"


# -- NOSCRIPT: reload and retry, once -------------------------------------------------------


async def test_a_flushed_script_cache_is_reloaded_on_every_path(redis_proc: RedisProcess) -> None:
    """SCRIPT FLUSH (what a restarted or failed-over Redis looks like) between calls: the
    hot path (the batched link, many units in one write) and the guarded commands
    (pipelines, single commands) reload and answer."""
    store = Store(client_from_url(redis_proc.url))
    try:
        await store.load_scripts()
        await _every_script(store)
        await store.redis.script_flush()
        await _every_script(store)  # each path meets NOSCRIPT once, then the reload holds
        await store.redis.script_flush()

        async def login(i: int) -> int:
            pid = f"q{i:019d}"
            await store.auth_state(pid, "", f"AA-BB-CC-DD-EE-{i:02X}", DAY, 0, NOON)
            write = AccountingWrite(
                pid=pid,
                sid="nas/x",
                client_id="nas",
                status=3,
                reported=30,
                event_time=NOON,
                input_octets=0,
                output_octets=0,
                cause="",
                boundaries=[(NOON - 43200, DAY)],
            )
            return (await store.account(write)).used_today

        assert await asyncio.gather(*(login(i) for i in range(50))) == [30] * 50  # one batch
        await store.redis.script_flush()
        assert (await store.otp_attempt("nobody", 5)).status == "gone"
        await store.redis.script_flush()
        waits = await store.rate_hit([("phone", "y", [(1, 1000)])], NOON * 1000, "a", record=True)
        assert waits == [0]
    finally:
        await store.close()


async def test_noscript_is_retried_once_not_forever(
    redis_proc: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that forgets again right away (the reload does not stick) fails the call
    with StoreUnavailable after one reload, on both paths; it never loops."""
    store = Store(client_from_url(redis_proc.url))
    reloads = 0

    async def forgetful() -> None:
        nonlocal reloads
        reloads += 1  # loads nothing: the retry meets NOSCRIPT again

    try:
        monkeypatch.setattr(store, "load_scripts", forgetful)
        with pytest.raises(StoreUnavailable) as hot:
            await store.auth_state("p" * 20, "", "", DAY, 0, NOON)
        assert reloads == 1 and isinstance(hot.value.__cause__, redis_errors.NoScriptError)
        with pytest.raises(StoreUnavailable) as guarded:
            await store.otp_attempt("phone", 5)
        assert reloads == 2 and isinstance(guarded.value.__cause__, redis_errors.NoScriptError)
        assert store.health.can_record()  # a script cache is not an outage
    finally:
        await store.close()


async def test_a_lua_error_is_store_unavailable(redis_proc: RedisProcess) -> None:
    """A script that fails (here: WRONGTYPE inside otp_attempt.lua, and inside account.lua
    on the hot path) surfaces as StoreUnavailable, the one error the callers handle."""
    store = Store(client_from_url(redis_proc.url))
    try:
        await store.load_scripts()
        await store.redis.set(keys.otp("phone"), "a string, not a hash")
        with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
            await store.otp_attempt("phone", 5)
        pid = "w" * 20
        await store.redis.set(keys.open_sessions(pid), "a string, not a hash")
        with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
            await store.auth_state(pid, "", "", DAY, 0, NOON)
    finally:
        await store.close()


# -- one device-counting rule: lib/devices.lua against enforcement.other_devices ---------------

MACS = ["", "AA-BB-CC-DD-EE-01", "AA-BB-CC-DD-EE-02", "AA-BB-CC-DD-EE-03"]
HOLD_NAMES = [*MACS[1:], "?0123abcd"]  # a hold without a MAC is named ?<authenticator>


_persons = itertools.count()

sessions = st.dictionaries(
    st.sampled_from([f"nas/s{i}" for i in range(6)]),
    st.tuples(st.sampled_from(MACS), st.integers(-900, 60), st.sampled_from([None, 0, 120, 600])),
    max_size=6,
)
holds = st.dictionaries(st.sampled_from(HOLD_NAMES), st.integers(-120, 120), max_size=4)


@settings(max_examples=250, deadline=None)
@given(
    open_=sessions,
    held=holds,
    mac=st.sampled_from(MACS),
    stale_back=st.integers(0, 900),
    known_now=st.booleans(),
)
def test_lua_counts_devices_as_the_python_rule(
    rig: StoreRig,
    open_: dict[str, tuple[str, int, int | None]],
    held: dict[str, int],
    mac: str,
    stale_back: int,
    known_now: bool,
) -> None:
    """Random open sessions (with and without a MAC, fresh, stale, saved by their slack,
    in the old "mac|last" form too), holds (ended or not, of online devices or not) and
    requests (with and without a MAC): auth_state.lua's count is the Python rule's, and
    commit_login.lua refuses at exactly that many devices and admits at one more."""
    pid = f"d{next(_persons):019d}"
    now, stale_before = NOON, NOON - stale_back
    entries = {
        sid: f"{m}|{NOON + offset}" + ("" if slack is None else f"|{slack}")
        for sid, (m, offset, slack) in open_.items()
    }
    ends = {name: NOON + offset for name, offset in held.items()}
    snapshot = PersonSnapshot(
        used=0,
        open={sid: (m, NOON + offset) for sid, (m, offset, _) in open_.items()},
        closing={},
        block="",
        slack={sid: slack for sid, (_, _, slack) in open_.items() if slack},
    )
    expected = other_devices(
        snapshot, ends, mac=mac, stale_before=stale_before, now=now if known_now else None
    )
    note(f"open {entries}, holds {ends}, mac {mac!r}, expected {expected}")

    async def lua() -> tuple[int, str, str]:
        store = rig.store
        if entries:
            await store.redis.hset(keys.open_sessions(pid), mapping=entries)
        if ends:
            await store.redis.hset(keys.device_holds(pid), mapping=ends)
        state = await store.auth_state(pid, "", mac, DAY, stale_before, now if known_now else None)
        if not known_now:
            return state.other_devices, "", ""
        origin = Origin("nas", "s", "ff" * 16, "127.0.0.1:1")

        async def commit(limit: int) -> str:
            committed = await store.commit_login(
                pid,
                "",
                mac,
                now=now,
                origin=origin,
                nonce="n",
                max_devices=limit,
                stale_before=stale_before,
                remember_seconds=0,
            )
            return committed.status

        return state.other_devices, await commit(expected), await commit(expected + 1)

    counted, at_limit, below = rig.run(lua())
    assert counted == expected
    if known_now:
        assert (at_limit, below) == ("device_limit", "ok")


# -- account.lua: what it stores, as Redis integers (issue 16: numbers passed as strings) --


async def test_account_stores_integers_and_rewrites_gap_and_slack_only_as_they_change(
    redis_proc: RedisProcess,
) -> None:
    """account.lua hands Redis strings (ARGV's own, or '%d'), not Lua numbers, and writes
    'gap'/'slack' only when they change: the record must still read as the integers the
    stale rule gives, on the session hash and in the open hash's "mac|last|slack"."""
    from controller.domain.state import SessionFields
    from radius.attrs import AcctStatus

    store = Store(client_from_url(redis_proc.url))
    pid, sid, mac = "ab" * 10, "nas/s1", "AA-BB-CC-00-00-01"
    session = SessionFields(pid=pid, known=True, client="nas", acct_session_id="s1", mac=mac)
    day_start = NOON - 43200
    start = NOON - 3000  # the session began 3000 s before noon

    async def report(status: int, reported: int, at: int, *, describe: bool = False) -> Any:
        return await store.account(
            AccountingWrite(
                pid=pid,
                sid=sid,
                client_id="nas",
                status=AcctStatus(status),
                reported=reported,
                event_time=at,
                input_octets=reported * 10,
                output_octets=reported * 30,
                cause="1" if status == 2 else "",
                boundaries=[(day_start, DAY)],
                session=session,
                describe=describe,
            )
        )

    async def record() -> dict[str, str]:
        raw = await store.redis.hgetall(keys.session(pid, keys.session_generation(sid, 1)))
        return {_str(k): _str(v) for k, v in raw.items()}

    async def open_entry() -> str:
        value = await store.redis.hget(keys.open_sessions(pid), keys.session_generation(sid, 1))
        return _str(value)

    try:
        await store.load_scripts()
        await report(1, 0, start, describe=True)
        r = await record()
        assert (r["start"], r["seen"], r["last"], r["gap"], r["slack"]) == (
            str(start),
            "0",
            str(start),
            "0",
            "0",
        )
        assert r["mac"] == mac and await open_entry() == f"{mac}|{start}|0"
        # every 300 s, as asked: the gap is 300, no slack
        result = await report(3, 300, start + 300)
        assert result.gap == 300
        r = await record()
        assert (r["seen"], r["last"], r["gap"], r["slack"], r["d:" + DAY]) == (
            "300",
            str(start + 300),
            "300",
            "0",
            "300",
        )
        await report(3, 600, start + 600)  # the same gap: 'gap' and 'slack' stay
        r = await record()
        assert (r["seen"], r["gap"], r["slack"], r["d:" + DAY]) == ("600", "300", "0", "600")
        # then 900 s without a report: the gap widens, the slack follows the stale rule
        result = await report(3, 1500, start + 1500)
        slack = DEFAULT_GRACE * (900 - 300) // 300
        assert result.gap == 900
        r = await record()
        assert (r["gap"], r["slack"], r["d:" + DAY]) == ("900", str(slack), "1500")
        assert await open_entry() == f"{mac}|{start + 1500}|{slack}"
        result = await report(2, 1560, start + 1560)
        assert result.closed_now and result.applied == 60
        r = await record()
        assert (r["seen"], r["closed"], r["shut"], r["gap"], r["slack"]) == (
            "1560",
            str(start + 1560),
            "stop",
            "900",
            str(slack),
        )
        assert _str(await store.redis.get(keys.day_usage(pid, DAY))) == "1560"
    finally:
        await store.close()


MIDNIGHT = NOON + 43200  # 2026-11-26 00:00 Asia/Shanghai
DAY2 = "20261126"


async def test_account_records_each_days_share_once_and_exactly_across_midnight(
    redis_proc: RedisProcess,
) -> None:
    """The session record's d:<day> fields are the seconds the day counters got from it,
    day by day: a report split at midnight adds to both, a retransmitted or reordered one
    to neither, and a record first seen in a report over midnight (its Start lost) gets
    both days' shares; its start and fields (written with 'seen'... in one HSET), and a
    Stop's close (with 'seen'... when the record is there, after its fields when not)."""
    from controller.domain.state import SessionFields

    store = Store(client_from_url(redis_proc.url))
    pid = "cd" * 10
    one = [(NOON - 43200, DAY)]
    two = [(NOON - 43200, DAY), (MIDNIGHT, DAY2)]

    async def report(
        sid: str, status: int, reported: int, at: int, days: Any, *, describe: bool = False
    ) -> int:
        mac = "AA-BB-CC-00-00-0" + sid[-1]
        session = SessionFields(pid=pid, known=True, client="nas", acct_session_id=sid, mac=mac)
        w = AccountingWrite(
            pid=pid,
            sid=f"nas/{sid}",
            client_id="nas",
            status=status,  # type: ignore[arg-type]
            reported=reported,
            event_time=at,
            input_octets=reported,
            output_octets=reported,
            cause="1" if status == 2 else "",
            boundaries=days,
            session=session,
            describe=describe,
        )
        return (await store.account(w)).applied

    async def shares(sid: str) -> tuple[int, int]:
        r = await store.session(pid, keys.session_generation(f"nas/{sid}", 1))
        return int(r.get("d:" + DAY, "0")), int(r.get("d:" + DAY2, "0"))

    async def counters() -> tuple[int, int]:
        return await store.used_on(pid, DAY), await store.used_on(pid, DAY2)

    try:
        await store.load_scripts()
        assert await report("s1", 1, 0, MIDNIGHT - 600, one, describe=True) == 0
        assert await report("s1", 3, 300, MIDNIGHT - 300, one) == 300
        assert await shares("s1") == (300, 0)
        assert await report("s1", 3, 900, MIDNIGHT + 300, two) == 600  # 300 + 300
        assert await shares("s1") == (600, 300) == await counters()
        assert await report("s1", 3, 900, MIDNIGHT + 300, two) == 0  # retransmitted
        assert await report("s1", 3, 300, MIDNIGHT - 300, one) == 0  # reordered
        assert await shares("s1") == (600, 300) == await counters()
        assert await report("s1", 2, 1200, MIDNIGHT + 600, two) == 300
        assert await report("s1", 2, 1200, MIDNIGHT + 600, two) == 0  # retransmitted Stop
        assert await shares("s1") == (600, 600) == await counters()
        r = await store.session(pid, keys.session_generation("nas/s1", 1))
        assert (r["seen"], r["closed"], r["shut"], r["start"]) == (
            "1200",
            str(MIDNIGHT + 600),
            "stop",
            str(MIDNIGHT - 600),
        )
        # first seen in an Interim over midnight: both shares, its fields and start with them
        assert await report("s2", 3, 900, MIDNIGHT + 300, two, describe=True) == 900
        assert await shares("s2") == (600, 300)
        assert await counters() == (1200, 900)
        r = await store.session(pid, keys.session_generation("nas/s2", 1))
        assert (r["start"], r["seen"], r["mac"]) == (
            str(MIDNIGHT - 600),
            "900",
            "AA-BB-CC-00-00-02",
        )
        assert await report("s2", 3, 960, MIDNIGHT + 360, [(MIDNIGHT, DAY2)]) == 60
        assert await shares("s2") == (600, 360)
        assert await counters() == (1200, 960)
        # first seen in its Stop: described, counted and closed by the one report
        assert await report("s3", 2, 60, MIDNIGHT + 360, [(MIDNIGHT, DAY2)], describe=True) == 60
        r = await store.session(pid, keys.session_generation("nas/s3", 1))
        assert (r["start"], r["seen"], r["mac"], r["closed"], r["shut"], r["d:" + DAY2]) == (
            str(MIDNIGHT + 300),
            "60",
            "AA-BB-CC-00-00-03",
            str(MIDNIGHT + 360),
            "stop",
            "60",
        )
        assert list(r)[:7] == ["d:" + DAY2, "seen", "in", "out", "last", "gap", "slack"]
        assert list(r)[-3:] == ["closed", "cause", "shut"]
        assert await report("s3", 2, 60, MIDNIGHT + 360, [(MIDNIGHT, DAY2)]) == 0
        assert await counters() == (1200, 1020)
    finally:
        await store.close()


async def test_a_report_for_a_superseded_generation_moves_to_the_current_one(
    redis_proc: RedisProcess,
) -> None:
    """account.lua reads the generation-1 record's 'gen' only when that record is closed
    ('gen' is only ever written on a closed one): a process still believing generation 1
    after the id was reused is told 'moved' and counted on generation 2, not on 1."""
    store = Store(client_from_url(redis_proc.url))
    pid, sid, t0 = "ef" * 10, "nas/r1", NOON - 3000

    async def report(status: int, reported: int, at: int, generation: int) -> Any:
        w = AccountingWrite(
            pid=pid,
            sid=sid,
            client_id="nas",
            status=status,  # type: ignore[arg-type]
            reported=reported,
            event_time=at,
            input_octets=0,
            output_octets=0,
            cause="1" if status == 2 else "",
            boundaries=[(NOON - 43200, DAY)],
            generation=generation,
        )
        return await store.account(w)

    try:
        await store.load_scripts()
        assert (await report(1, 0, t0, 1)).generation == 1
        assert (await report(2, 300, t0 + 300, 1)).closed_now
        again = await report(1, 0, t0 + 400, 1)  # the id reused: generation 2
        assert again.generation == 2
        first = await store.session(pid, keys.session_generation(sid, 1))
        assert (first["gen"], first["seen"], "closed" in first) == ("2", "300", True)
        # a delayed Interim of generation 1 from a process that believes 1: counted there,
        # as a late report of generation 1 (begun before 2 did), the current one named
        delayed = await report(3, 350, t0 + 350, 1)
        assert (delayed.generation, delayed.applied, delayed.used_today) == (2, 50, 350)
        first = await store.session(pid, keys.session_generation(sid, 1))
        assert (first["seen"], first["d:" + DAY], first["gen"]) == ("350", "350", "2")
        late = await report(3, 60, t0 + 460, 1)  # of generation 2, believed 1
        assert (late.generation, late.applied, late.used_today) == (2, 60, 410)
        second = await store.session(pid, keys.session_generation(sid, 2))
        assert (second["seen"], second["d:" + DAY], "closed" in second) == ("60", "60", False)
        assert (await store.session(pid, keys.session_generation(sid, 1)))["seen"] == "350"
    finally:
        await store.close()


DEFAULT_GRACE = 750  # controller.domain.state.DEFAULT_STALE's grace (interim 300)


def _str(value: bytes | str | None) -> str:
    assert value is not None
    return value.decode() if isinstance(value, bytes) else value


def test_account_lua_reply_maps_field_by_field() -> None:
    """``_account_result`` builds the result positionally (issue 16): each field from its
    own place in account.lua's reply, told apart by values no other field has."""
    from controller.storage.store import _account_result

    reply = [11, 22, 1, 1, 0, 0, b"", 1, 0, 333, b"4444", 0]
    r = _account_result(reply, "nas/s1#2", 2, True)
    assert (r.applied, r.used_today, r.open_sessions, r.closed_now) == (11, 22, 1, True)
    assert (r.snapshot, r.sid, r.generation, r.reopened, r.gap) == (None, "nas/s1#2", 2, True, 333)
    assert (r.due_known, r.due, r.due_indexed) == (True, 4444, True)
    none_due = _account_result([0, 0, 0, 0, 0, 0, b"", 0, 0, 5, b"-1", 0], "s", 1, False)
    assert (none_due.due_known, none_due.due, none_due.due_indexed) == (True, None, False)
    unplanned = _account_result([0, 0, 0, 0, 0, 0, b"", 0, 0, 5, b"", 0], "s", 1, True)
    assert (unplanned.due_known, unplanned.due, unplanned.due_indexed) == (False, None, False)
