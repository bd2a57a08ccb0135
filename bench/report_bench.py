"""How long a month's subsidy report takes on a city-sized ledger.

Builds a synthetic archive (Parquet, one directory per day, as the archiver writes it)
with DuckDB itself, then times the per day x venue report and a monthly roll-up, first
on closed-but-unsealed days (every row filtered and deduplicated at query time), then
after sealing (the normal state of a closed day).

    .venv/bin/python bench/report_bench.py --rows 1000000
    .venv/bin/python bench/report_bench.py --rows 30000000 --venues 5000 --persons 2000000
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType

import duckdb

from controller.config import Config, Operator, ReportSettings, Venue, load_config
from controller.domain.ledger import LEDGER_SCHEMA, day_close_ms
from controller.domain.venue_types import VENUE_TYPES
from controller.services.reports.query import ReportRequest
from controller.services.reports.subsidy import build
from controller.storage.archive import Archive

ROOT = Path(__file__).resolve().parent.parent


def synthetic_config(directory: Path, venues: int) -> Config:
    base = load_config(ROOT / "deploy" / "citywifi.example.toml")
    kinds = list(VENUE_TYPES)
    ops = ("op-a", "op-b", "op-c")
    from dataclasses import replace

    return replace(
        base,
        operators=MappingProxyType({o: Operator(o, {"zh": o, "en": o}) for o in ops}),
        venues=MappingProxyType(
            {
                f"v{i}": Venue(
                    f"v{i}",
                    {"zh": f"场所{i}", "en": f"venue {i}"},
                    kinds[i % len(kinds)],
                    f"区{i % 20}",
                    ops[i % 3],
                )
                for i in range(venues)
            }
        ),
        reports=ReportSettings(archive_dir=directory),
    )


def build_archive(
    archive: Archive, config: Config, first: date, days: int, rows: int, venues: int, persons: int
) -> float:
    tz = config.quota.timezone
    per_day = rows // days
    kinds = list(VENUE_TYPES)
    names = ", ".join(n for n, _ in LEDGER_SCHEMA)
    started = time.perf_counter()
    con = duckdb.connect()
    for d in range(days):
        day = first + timedelta(days=d)
        target = archive.day_dir("sessions", day)
        target.mkdir(parents=True, exist_ok=True)
        archived = day_close_ms(day, tz, config.reports.settle_hours) - 1000
        kind_case = " ".join(f"WHEN {i} THEN '{k}'" for i, k in enumerate(kinds))
        con.execute(
            f"""
            COPY (
              SELECT {names} FROM (
                SELECT DATE '{day.isoformat()}' AS day,
                       DATE '{day.isoformat()}' AS first_day,
                       'p' || (hash(i, {d}) % {persons}) || '|nas/s' || i || '|{d}' AS record_id,
                       'p' || (hash(i, {d}) % {persons}) AS pid,
                       true AS known,
                       'v' || (i % {venues}) AS venue,
                       CASE (i % {venues}) % {len(kinds)} {kind_case} END AS venue_type,
                       '区' || ((i % {venues}) % 20) AS district,
                       'op-' || chr(97 + ((i % {venues}) % 3)::INTEGER) AS operator,
                       'nas' AS client, '' AS ap,
                       0::BIGINT AS start, 0::BIGINT AS stop,
                       (60 + hash(i) % 3600)::BIGINT AS seconds,
                       (hash(i) % 50000000)::BIGINT AS octets_in,
                       (hash(i, 1) % 5000000)::BIGINT AS octets_out,
                       '1' AS cause,
                       (60 + hash(i) % 3600)::BIGINT AS session_seconds,
                       {archived}::BIGINT AS archived_at
                FROM range({per_day}) t(i)
              )
            ) TO '{target}/part-{archived:013d}-bench.parquet' (FORMAT parquet, COMPRESSION zstd)
            """
        )
    con.close()
    return time.perf_counter() - started


def timed_report(root: Path, venues: int, req: ReportRequest, now: float) -> tuple[float, int]:
    """One report in a fresh process, as a request would run: (seconds, rows)."""
    config = synthetic_config(root, venues)
    started = time.perf_counter()
    report = build(Archive(root), config, req, now)
    return time.perf_counter() - started, len(report.rows)


def in_child(*args: object) -> tuple[float, int, float]:
    """Run ``timed_report`` in a spawned process: (seconds, rows, its peak RSS in MiB)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        took, rows = pool.apply(timed_report, args)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest so far
    return took, rows, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="ledger rows in the month")
    parser.add_argument("--venues", type=int, default=3000)
    parser.add_argument("--persons", type=int, default=500_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "archive"
        config = synthetic_config(root, args.venues)
        archive = Archive(root)
        first = date(2025, 11, 1)
        last = first + timedelta(days=args.days - 1)
        took = build_archive(
            archive, config, first, args.days, args.rows, args.venues, args.persons
        )
        print(f"built {args.rows:,} ledger rows over {args.days} days in {took:.1f} s")
        settle = config.reports.settle_hours
        now = (day_close_ms(last, config.quota.timezone, settle) / 1000) + 86400 * 5
        for label in ("unsealed (filter + dedup at query time)", "sealed"):
            for group in ("venue", "operator"):
                req = ReportRequest(first, last, "csv", group)
                took, rows, peak = in_child(root, args.venues, req, now)
                print(
                    f"{label:42} group={group:8} {rows:7,} rows  {took:6.2f} s"
                    f"  (peak RSS of the largest report process so far: {peak:,.0f} MiB)"
                )
            if label != "sealed":
                started = time.perf_counter()
                for d in range(args.days):
                    day = first + timedelta(days=d)
                    archive.seal(day, day_close_ms(day, config.quota.timezone, settle))
                print(f"sealing {args.days} days took {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
