"""Soak test: a steady mixed load for minutes; is memory flat, do errors or p99 creep?

    .venv/bin/python -m bench.soak [--minutes 10] [--rate 500] [--portal-rate 2] [--workers 1]

One fresh stack as in ``bench.run`` (redis-server with AOF everysec, ``citywifi serve``,
seeded persons), then at the same time, open loop (fixed rates, not as fast as possible):

- radbench at ``--rate`` requests/s replaying a ``mix`` corpus (MAC logins, then each
  session's Start, Interims and Stop), every packet once, per-minute figures;
- portal logins (SMS code through the JSON API) at ``--portal-rate`` per second.

Every ``--sample`` seconds: RSS of the citywifi processes (supervisor and workers, summed)
and of redis-server, and Redis's ``used_memory``. At the end: the samples, a per-minute
table (sent, answered, unanswered, wrong answers, p99) and a verdict on memory: the
samples after ``--warmup-minutes`` are fitted with a straight line; memory is called
flat when that line rises by less than 5 % (or 8 MB) over the measured span. That is
judged for the citywifi processes and for redis-server's RSS beyond its ``used_memory``;
``used_memory`` itself is expected to grow (every session is kept three days, its record
and day counters) and is reported as MB per minute. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import corpus, run, stack

MB = 1024 * 1024


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in points) / var * 60


def verdict(name: str, points: list[tuple[float, float]]) -> tuple[str, bool | None]:
    """Whether ``points`` (after warm-up) stay flat: rise of the fitted line over the span
    below 5 % of the mean or 8 MB, whichever is larger."""
    if len(points) < 3:
        return f"{name}: too few samples after the warm-up to tell", None
    span = points[-1][0] - points[0][0]
    slope = slope_per_minute(points)
    rise = slope * span / 60
    mean = sum(v for _, v in points) / len(points)
    flat = rise < max(0.05 * mean, 8 * MB)
    return (
        f"{name}: {'flat' if flat else 'GROWING'} ({slope / MB:+.2f} MB/min, "
        f"{rise / MB:+.1f} MB over {span / 60:.1f} min, mean {mean / MB:.1f} MB)",
        flat,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=500.0, help="RADIUS requests/s")
    ap.add_argument("--portal-rate", type=float, default=2.0, help="portal logins/s (0: none)")
    ap.add_argument("--workers", type=int, default=1, help="citywifi serve --workers")
    ap.add_argument("--window", type=int, default=256, help="cap on outstanding requests")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between memory samples")
    ap.add_argument("--warmup-minutes", type=float, default=2.0, help="left out of the verdict")
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--redis-server", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", help="write samples and figures here ('-': stdout)")
    args = ap.parse_args(argv)
    seconds = args.minutes * 60
    o = run.Options(
        workers=args.workers,
        duration=seconds,
        warmup=0.0,
        window=args.window,
        procs=1,
        persons=args.persons,
        devices=2,
        redis_server=args.redis_server,
        loadgen="radbench",
        radblast="",
        timeout_ms=2000,
        concurrency=8,
        report_rows=0,
        keep=args.keep,
        workdir=None,
    )
    with run.Scenario("soak", o) as sc:
        assert sc.server is not None
        pop = corpus.Population(stack.PERSON_KEY.encode(), o.persons, o.devices)
        asyncio.run(run.seed_persons(sc.config, pop))
        site = corpus.Site(
            stack.SECRET.encode(),
            nas_identifier=stack.CLIENT_ID,
            client_id=stack.CLIENT_ID,
            ap_mac=stack.AP_MAC,
        )
        mix = sc.dir / "mix.bin"
        count = int(args.rate * seconds * 1.05) + 1000
        run.log(f"soak: mix corpus of {count} packets")
        corpus.write_mix(mix, pop, site, count, run.MIX_SESSIONS)
        rad_json = sc.dir / "radbench.json"
        radbench = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.radbench",
                "-p",
                str(sc.ports.auth),
                "-a",
                str(sc.ports.acct),
                "-k",
                stack.SECRET,
                "-w",
                str(args.window),
                "-r",
                str(args.rate),
                "-d",
                str(seconds),
                "--require-ma",
                "--interval",
                "60",
                "--json",
                str(rad_json),
                str(mix),
            ],
            cwd=stack.ROOT,
            stdout=subprocess.DEVNULL,
        )
        portal_json = sc.dir / "portal.json"
        portal = None
        if args.portal_rate > 0:
            portal = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.portal_load",
                    "--base",
                    f"http://127.0.0.1:{sc.ports.http}",
                    "--sms",
                    str(sc.dir / "sms.jsonl"),
                    "--nas-id",
                    stack.CLIENT_ID,
                    "-c",
                    "8",
                    "-r",
                    str(args.portal_rate),
                    "-u",
                    "0",
                    "-d",
                    str(seconds),
                    "--json",
                    str(portal_json),
                ],
                cwd=stack.ROOT,
                stdout=subprocess.DEVNULL,
            )
        run.log(
            f"soak: {args.rate:.0f} RADIUS requests/s and {args.portal_rate:g} portal logins/s "
            f"for {args.minutes:g} min; memory every {args.sample:g} s"
        )
        print(f"{'t (s)':>7} {'citywifi RSS MB':>16} {'redis RSS MB':>13} {'used_memory MB':>15}")
        samples: list[dict[str, float]] = []
        t0 = time.monotonic()
        next_sample = t0
        deadline = t0 + seconds + 60  # the load ends by itself; this bounds the wait
        while time.monotonic() < deadline:
            if radbench.poll() is not None and (portal is None or portal.poll() is not None):
                break
            now = time.monotonic()
            if now >= next_sample:
                s = {
                    "t": round(now - t0, 1),
                    "citywifi_rss": float(sum(stack.rss_bytes(p) for p in sc.server.pids())),
                    "redis_rss": float(stack.rss_bytes(sc.redis.pid)),
                    "used_memory": float(sc.redis.used_memory()),
                }
                samples.append(s)
                print(
                    f"{s['t']:>7.0f} {s['citywifi_rss'] / MB:>16.1f} {s['redis_rss'] / MB:>13.1f} "
                    f"{s['used_memory'] / MB:>15.1f}",
                    flush=True,
                )
                next_sample += args.sample
            time.sleep(min(0.5, max(0.0, next_sample - time.monotonic())))
        for proc in (radbench, portal):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        rad: dict[str, Any] = json.loads(rad_json.read_text()) if rad_json.exists() else {}
        portal_result: dict[str, Any] = (
            json.loads(portal_json.read_text()) if portal_json.exists() else {}
        )
        warnings = len(sc.server.errors())
    print()
    print(
        f"{'minute':>6} {'sent':>8} {'answered':>9} {'unanswered':>11} {'wrong':>6} {'p99 ms':>8}"
    )
    for row in rad.get("intervals", []):
        print(
            f"{row['t'] / 60 + 1:>6.0f} {row['sent']:>8} {row['answered']:>9} "
            f"{row['unanswered']:>11} {row['wrong']:>6} {row['p99_ms']:>8.2f}"
        )
    if rad:
        print(
            f"total: sent={rad['sent']} answered={rad['answered']} unanswered={rad['unanswered']} "
            f"wrong={rad['wrong']['total']} p99={rad['lat_ms']['p99']:.2f} ms "
            f"(target {args.rate:.0f}/s, sent {rad['sent_rate']:.0f}/s)"
        )
    if portal_result:
        print(
            f"portal: completed={portal_result['completed']} errors={portal_result['errors']} "
            f"p99={portal_result['lat_ms']['p99']:.1f} ms"
        )
    print(f"server warnings logged: {warnings}")
    after = [s for s in samples if s["t"] >= args.warmup_minutes * 60]
    verdicts = []
    series = {
        "citywifi RSS": [(s["t"], s["citywifi_rss"]) for s in after],
        # Redis's own data grows by design; what it holds beyond that must not
        "redis-server RSS - used_memory": [
            (s["t"], s["redis_rss"] - s["used_memory"]) for s in after
        ],
    }
    for name, points in series.items():
        text, flat = verdict(name, points)
        verdicts.append({"what": name, "flat": flat, "text": text})
        print(text)
    used = [(s["t"], s["used_memory"]) for s in after]
    grow = slope_per_minute(used) / MB if len(used) >= 2 else math.nan
    print(f"redis used_memory: {grow:+.2f} MB/min (expected to grow: sessions are kept 3 days)")
    if args.json:
        text = json.dumps(
            {
                "options": vars(args),
                "samples": samples,
                "radbench": rad,
                "portal": portal_result,
                "verdicts": verdicts,
                "server_warnings": warnings,
            }
        )
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    failed = not rad or rad["unanswered"] or rad["wrong"]["total"]
    return 1 if failed or any(v["flat"] is False for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
