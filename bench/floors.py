"""The floors ladder of issue 16: what each layer of the RADIUS accounting path costs.

    .venv/bin/python -m bench.floors [--duration 5] [--warmup 1] [--window 64] \\
        [--steps echo-c,md5,...] [--json out.json]

One run, one load generator (the reference's C ``radblast``, built from its sources in a
temporary copy of ``../shared/reference-bench``), one accounting corpus (the reference's
``mkcorpus.py acct``, signed with ``testing123``), the same redis-server binary (Debian's,
AOF with fsync every second) for every step that uses Redis. Step by step, each adding
one thing (``bench/floor_server.py`` has the minimal servers):

==================  ===========================================================
echo-c              the reference's C responder ``radecho`` (the generator's ceiling)
md5                 uvloop DatagramProtocol, one MD5 per reply
md5-mmsg            the same with recvmmsg/sendmmsg batches (radius._speedups)
codec               + radius.packet decode/verify/encode (pure Python)
codec-c             the same codec compiled (radius._speedups)
codec-c-mmsg        compiled codec on recvmmsg/sendmmsg
dedup               codec + DedupCache
dedup-c-mmsg        compiled codec, mmsg, compiled DedupCache (radius._speedups)
redis               codec + DedupCache + one pipelined EVALSHA per request, callback style
redis-c-mmsg        the same, compiled codec and mmsg
task                codec + DedupCache + EVALSHA, a Task and a Future per request
citywifi            ``citywifi serve --workers 1`` (bench.run's acct scenario)
freeradius-files    FreeRADIUS 3, the reference set-up "a" (users file, accounting ok)
freeradius-redis    FreeRADIUS 3 + rlm_redis, the reference set-up "c"
==================  ===========================================================

Per step: answers/s over the measured period, unanswered (must be 0; the exit status is
1 otherwise), server CPU in µs per answer (utime + stime of the server process, every
thread, from /proc, over the blast's wall time, divided by the rate), and the same for
redis-server. The stateless steps replay the corpus in a loop (each pass re-signed, so
no retransmissions); the steps that write to Redis use a fresh one-pass corpus (each
packet once), as the reference does. The FreeRADIUS steps need Debian's ``freeradius``
and, for the last, ``freeradius-redis``; a missing piece skips its step and says why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import run, side_by_side, stack


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    what: str
    server_args: tuple[str, ...] = ()  # bench.floor_server flags; () for the special steps
    redis: bool = False
    compiled: bool = False  # needs radius._speedups


STEPS = (
    Step("echo-c", "C echo responder (radecho)"),
    Step("md5", "uvloop DatagramProtocol, one MD5 per reply", ("--codec", "none")),
    Step(
        "md5-mmsg",
        "  the same with recvmmsg/sendmmsg",
        ("--codec", "none", "--io", "mmsg"),
        compiled=True,
    ),
    Step("codec", "+ decode/verify/encode, pure Python", ("--codec", "pure")),
    Step("codec-c", "  the same, compiled codec", ("--codec", "compiled"), compiled=True),
    Step(
        "codec-c-mmsg",
        "  compiled codec + mmsg",
        ("--codec", "compiled", "--io", "mmsg"),
        compiled=True,
    ),
    Step("dedup", "+ DedupCache", ("--codec", "pure", "--dedup")),
    Step(
        "dedup-c-mmsg",
        "  compiled codec + mmsg + compiled DedupCache",
        ("--codec", "compiled", "--io", "mmsg", "--dedup"),
        compiled=True,
    ),
    Step(
        "redis",
        "+ one pipelined EVALSHA per request, callback",
        ("--codec", "pure", "--dedup", "--redis", "callback"),
        redis=True,
    ),
    Step(
        "redis-c-mmsg",
        "  the same, compiled codec + mmsg",
        ("--codec", "compiled", "--io", "mmsg", "--dedup", "--redis", "callback"),
        redis=True,
        compiled=True,
    ),
    Step(
        "task",
        "  the same with a Task + Future per request",
        ("--codec", "pure", "--dedup", "--redis", "task"),
        redis=True,
    ),
    Step("citywifi", "citywifi serve, 1 worker", redis=True),
    Step("freeradius-files", "FreeRADIUS files only (set-up a)"),
    Step("freeradius-redis", "FreeRADIUS + rlm_redis counter (set-up c)", redis=True),
)
STEP_NAMES = tuple(s.name for s in STEPS)


@dataclass
class Bench:
    """The working copy of the reference, its binaries and corpora, and the options."""

    o: run.Options
    ref: side_by_side.Reference
    radblast: Path
    radecho: Path
    loop_corpus: Path
    redis_server: str

    once: Path | None = None

    def once_corpus(self) -> Path:
        """The one-pass accounting corpus, long enough for the run at 40k/s. Made once:
        every step that writes gets a fresh Redis, so each sees every packet once."""
        if self.once is None:
            count = int((self.o.duration + self.o.warmup + 2) * 40_000)
            run.log(f"reference: mkcorpus.py acct --count {count} (the one-pass corpus)")
            self.once = self.ref.work / "acct-once.bin"
            subprocess.run(
                [
                    sys.executable,
                    str(self.ref.copy / "radload" / "mkcorpus.py"),
                    "acct",
                    "--count",
                    str(count),
                    # 1,000 concurrent sessions (≫ the window): Interims and Stops start
                    # after 1,000 Starts, so even a short step writes what accounting writes
                    "--batch",
                    "1000",
                    "--tag",
                    "floors",
                    "--users",
                    str(side_by_side.USERS),
                    "--secret",
                    stack.SECRET,
                    "--out",
                    str(self.once),
                ],
                check=True,
                stderr=subprocess.DEVNULL,
            )
        return self.once

    def blast(self, corpus: Path, ports: stack.Ports, label: str, *, loop: bool) -> dict[str, Any]:
        out = self.ref.work / f"{label}.json"
        cmd = run.blast_command(
            self.o,
            corpus,
            auth_port=ports.auth,
            acct_port=ports.acct,
            loop=loop,
            out=out,
            label=label,
            require_ma=False,
        )
        return run.blast(cmd, out, "radblast")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def measured(
    b: Bench, proc: subprocess.Popen[bytes], redis: stack.RedisServer | None, blast: Any
) -> dict[str, Any]:
    server_cpu = stack.CpuMeter(lambda: stack.children(proc.pid))
    redis_cpu = stack.CpuMeter(lambda: [redis.pid] if redis else [])
    server_cpu.start()
    redis_cpu.start()
    result: dict[str, Any] = blast()
    result["server_cpu_cores"] = server_cpu.stop()
    result["redis_cpu_cores"] = redis_cpu.stop()
    return result


def run_process_step(b: Bench, step: Step) -> dict[str, Any]:
    """A step whose server is one process: radecho or bench.floor_server."""
    ports = stack.Ports.free()
    redis = stack.RedisServer(b.ref.work / f"redis-{step.name}", b.redis_server)
    with contextlib.ExitStack() as stack_:
        if step.redis:
            stack_.enter_context(redis)
        if step.name == "echo-c":
            cmd = [str(b.radecho), "-p", str(ports.auth), "-a", str(ports.acct), "-k", stack.SECRET]
        else:
            cmd = [
                sys.executable,
                "-m",
                "bench.floor_server",
                *step.server_args,
                "--auth-port",
                str(ports.auth),
                "--acct-port",
                str(ports.acct),
                "--redis-port",
                str(redis.port),
            ]
        log = (b.ref.work / f"{step.name}.out").open("ab")
        proc = subprocess.Popen(cmd, cwd=stack.ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            stack.wait_for(
                lambda: proc.poll() is not None or side_by_side.udp_bound(ports.acct),
                30,
                f"{step.name} to bind its ports",
            )
            if proc.poll() is not None:
                raise stack.StackError(f"{step.name} exited with {proc.returncode}")
            corpus = b.once_corpus() if step.redis else b.loop_corpus
            return measured(
                b,
                proc,
                redis if step.redis else None,
                lambda: b.blast(corpus, ports, step.name, loop=not step.redis),
            )
        finally:
            _stop(proc)


def run_freeradius_step(b: Bench, step: Step) -> dict[str, Any]:
    setup = "c" if step.name == "freeradius-redis" else "a"
    if setup == "c":
        corpus = b.once_corpus()
        return side_by_side.run_freeradius(b.ref, "acct", corpus, b.o)
    raddb = b.ref.work / "fr" / "a" / "raddb"
    log = (b.ref.work / "fr-a.out").open("ab")
    proc = subprocess.Popen(
        ["freeradius", "-f", "-d", str(raddb)], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    try:
        ports = b.ref.ports
        stack.wait_for(
            lambda: (
                proc.poll() is not None
                or (side_by_side.udp_bound(ports.auth) and side_by_side.udp_bound(ports.acct))
            ),
            30,
            "freeradius to bind its ports",
        )
        if proc.poll() is not None:
            raise stack.StackError(f"freeradius exited with {proc.returncode}")
        return measured(b, proc, None, lambda: b.blast(b.loop_corpus, ports, step.name, loop=True))
    finally:
        _stop(proc)


def run_citywifi_step(b: Bench) -> dict[str, Any]:
    (result,) = run.radius_scenario("acct", b.o)
    return result


def skip_reason(step: Step, compiled: str, fr_problems: list[str]) -> str | None:
    if step.compiled and compiled:
        return compiled
    if step.name.startswith("freeradius"):
        if shutil.which("freeradius") is None or not Path("/etc/freeradius/3.0").exists():
            return f"freeradius is not installed ({side_by_side.PACKAGES})"
        if step.name == "freeradius-redis" and not side_by_side.RLM_REDIS.exists():
            return "rlm_redis is not installed: apt-get install freeradius-redis"
        if fr_problems:
            return "; ".join(fr_problems)
    return None


def _per(cores: float, rps: float) -> str:
    """Cores busy at ``rps`` answers/s as µs of CPU per answer."""
    return f"{cores * 1e6 / rps:.1f}" if rps else "-"


def default_reference() -> Path:
    """../shared/reference-bench from the project root (or from a worktree's parent)."""
    for base in (stack.ROOT.parent, stack.ROOT.parent.parent):
        if (base / "shared" / "reference-bench").is_dir():
            return base / "shared" / "reference-bench"
    return stack.ROOT.parent / "shared" / "reference-bench"


def table(rows: list[tuple[Step, dict[str, Any] | None, str | None]]) -> str:
    head = (
        f"{'step':18} {'what':46} {'answers/s':>10} {'unans.':>7} {'server µs/req':>14} "
        f"{'Redis µs/req':>13} {'p99 ms':>7}"
    )
    out = [head, "-" * len(head)]
    for step, r, skipped in rows:
        if r is None:
            why = skipped if (skipped or "").startswith("FAILED") else f"skipped: {skipped}"
            out.append(f"{step.name:18} {step.what:46} {why}")
            continue
        rps = r["rps"] or 0.0

        redis = _per(r["redis_cpu_cores"], rps) if step.redis else "-"
        out.append(
            f"{step.name:18} {step.what:46} {rps:>10.0f} {r['unanswered']:>7} "
            f"{_per(r['server_cpu_cores'], rps):>14} {redis:>13} {r['lat_ms']['p99']:>7.2f}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.floors", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--reference",
        type=Path,
        default=default_reference(),
        help="the reference bench (default ../shared/reference-bench from the project root)",
    )
    ap.add_argument("--steps", default=",".join(STEP_NAMES), help="comma-separated subset")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds measured per step")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--redis-server", default="redis-server", help="for every step")
    ap.add_argument("--timeout-ms", type=int, default=2000)
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    wanted = [s for s in args.steps.split(",") if s]
    unknown = set(wanted) - set(STEP_NAMES)
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}; known: {', '.join(STEP_NAMES)}")
    steps = [s for s in STEPS if s.name in wanted]
    reference = args.reference.resolve()
    if not (reference / "radload" / "radblast.c").exists():
        print(f"bench.floors: no reference bench at {reference} (--reference)", file=sys.stderr)
        return 2
    if shutil.which("make") is None or shutil.which("gcc") is None:
        print("bench.floors: radblast is built from source: apt-get install gcc make")
        return 2
    from radius import fastpath

    compiled = "" if fastpath.available() else fastpath.reason()
    work = Path(tempfile.mkdtemp(prefix="cw-floors-"))
    rows: list[tuple[Step, dict[str, Any] | None, str | None]] = []
    failed: list[str] = []
    try:
        ref = side_by_side.Reference(reference, work, stack.Ports.free(), stack.free_port())
        fr_problems = [
            p
            for p in side_by_side.check_prerequisites(reference, "radblast")
            if "rlm_redis" not in p
        ]
        radblast, radecho = prepare(ref, any(s.name.startswith("freeradius") for s in steps))
        o = run.Options(
            workers=1,
            duration=args.duration,
            warmup=args.warmup,
            window=args.window,
            procs=1,
            persons=side_by_side.USERS,
            devices=2,
            redis_server=args.redis_server,
            loadgen="radblast",
            radblast=str(radblast),
            timeout_ms=args.timeout_ms,
            concurrency=64,
            report_rows=0,
            keep=args.keep,
            workdir=work,
        )
        run.log("reference: mkcorpus.py acct (the looped corpus)")
        b = Bench(o, ref, radblast, radecho, ref.corpus("acct", 100_000), args.redis_server)
        for step in steps:
            why = skip_reason(step, compiled, fr_problems)
            if why:
                run.log(f"{step.name}: skipped ({why})")
                rows.append((step, None, why))
                continue
            run.log(f"{step.name}: {step.what.strip()}")
            try:
                if step.name == "citywifi":
                    result = run_citywifi_step(b)
                elif step.name.startswith("freeradius"):
                    result = run_freeradius_step(b, step)
                else:
                    result = run_process_step(b, step)
            except Exception as exc:  # one broken step must not lose the ladder's others
                run.log(f"{step.name}: FAILED: {type(exc).__name__}: {exc}")
                rows.append((step, None, f"FAILED ({type(exc).__name__}: {exc})"[:120]))
                failed.append(step.name)
                continue
            rows.append((step, result, None))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        f"accounting, window {args.window}, {args.duration:g} s measured after "
        f"{args.warmup:g} s warm-up, radblast, one server process per step"
    )
    print(table(rows))
    lost = [s.name for s, r, _ in rows if r is not None and r["unanswered"]]
    print("unanswered: " + (f"NOT 0 in {', '.join(lost)}" if lost else "0 in every step"))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "options": {**vars(args), "reference": str(reference)},
                    "results": [
                        {"step": s.name, "skipped": why, **(_slim(r) if r else {})}
                        for s, r, why in rows
                    ],
                }
            )
            + "\n"
        )
    if failed:
        print(f"failed steps: {', '.join(failed)}")
    return 1 if lost or failed else 0


def _slim(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k != "raw"}


def prepare(ref: side_by_side.Reference, freeradius: bool) -> tuple[Path, Path]:
    """Copy the reference, build radblast and radecho there, and (when FreeRADIUS steps
    run) its trees for set-ups c and a; returns the two binaries."""
    if freeradius and shutil.which("freeradius") is not None:
        radblast = ref.prepare("radblast")
        run.log("reference: make_raddb.py a (a FreeRADIUS tree, users file)")
        subprocess.run(
            [sys.executable, str(ref.copy / "freeradius" / "make_raddb.py"), "a"],
            env=ref.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    else:
        shutil.copytree(ref.source, ref.copy, ignore=shutil.ignore_patterns("results"))
        for d in (ref.copy, *ref.copy.rglob("*")):
            d.chmod(0o755 if d.is_dir() else d.stat().st_mode | 0o200)
        radblast = ref.copy / "radload" / "radblast"
    subprocess.run(
        ["make", "-s", "-C", str(ref.copy / "radload"), "radblast", "radecho"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return radblast, ref.copy / "radload" / "radecho"


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
