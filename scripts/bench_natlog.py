"""NAT log throughput: IPFIX records and syslog lines decoded per second, archive write
of a day of translations, and one `audit who` translation lookup over it. Prints
figures; asserts nothing. Run: PYTHONPATH=. .venv/bin/python scripts/bench_natlog.py"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from controller.domain.natlog import (
    IpfixDecoder,
    NatEvent,
    NatTranslation,
    Tally,
    parse_syslog_text,
)
from controller.storage import nat_archive
from controller.storage.archive import Archive
from tests.support.ipfix_kit import NAT44_SESSION, data_set, message, session_record, template_set

SH = ZoneInfo("Asia/Shanghai")
BASE = 1762746000000  # 2025-11-10 11:40 +08:00
PUBLIC = "203.0.113.5"


def main(messages: int = 20000, lines: int = 100_000, rows: int = 1_000_000) -> None:
    recs = [
        session_record(BASE + i, 4, 6, f"10.0.0.{i}", 1024 + i, PUBLIC, 1024 + i) for i in range(30)
    ]
    msg = message([template_set(256, NAT44_SESSION), data_set(256, NAT44_SESSION, recs)])
    decoder, tally = IpfixDecoder(), Tally()
    t0 = time.perf_counter()
    for _ in range(messages):
        decoder.decode(msg, "192.0.2.1", tally)
    dt = time.perf_counter() - t0
    print(f"IPFIX: {messages} messages x 30 records in {dt:.2f} s = {messages * 30 / dt:,.0f}/s")

    line = (
        "<166>Oct 10 2018 12:34:56 h : %ASA-6-305011: Built dynamic TCP translation from"
        " inside:10.0.0.1/5000 to outside:203.0.113.1/6000\n"
    )
    t0 = time.perf_counter()
    got = list(parse_syslog_text(line * lines, "192.0.2.1", SH, None, Tally()))
    dt = time.perf_counter() - t0
    print(f"syslog (ASA): {len(got)} lines in {dt:.2f} s = {len(got) / dt:,.0f}/s")

    with tempfile.TemporaryDirectory() as d:
        archive = Archive(Path(d))
        day = [
            NatTranslation(
                BASE + i * 10,
                NatEvent.CREATE,
                6,
                f"10.0.{i >> 8 & 255}.{i & 255}",
                5000,
                PUBLIC,
                i % 64512 + 1024,
                i % 64512 + 1024,
                "192.0.2.1",
            )
            for i in range(rows)
        ]
        t0 = time.perf_counter()
        nat_archive.write(archive, day, SH, BASE)
        dt = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(d).rglob("*.parquet"))
        print(f"archive write: {rows:,} translations in {dt:.2f} s, {size / 1e6:.1f} MB")
        t0 = time.perf_counter()
        for port in range(1024, 1044):
            nat_archive.covering(archive, PUBLIC, port, BASE, BASE + rows * 10, SH)
        dt = (time.perf_counter() - t0) / 20
        print(f"covering() over {rows:,} rows of one day: {dt * 1000:.0f} ms per lookup")


if __name__ == "__main__":
    main()
