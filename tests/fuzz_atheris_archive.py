"""Differential, coverage-guided fuzzing of the archiver's C formatter
(``controller.storage._archive_fmt``) against its reference model, the Python of
``controller.storage.archive_text``, with atheris (libFuzzer for Python).

The sibling of ``tests/fuzz_atheris_speedups.py`` (which fuzzes ``radius._speedups``):
not collected by pytest; CI runs it bounded through
``tests/test_fuzz_atheris_archive_ci.py`` when atheris is installed. By hand, from the
repository root::

    .venv/bin/python tests/fuzz_atheris_archive.py -max_total_time=300 /tmp/cw-archive-corpus

The input is cut into entries and their fields (a 0xff octet ends an entry, 0xfe a
field; a field's first octet below 40 names one of the columns the formatter knows, or
a ``d:`` day, and the rest is its value), so the fuzzer reaches quotes, line breaks,
non-UTF-8, odd lists, repeated and missing names, numbers that are not plain digits and
times out of range. Each batch goes through ``route``, ``login_csv`` and
``session_csv`` and their references (``route_py``, ``login_lines``,
``session_rows_py``); any difference in what they give (or which exception they
raise) is a crash, left in ``<artifact_prefix>crash-<sha1>``. Coverage comes from the
instrumented Python reference (the C side is not instrumented).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    import atheris
except ImportError:  # pragma: no cover - optional tool
    sys.exit("atheris is not installed: .venv/bin/pip install atheris")

with atheris.instrument_imports():
    from controller.storage import archive_text as at

c = at.compiled()
if c is None:  # pragma: no cover
    sys.exit("controller.storage._archive_fmt is not built or switched off: nothing to compare")

TZ = ZoneInfo("Asia/Shanghai")
NOW_MS = 1_795_579_260_000
NAMES = [b"k", b"t", b"pid", b"ref", b"mac", b"ip", b"client", b"nas_id", b"nas_ip", b"ap"]
NAMES += [b"venue", b"result", b"ipv6", b"ipv6_prefix", b"ipv6_delegated", b"nas_ipv6"]
NAMES += [b"nas_src", b"nas_public", b"nat_ip", b"nat_ports", b"start", b"closed", b"seen"]
NAMES += [b"in", b"out", b"known", b"acct_session_id", b"venue_type", b"district"]
NAMES += [b"operator", b"cause", b"d:20261125", b"d:20261124", b"d:2026112x", b"d:", b""]
VALUES = [b"login", b"close", b"console", b"1795579200", b"1795536000", b"1"]
PHONES = {b"p1": b'+86"1', b"": b"none", b"\xff": b"\r\n"}


def entries_of(data: bytes) -> list[tuple[bytes, list[bytes]]]:
    out = []
    for n, chunk in enumerate(data.split(b"\xff")[:16]):
        fields: list[bytes] = []
        for raw in chunk.split(b"\xfe")[:40]:
            if raw and raw[0] < len(NAMES):
                fields.append(NAMES[raw[0]])
                rest = raw[1:]
                if rest[:1] and rest[0] < len(VALUES) and len(rest) == 1:
                    rest = VALUES[rest[0]]
                fields.append(rest)
            else:
                fields.append(raw)  # names and values of any octets
        out.append((b"%d-%b" % (n, chunk[:3]), fields))
    return out


def outcome(run: Callable[[], Any]) -> Any:
    try:
        return run()
    except Exception as exc:
        return ("raised", type(exc).__name__)


def texts(parts: dict[date, at.CsvPart]) -> dict[date, tuple[bytes, int, int]]:
    return {d: (b"".join(p.chunks), p.count, p.newest) for d, p in parts.items()}


def copied(entries: list[tuple[bytes, list[bytes]]]) -> list[tuple[bytes, list[bytes]]]:
    return [(eid, list(f)) for eid, f in entries]


def routed(route: Callable[..., None], entries: list[tuple[bytes, list[bytes]]]) -> Any:
    ids: list[bytes] = []
    logins: list[tuple[bytes, list[bytes]]] = []
    consoles: list[tuple[bytes, list[bytes]]] = []
    pids: set[bytes] = set()
    refs: set[bytes] = set()
    route(entries, ids, logins, consoles, pids, refs)
    return ids, [e for e, _ in logins], [e for e, _ in consoles], pids, refs


def logins(fmt: Callable[..., None], entries: list[tuple[bytes, list[bytes]]]) -> Any:
    parts: dict[date, at.CsvPart] = {}
    fmt(entries, PHONES, at.LocalDays(TZ), NOW_MS, parts)
    return texts(parts)


def sessions(fmt: Callable[..., list[int]], entries: list[tuple[bytes, list[bytes]]]) -> Any:
    ledger: dict[date, at.CsvPart] = {}
    audit: dict[date, at.CsvPart] = {}
    records = [(f, PHONES.get(eid[-1:], b"")) for eid, f in entries]
    refused = fmt(records, at.LocalDays(TZ), NOW_MS, ledger, audit)
    return refused, texts(ledger), texts(audit)


def one_input(data: bytes) -> None:
    entries = entries_of(data)
    pairs: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        (
            "route",
            lambda: routed(c.route, copied(entries)),
            lambda: routed(at.route_py, copied(entries)),
        ),
        (
            "login",
            lambda: logins(at.login_rows, copied(entries)),
            lambda: logins(at.login_lines, copied(entries)),
        ),
        (
            "session",
            lambda: sessions(at.session_rows, copied(entries)),
            lambda: sessions(at.session_rows_py, copied(entries)),
        ),
    ]
    for what, fast, reference in pairs:
        got, want = outcome(fast), outcome(reference)
        if got != want:
            raise AssertionError(f"{what}: compiled {got!r} != reference {want!r}")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
