"""citywifi next to the FreeRADIUS + rlm_redis reference ("c"), same load, one table.

    .venv/bin/python -m bench.side_by_side [--duration 15] [--warmup 2] [--window 64] \\
        [--workers 1] [--workloads auth,acct] [--loadgen radblast|radbench] [--json out.json]

The reference set-up is the one in ``<reference>/freeradius`` (default
``../shared/reference-bench`` next to the project root): FreeRADIUS 3 with a users file
and a daily counter in Redis (``GET`` per Access-Request, one ``EVAL`` per Interim/Stop),
Redis with AOF and fsync every second, 5,000 users who used 3,000 s today. Its
``make_raddb.py c`` builds the FreeRADIUS tree and its ``radload/mkcorpus.py`` the
corpora; both are run from a copy of the reference directory, so nothing is written
into it. Then, one after the other, each workload runs against:

- FreeRADIUS ``c``: fresh ``freeradius -f`` and freshly seeded Redis per workload;
- citywifi: ``bench.run``'s scenario (fresh redis-server, seeded persons, ``citywifi
  serve --workers N``; MAC re-authentication for ``auth``, Class-tagged sessions for
  ``acct``).

Both use the same redis-server binary (Debian's, as the reference did), the same load
generator (the reference's C ``radblast`` by default; ``--loadgen radbench`` for ours),
window, duration, warm-up and timeout. Requires Debian's ``freeradius``,
``freeradius-redis`` and ``redis-server`` packages; says so when they are missing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import run, stack

PACKAGES = "apt-get install -y freeradius freeradius-utils freeradius-redis redis-server"
RLM_REDIS = Path("/usr/lib/freeradius/rlm_redis.so")
SEED_USED = 3000  # seconds each reference user used today (the reference's SEED_USED)
USERS = 5000


def check_prerequisites(reference: Path, loadgen: str) -> list[str]:
    """Every missing piece, as a line to print (empty: ready)."""
    problems = []
    for part in ("freeradius/make_raddb.py", "radload/mkcorpus.py", "freeradius/snippets"):
        if not (reference / part).exists():
            problems.append(f"reference bench: {reference / part} not found (--reference DIR)")
    if shutil.which("freeradius") is None:
        problems.append(f"freeradius is not installed: {PACKAGES}")
    if not RLM_REDIS.exists():
        problems.append(f"rlm_redis ({RLM_REDIS}) is not installed: {PACKAGES}")
    if shutil.which("redis-server") is None:
        problems.append(f"redis-server is not installed: {PACKAGES}")
    if not Path("/etc/freeradius/3.0/radiusd.conf").exists():
        problems.append(f"/etc/freeradius/3.0 (the stock config make_raddb.py copies): {PACKAGES}")
    unbuilt = loadgen == "radblast" and not (reference / "radload/radblast").exists()
    if unbuilt and (shutil.which("make") is None or shutil.which("gcc") is None):
        problems.append("radblast is not built and gcc/make are missing: apt-get install gcc make")
    return problems


def udp_bound(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``/udp (from /proc/net/udp)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        return any(line.split()[1] == want for line in f.readlines()[1:])


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass
class Reference:
    """A working copy of the reference bench with its FreeRADIUS tree for set-up c."""

    source: Path
    work: Path
    ports: stack.Ports
    redis_port: int

    @property
    def copy(self) -> Path:
        return self.work / "reference-bench"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "WORK": str(self.work / "fr"),
            "AUTH_PORT": str(self.ports.auth),
            "ACCT_PORT": str(self.ports.acct),
            "REDIS_PORT": str(self.redis_port),
            "SECRET": stack.SECRET,
            "USERS": str(USERS),
        }

    def prepare(self, loadgen: str) -> Path:
        """Copy the reference, build FreeRADIUS tree c; returns the radblast binary."""
        shutil.copytree(self.source, self.copy, ignore=shutil.ignore_patterns("results"))
        for d in (self.copy, *self.copy.rglob("*")):
            if d.is_dir():
                d.chmod(0o755)
            else:
                d.chmod(d.stat().st_mode | 0o200)
        radblast = self.copy / "radload" / "radblast"
        if loadgen == "radblast" and not radblast.exists():
            subprocess.run(["make", "-C", str(self.copy / "radload"), "radblast"], check=True)
        run.log("reference: make_raddb.py c (a FreeRADIUS tree with rlm_redis)")
        subprocess.run(
            [sys.executable, str(self.copy / "freeradius" / "make_raddb.py"), "c"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return radblast

    def corpus(self, workload: str, count: int) -> Path:
        out = self.work / f"fr-{workload}.bin"
        spec = ["--count", str(count)] + (["--tag", "bench"] if workload == "acct" else [])
        subprocess.run(
            [
                sys.executable,
                str(self.copy / "radload" / "mkcorpus.py"),
                workload,
                *spec,
                "--users",
                str(USERS),
                "--secret",
                stack.SECRET,
                "--out",
                str(out),
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        return out

    def seed_redis(self, redis: stack.RedisServer) -> None:
        """FLUSHALL, then every user's daily counter at SEED_USED (as the reference does)."""
        import redis as redis_py

        mk = load_module(self.copy / "radload" / "mkcorpus.py", "reference_mkcorpus")
        client = redis_py.Redis(host="127.0.0.1", port=redis.port)
        try:
            client.flushall()
            day = time.strftime("%Y%m%d")  # FreeRADIUS %D: the request's local date
            pipe = client.pipeline(transaction=False)
            for i in range(USERS):
                pipe.set(f"daily:{mk.user_name(i)}:{day}", SEED_USED, ex=172800)
            pipe.execute()
        finally:
            client.close()


