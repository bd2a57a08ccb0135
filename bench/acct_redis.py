"""Redis CPU per accounting request, without a RADIUS server or load generator.

Drives ``Store.account`` as the RADIUS path does (a Start per session, then Interim
updates, then Stops; 64 outstanding, one tick's batch each), against a redis-server
with AOF (fsync every second), and measures Redis's own CPU (utime + stime from /proc,
so a busy machine's preemption does not count) per request, plus ``INFO commandstats``
(EVALSHA µs per call; calls per request of every command, the script's inner calls
included). The enforcer's due index is written as the server writes it: by account.lua
when the write carries the enforcer's rule (``AccountingWrite.due``), else by one
``index_due`` ZADD per batch (the enforcer's writer), as before that rule existed.

    .venv/bin/python -m bench.acct_redis --sessions 2000 --interims 10
    .venv/bin/python -m bench.acct_redis --no-rule      # the enforcer's ZADD instead
    .venv/bin/python -m bench.acct_redis --mix          # bench.run acct's mix, per kind

``--mix`` replays what ``bench.run acct`` sends, through the server's own code: the
persons seeded by ``bench.corpus.seed`` (5000 x 2 devices, 1800 s used today), the
``bench.corpus`` acct corpus (one batch: a Start of every session, its Interims, its
Stop), each packet decoded and handed to ``RadiusService.accounting_soon`` with the
enforcer as its observer (its rule rides in the writes, as in ``citywifi serve``; its
loop and the other background loops do not run: ``bench.run acct`` shows their share),
``--window`` at a time. Printed per kind (Start, Interim, Stop): Redis CPU µs per request
(/proc) and ``INFO commandstats`` per request (EVALSHA's µs include its script's
commands, which are listed again on their own lines). ``--callgrind DIR`` runs
redis-server under valgrind's callgrind and writes one profile per phase to DIR (its
``summary:`` line: instructions, which a busy machine does not inflate; divide by the
phase's requests; ``callgrind_annotate --inclusive=yes`` shows where they go).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stack import RedisServer, cpu_seconds
from controller.domain.state import AccountingWrite, SessionFields
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store

NOW = 1_795_579_200  # 2026-11-25 12:00 Asia/Shanghai
DAY = "20261125"
DAY_START = NOW - 43200
WINDOW = 64


def _rule(event_time: int) -> Any:
    try:
        from controller.domain.state import DueRule  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # a tree from before account.lua computed the due time
        return None
    return DueRule(
        daily=7200,
        next_midnight=NOW + 43200,
        stale_before=event_time - 900,
        retry_after=300,
        max_devices=3,
    )


def _write(i: int, status: int, reported: int, rule: bool, describe: bool) -> AccountingWrite:
    pid = f"{i % 5000:020x}"
    event = NOW + reported
    w = AccountingWrite(
        pid=pid,
        sid=f"nas/s{i}",
        client_id="nas",
        status=status,  # type: ignore[arg-type]
        reported=reported,
        event_time=event,
        input_octets=reported * 1000,
        output_octets=reported * 3000,
        cause="1" if status == 2 else "",
        boundaries=[(DAY_START, DAY)],
        session=SessionFields(
            pid=pid,
            known=True,
            client="nas",
            acct_session_id=f"s{i}",
            mac=f"AA-BB-CC-{i % 256:02X}-{i // 256 % 256:02X}-01",
            ip="10.1.0.2",
            nas_ip="10.0.0.1",
            nas_id="ap-1",
            venue="v1",
        ),
        describe=describe,
    )
    if rule and (r := _rule(event)) is not None:
        w = dataclasses.replace(w, due=r)  # type: ignore[call-arg,unused-ignore]
    return w


async def _phase(store: Store, writes: list[AccountingWrite], index: bool) -> None:
    for lo in range(0, len(writes), WINDOW):
        batch = writes[lo : lo + WINDOW]
        results = await asyncio.gather(*(store.account(w) for w in batch))
        if index:  # the enforcer's writer: one ZADD LT for the batch's persons
            await store.index_due({w.pid: w.event_time + 600 for w in batch})
        del results


async def run(o: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cw-acct-redis-"))
    try:
        return await _run(o, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _run(o: argparse.Namespace, work: Path) -> dict[str, Any]:
    with RedisServer(work / "redis", o.redis_server) as server:
        store = Store(client_from_url(server.url))
        await store.load_scripts()
        rule = not o.no_rule and _rule(NOW) is not None
        n = o.sessions
        await _phase(store, [_write(i, 1, 0, rule, True) for i in range(n)], not rule)
        server.reset_stats()
        cpu0, t0 = cpu_seconds([server.pid]), time.perf_counter()
        for k in range(1, o.interims + 1):
            interims = [_write(i, 3, 60 * k, rule, False) for i in range(n)]
            await _phase(store, interims, not rule)
        cpu, wall = cpu_seconds([server.pid]) - cpu0, time.perf_counter() - t0
        stats = server.command_stats()
        await _phase(
            store, [_write(i, 2, 60 * o.interims + 30, rule, False) for i in range(n)], not rule
        )
        await store.close()
    requests = n * o.interims
    per = {
        name: round(c["calls"] / requests, 2)
        for name, c in stats.items()
        if c["calls"] >= requests / 10
    }
    usec = {
        name: round(c["usec"] / requests, 2)
        for name, c in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])
        if c["calls"] >= requests / 10
    }
    result = {
        "due_in_script": rule,
        "interims": requests,
        "redis_cpu_us_per_interim": round(cpu / requests * 1e6, 2),
        "evalsha_us_per_call": stats.get("evalsha", {}).get("usec_per_call"),
        "calls_per_interim": per,
        "usec_per_interim": usec,
        "wall_s": round(wall, 2),
    }
    print(
        f"acct_redis ({'due in account.lua' if rule else 'due by the enforcer ZADD'}): "
        f"{requests} Interims, Redis CPU {result['redis_cpu_us_per_interim']} µs per Interim "
        f"(/proc), EVALSHA {result['evalsha_us_per_call']} µs/call; calls per Interim {per}; "
        f"commandstats µs per Interim {usec}"
    )
    return result


def _callgrind(*args: object) -> None:
    subprocess.run(["callgrind_control", *map(str, args)], check=True, capture_output=True)


async def _mix(o: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bench import corpus
    from bench.radload import read_corpus
    from bench.stack import AP_MAC, CLIENT_ID, PERSON_KEY, SECRET, Ports, write_bench_config
    from controller.config import load_config
    from controller.services.enforcer import Enforcer
    from controller.services.radius_service import RadiusService
    from radius.events import Source, accounting_request
    from radius.packet import decode_request

    binary = o.redis_server
    if o.callgrind:  # redis-server under callgrind: instructions per kind, whatever the load
        from bench.stack import redis_binary

        wrapper, out = work / "redis-callgrind", Path(o.callgrind).resolve()
        wrapper.write_text(
            "#!/bin/sh\nexec valgrind --tool=callgrind --dump-instr=no --compress-strings=no"
            f" --compress-pos=no --callgrind-out-file={out}/callgrind.out.%p"
            f' {redis_binary(o.redis_server)} "$@"\n'
        )
        wrapper.chmod(0o755)
        out.mkdir(parents=True, exist_ok=True)
        binary = str(wrapper)
    with RedisServer(work / "redis", binary) as server:
        config = load_config(
            write_bench_config(work, server.url, Ports.free(), log_level="warning")
        )
        store = Store(client_from_url(server.url))
        await store.load_scripts()
        pop = corpus.Population(PERSON_KEY.encode(), o.persons, o.devices)
        await corpus.seed(config, store, pop, client_id=CLIENT_ID, concurrency=128)
        site = corpus.Site(
            SECRET.encode(), nas_identifier=CLIENT_ID, client_id=CLIENT_ID, ap_mac=AP_MAC
        )
        plan = corpus.Sessions(batch=o.persons * o.devices, interims=o.interims)
        path = work / "acct.bin"
        corpus.write_acct(path, pop, site, plan.batch * (plan.interims + 2), plan)
        enforcer = Enforcer(config, store)  # not started: only its rule, in the writes
        service = RadiusService(config, store, person_key=pop.person_key, observers=(enforcer,))
        source = Source("127.0.0.1", 1813)
        packets = [r.packet for r in read_corpus(path).records]
        kinds: dict[str, dict[str, Any]] = {}
        for phase in range(plan.interims + 2):
            kind = "start" if phase == 0 else "stop" if phase == plan.interims + 1 else "interim"
            part = packets[phase * plan.batch : (phase + 1) * plan.batch]
            server.reset_stats()
            if o.callgrind:
                _callgrind("-z", server.pid)
            cpu0 = cpu_seconds([server.pid])
            for lo in range(0, len(part), o.window):
                futures = []
                for packet in part[lo : lo + o.window]:
                    event = accounting_request(
                        decode_request(packet, site.secret), CLIENT_ID, source
                    )
                    answer = service.accounting_soon(event)
                    assert isinstance(answer, asyncio.Future)
                    futures.append(answer)
                for answer in await asyncio.gather(*futures):
                    assert answer is not None, "a report was not recorded"
            cpu = cpu_seconds([server.pid]) - cpu0
            if o.callgrind:  # one file per phase; its "summary:" line is the instructions
                _callgrind("-d", server.pid, f"{kind}{phase}")
            stats = server.command_stats()
            k = kinds.setdefault(kind, {"requests": 0, "cpu": 0.0, "commands": {}})
            k["requests"] += len(part)
            k["cpu"] += cpu
            for name, c in stats.items():
                into = k["commands"].setdefault(name, {"calls": 0.0, "usec": 0.0})
                into["calls"] += c["calls"]
                into["usec"] += c["usec"]
        memory = server.used_memory()
        await store.close()
    result: dict[str, Any] = {"persons": o.persons, "devices": o.devices, "kinds": {}}
    for kind, k in kinds.items():
        n = k["requests"]
        per = {
            name: {"calls": round(c["calls"] / n, 2), "usec": round(c["usec"] / n, 2)}
            for name, c in sorted(k["commands"].items(), key=lambda kv: -kv[1]["usec"])
            if c["calls"] >= n / 20
        }
        result["kinds"][kind] = {
            "requests": n,
            "redis_cpu_us": round(k["cpu"] / n * 1e6, 2),
            "commands_per_request": per,
        }
        shown = ", ".join(f"{name} {c['calls']:g}x {c['usec']:.1f}" for name, c in per.items())
        print(
            f"acct_redis --mix {kind:8}: {n} requests, Redis CPU "
            f"{result['kinds'][kind]['redis_cpu_us']:6.1f} µs per request (/proc); per "
            f"request (calls, µs): {shown}"
        )
    total = sum(k["requests"] for k in kinds.values())
    result["redis_cpu_us_mix"] = round(sum(k["cpu"] for k in kinds.values()) / total * 1e6, 2)
    result["redis_used_memory"] = memory
    print(
        f"acct_redis --mix: {total} requests, Redis CPU {result['redis_cpu_us_mix']} µs per "
        f"request of the mix; used_memory {memory / 1e6:.1f} MB"
    )
    return result


async def run_mix(o: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cw-acct-mix-"))
    try:
        return await _mix(o, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--interims", type=int, default=10)
    ap.add_argument("--no-rule", action="store_true", help="no DueRule: the enforcer's ZADD")
    ap.add_argument("--redis-server", default="", help="redis-server binary")
    ap.add_argument("--json", default="")
    ap.add_argument("--mix", action="store_true", help="bench.run acct's Start/Interim/Stop mix")
    ap.add_argument("--persons", type=int, default=5000, help="--mix: persons seeded")
    ap.add_argument("--devices", type=int, default=2, help="--mix: sessions per person")
    ap.add_argument("--window", type=int, default=WINDOW, help="--mix: requests outstanding")
    ap.add_argument(
        "--callgrind",
        default="",
        help="--mix: run redis-server under valgrind's callgrind, a profile per kind in DIR",
    )
    o = ap.parse_args()
    if o.mix:
        o.interims = 4 if o.interims == 10 else o.interims  # bench.corpus's default
    result = asyncio.run(run_mix(o) if o.mix else run(o))
    if o.json:
        Path(o.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
