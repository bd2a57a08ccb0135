"""The archiver's rows formatted straight from raw outbox fields (issue 16 item 3) are
the rows the reference builders make: a login entry (``login_audit_row``), a closed
session (``ledger_rows`` and ``session_audit_row``), whatever their fields hold (quotes,
commas, line breaks, NUL, non-ASCII, missing or repeated fields, odd numbers), read
back from Parquet (through the C formatter when it is built, else the Python fallback;
``tests/test_archive_fmt.py`` holds the two to the same bytes); what the fast path
does not take (a session over midnight, unusual numbers) it leaves to the reference
builders; DuckDB reads all of it as text (a day it would refuse still goes in bound,
from the reference rows)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.domain.audit import AUDIT_SCHEMA, login_audit_row, session_audit_row
from controller.domain.ledger import LEDGER_SCHEMA, ledger_rows, record_id
from controller.storage import archive_text as at
from controller.storage.archive import Archive
from controller.storage.archive_text import CsvPart, LocalDays, login_rows, plan_of
from tests.test_reports_helpers import SH

NOW_MS = 1_795_579_260_000  # 2026-11-25 12:01 Asia/Shanghai

texts = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from(['"', ",", "\n", "\r", "\x00"]),
    max_size=8,
)
epochs = st.one_of(
    st.integers(1_790_000_000, 1_800_000_000).map(str),  # 2026 (two local days apart)
    st.sampled_from(["", "0", " 1795579200 ", "１７９５５７９２００", "x", "-5", "1_795_579_200"]),
)
LOGIN_NAMES = ["k", "t", "pid", "mac", "ip", "client", "nas_id", "nas_ip", "ap", "venue"]
LOGIN_NAMES += ["result", "nas_src", "ipv6", "nat_ip", "nat_ports", "other"]


@contextmanager
def archive() -> Iterator[Archive]:
    root = Path(tempfile.mkdtemp(prefix="cw-archive-text-"))
    try:
        yield Archive(root)
    finally:
        shutil.rmtree(root)


def read(a: Archive, kind: str) -> list[tuple[object, ...]]:
    schema = {"audit": AUDIT_SCHEMA, "sessions": LEDGER_SCHEMA}[kind]
    names = ", ".join(name for name, _ in schema)
    files = str(a.root / kind / "*" / "*.parquet")
    if not list(a.root.glob(f"{kind}/*/*.parquet")):
        return []
    return a.query(f"SELECT {names} FROM read_parquet(?) ORDER BY ALL", [files])


def flat(pairs: list[tuple[str, str]]) -> list[bytes]:
    return [x.encode() for pair in pairs for x in pair]


def as_dict(pairs: list[tuple[str, str]]) -> dict[str, str]:
    return dict(pairs)  # the last of a repeated name wins, as in the raw plan


def refused(day: date) -> list[tuple[object, ...]]:
    raise AssertionError(f"DuckDB refused the text of {day}")


def write_logins(
    a: Archive, entries: list[tuple[str, list[tuple[str, str]]]], phones: dict[str, str]
) -> None:
    raw = [(eid.encode(), flat(pairs)) for eid, pairs in entries]
    parts: dict[date, CsvPart] = {}
    login_rows(
        raw, {k.encode(): v.encode() for k, v in phones.items()}, LocalDays(SH), NOW_MS, parts
    )

    a.write_parts("audit", parts, refused)  # the text path, whatever the fields hold


@settings(max_examples=30, deadline=None)
@given(
    entries=st.lists(
        st.lists(
            st.tuples(st.sampled_from(LOGIN_NAMES), texts)
            | st.tuples(st.just("t"), epochs)
            | st.tuples(st.just("pid"), st.sampled_from(["p1", "p2", ""])),
            max_size=14,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_login_lines_are_the_reference_rows(entries: list[list[tuple[str, str]]]) -> None:
    phones = {"p1": '+8613800000001"', "p2": "+86 138,\n2"}
    named = [(f"1795579200000-{i}", [("k", "login"), *pairs]) for i, pairs in enumerate(entries)]
    with archive() as fast, archive() as ref:
        write_logins(fast, named, phones)
        ref.write(
            "audit",
            [
                login_audit_row(eid, d, phones.get(d.get("pid", ""), ""), SH, NOW_MS)
                for eid, pairs in named
                if (d := as_dict(pairs))
            ],
        )
        assert read(fast, "audit") == read(ref, "audit")


def test_quotes_commas_and_line_breaks_stay_on_the_text_path() -> None:
    """The ordinary hard cases are written as text, not handed to the bound path."""
    pairs = [("k", "login"), ("t", "1795579200"), ("pid", "p1"), ("ap", 'a "b",\nc\r')]
    pairs += [("venue", "裕华区"), ("result", "reject:device_limit")]
    with archive() as fast:
        raw = [(b"1-0", flat(pairs))]
        parts: dict[date, CsvPart] = {}
        login_rows(raw, {b"p1": b'+86"1'}, LocalDays(SH), NOW_MS, parts)
        fast.write_parts("audit", parts, refused)
        (row,) = read(fast, "audit")
        assert row[:6] == (date(2026, 11, 25), "login:1-0", "login", 1795579200, '+86"1', "p1")
        assert row[11:13] == ('a "b",\nc\r', "裕华区") and row[15] == "reject:device_limit"


SESSION_NAMES = ["pid", "known", "client", "acct_session_id", "mac", "ip", "nas_ip"]
SESSION_NAMES += ["nas_id", "venue", "venue_type", "district", "operator", "ap", "cause"]
SESSION_NAMES += ["ipv6", "nas_src", "shut", "last"]
numbers = st.one_of(
    st.integers(0, 10**6).map(str),
    st.sampled_from(["", "0", "00", "x", "-1", " 5", "99999999999999999999"]),
)
starts = st.one_of(
    st.integers(1_795_500_000, 1_795_600_000).map(str), st.sampled_from(["", "x", "0"])
)
day_keys = st.sampled_from(["d:20261125", "d:20261124", "d:20261126", "d:2026112x", "d:x"])


@st.composite
def sessions(draw: st.DrawFn) -> list[tuple[str, str]]:
    pairs = draw(st.lists(st.tuples(st.sampled_from(SESSION_NAMES), texts), max_size=10))
    if draw(st.booleans()):
        pairs.append(("start", draw(starts)))
    pairs.append(("closed", draw(starts)))
    for name in ("seen", "in", "out"):
        if draw(st.booleans()):
            pairs.append((name, draw(numbers)))
    for key in draw(st.lists(day_keys, max_size=2)):
        pairs.append((key, draw(numbers)))
    if draw(st.booleans()):
        pairs.append(("known", draw(st.sampled_from(["1", "0", ""]))))
    return draw(st.permutations(pairs))


def _valid(rec: dict[str, str]) -> bool:
    """What the reference builders take at all (else the round fails, both ways)."""
    try:
        rows = ledger_rows(rec, SH, NOW_MS)
        session_audit_row(record_id(rec), rec, "", SH, NOW_MS)
    except (ValueError, OverflowError):
        return False
    return all(-(2**63) <= v < 2**63 for r in rows for v in (r.seconds, r.session_seconds))


@settings(max_examples=40, deadline=None)
@given(records=st.lists(sessions(), min_size=1, max_size=5))
def test_session_lines_are_the_reference_rows(records: list[list[tuple[str, str]]]) -> None:
    phone = '+86 138"0'
    records = [r for r in records if _valid(as_dict(r))]
    with archive() as fast, archive() as ref:
        ledger: dict[date, CsvPart] = {}
        audit: dict[date, CsvPart] = {}
        batch = [(flat(pairs), phone.encode()) for pairs in records]  # C, or the fallback
        left = at.session_rows(batch, LocalDays(SH), NOW_MS, ledger, audit)
        rest = [as_dict(records[i]) for i in left]
        at.rows_to_parts([r for rec in rest for r in ledger_rows(rec, SH, NOW_MS)], 18, ledger)
        at.rows_to_parts(
            [session_audit_row(record_id(rec), rec, phone, SH, NOW_MS) for rec in rest], 17, audit
        )
        recs = [as_dict(pairs) for pairs in records]
        ledger_ref = [r for rec in recs for r in ledger_rows(rec, SH, NOW_MS)]
        audit_ref = [session_audit_row(record_id(r), r, phone, SH, NOW_MS) for r in recs]
        asked: list[date] = []  # days DuckDB refused the text of (none, whatever it holds)

        def bound(rows: list[Any]) -> Callable[[date], list[Any]]:
            return lambda day: asked.append(day) or [r for r in rows if r.day == day]

        fast.write_parts("sessions", ledger, bound(ledger_ref))
        fast.write_parts("audit", audit, bound(audit_ref))
        assert not asked
        ref.write("sessions", ledger_ref)
        ref.write("audit", audit_ref)
        assert read(fast, "sessions") == read(ref, "sessions")
        assert read(fast, "audit") == read(ref, "audit")


def test_a_session_over_midnight_is_left_to_the_reference_builders() -> None:
    pairs = [("pid", "p"), ("start", "1795536000"), ("closed", "1795625000")]
    pairs += [("d:20261124", "100"), ("d:20261125", "3600")]
    fields = flat(pairs)
    plan = plan_of(fields)
    ledger: dict[date, CsvPart] = {}
    audit: dict[date, CsvPart] = {}
    args = (b"", LocalDays(SH), NOW_MS, ledger, audit)
    assert not at.session_lines(fields, plan, *args)
    assert not ledger and not audit
    one = flat([("pid", "p"), ("start", "1795579200"), ("closed", "1795580000")])
    plan = plan_of(one)
    assert at.session_lines(one, plan, *args)  # one day: the fast path


def test_a_day_duckdb_refuses_goes_in_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should DuckDB's CSV reader refuse a day's text, its rows come from ``rows_of``."""
    pairs = [("k", "login"), ("t", "1795579200"), ("pid", "p1"), ("mac", "m")]
    d = as_dict(pairs)
    with archive() as fast:
        original = fast._write_csv

        def refuse(con: duckdb.DuckDBPyConnection, *args: object) -> None:
            raise duckdb.InvalidInputException("refused")

        monkeypatch.setattr(fast, "_write_csv", refuse)
        raw = [(b"1-0", flat(pairs))]
        parts: dict[date, CsvPart] = {}
        login_rows(raw, {}, LocalDays(SH), NOW_MS, parts)
        asked: list[date] = []

        def rows_of(day: date) -> list[tuple[object, ...]]:
            asked.append(day)
            return [login_audit_row("1-0", d, "", SH, NOW_MS)]

        fast.write_parts("audit", parts, rows_of)
        assert asked == [date(2026, 11, 25)] and original
        assert [r[1] for r in read(fast, "audit")] == ["login:1-0"]