def run_freeradius(
    ref: Reference, workload: str, corpus_path: Path, o: run.Options
) -> dict[str, Any]:
    """One workload against FreeRADIUS c: fresh Redis (seeded) and fresh server."""
    rdir = ref.work / f"fr-redis-{workload}"
    redis = stack.RedisServer(rdir, o.redis_server or "redis-server")
    redis.port = ref.redis_port  # the port make_raddb.py wrote into mods-available/redis
    setup = ref.work / "fr" / "c"
    log = (setup / "server.out").open("ab")
    with redis:
        ref.seed_redis(redis)
        proc = subprocess.Popen(
            ["freeradius", "-f", "-d", str(setup / "raddb")], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            stack.wait_for(
                lambda: (
                    proc.poll() is not None
                    or (udp_bound(ref.ports.auth) and udp_bound(ref.ports.acct))
                ),
                30,
                "freeradius to bind its ports",
            )
            if proc.poll() is not None:
                raise stack.StackError(f"freeradius exited with {proc.returncode}")
            out = ref.work / f"fr-{workload}.json"
            cmd = run.blast_command(
                o,
                corpus_path,
                auth_port=ref.ports.auth,
                acct_port=ref.ports.acct,
                loop=workload == "auth",  # as the reference's bench.py: accounting once
                out=out,
                label=f"freeradius-c/{workload}",
                require_ma=False,
            )
            server_cpu = stack.CpuMeter(lambda: [proc.pid])
            redis_cpu = stack.CpuMeter(lambda: [redis.pid])
            server_cpu.start()
            redis_cpu.start()
            result = run.blast(cmd, out, o.loadgen)
            result["server_cpu_cores"] = server_cpu.stop()
            result["redis_cpu_cores"] = redis_cpu.stop()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
    return {"scenario": workload, "server": "freeradius-c", "loadgen": o.loadgen, **result}


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b:
        return "-"
    return f"{a / b:.2f}"


def comparison(rows: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> str:
    """The side-by-side table: per workload, each figure for both and citywifi ÷ FR."""
    head = f"{'workload':8} {'figure':22} {'citywifi':>12} {'FreeRADIUS c':>13} {'ratio':>7}"
    out = [head, "-" * len(head)]
    for workload, cw, fr in rows:

        def eff(r: dict[str, Any]) -> float | None:
            cpu = r["server_cpu_cores"] + r["redis_cpu_cores"]
            return r["rps"] / cpu if cpu else None

        figures = [
            ("answers/s", cw["rps"], fr["rps"], "{:.0f}"),
            ("latency p50 ms", cw["lat_ms"]["p50"], fr["lat_ms"]["p50"], "{:.2f}"),
            ("latency p99 ms", cw["lat_ms"]["p99"], fr["lat_ms"]["p99"], "{:.2f}"),
            ("unanswered", cw["unanswered"], fr["unanswered"], "{}"),
            ("server CPU (cores)", cw["server_cpu_cores"], fr["server_cpu_cores"], "{:.2f}"),
            ("redis CPU (cores)", cw["redis_cpu_cores"], fr["redis_cpu_cores"], "{:.2f}"),
            ("answers per CPU-second", eff(cw), eff(fr), "{:.0f}"),
            ("load generator CPU", cw["loadgen_cpu_cores"], fr["loadgen_cpu_cores"], "{:.2f}"),
        ]
        for i, (name, a, b, fmt) in enumerate(figures):
            shown_a = "-" if a is None else fmt.format(a)
            shown_b = "-" if b is None else fmt.format(b)
            out.append(
                f"{workload if i == 0 else '':8} {name:22} {shown_a:>12} {shown_b:>13} "
                f"{_ratio(a, b):>7}"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.side_by_side", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--reference",
        type=Path,
        default=stack.ROOT.parent / "shared" / "reference-bench",
        help="the reference bench (default ../shared/reference-bench from the project root)",
    )
    ap.add_argument("--workloads", default="auth,acct")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1, help="citywifi serve --workers")
    ap.add_argument("--procs", type=int, default=1, help="radbench processes (--loadgen radbench)")
    ap.add_argument("--loadgen", choices=["radblast", "radbench"], default="radblast")
    ap.add_argument("--redis-server", default="redis-server", help="for both servers")
    ap.add_argument("--timeout-ms", type=int, default=2000)
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument("--json", help="write the results here ('-': stdout)")
    args = ap.parse_args(argv)
    reference = args.reference.resolve()
    problems = check_prerequisites(reference, args.loadgen)
    if problems:
        print("bench.side_by_side cannot run:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 2
    workloads = [w for w in args.workloads.split(",") if w]
    if not set(workloads) <= {"auth", "acct"}:
        raise SystemExit("bench.side_by_side: --workloads is a list of auth, acct")
    # with --json -, stdout carries the JSON only; the reports go to stderr
    human = sys.stderr if args.json == "-" else sys.stdout
    with contextlib.redirect_stdout(human):
        work = Path(tempfile.mkdtemp(prefix="cw-side-by-side-"))
        try:
            ref = Reference(reference, work, stack.Ports.free(), stack.free_port())
            radblast = ref.prepare(args.loadgen)
            o = run.Options(
                workers=args.workers,
                duration=args.duration,
                warmup=args.warmup,
                window=args.window,
                procs=args.procs,
                persons=USERS,
                devices=2,
                redis_server=args.redis_server,
                loadgen=args.loadgen,
                radblast=str(radblast),
                timeout_ms=args.timeout_ms,
                concurrency=64,
                report_rows=0,
                keep=args.keep,
                workdir=work,
            )
            rows = []
            results: list[dict[str, Any]] = []
            for workload in workloads:
                count = (
                    USERS * 4 if workload == "auth" else int((o.duration + o.warmup + 2) * 25_000)
                )
                run.log(f"reference: mkcorpus.py {workload} --count {count}")
                fr_corpus = ref.corpus(workload, count)
                run.log(f"{workload}: FreeRADIUS c")
                fr = run_freeradius(ref, workload, fr_corpus, o)
                run.log(f"{workload}: citywifi --workers {o.workers}")
                (cw,) = run.radius_scenario(workload, o)
                rows.append((workload, cw, fr))
                results += [cw, fr]
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        print()
        print(
            f"window {args.window}, {args.duration:.0f} s measured after {args.warmup:.0f} s "
            f"warm-up, load generator {args.loadgen}, citywifi --workers {args.workers}"
        )
        print(comparison(rows))
    if args.json:
        text = json.dumps(
            {"options": {**vars(args), "reference": str(reference)}, "results": results}
        )
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
