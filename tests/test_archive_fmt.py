"""The archiver's C formatter (``controller.storage._archive_fmt``) against its reference
model, the Python of ``controller.storage.archive_text``: on the same entries, whatever
their fields hold (quotes, CR, LF, commas, NUL, bytes that are not UTF-8, empty values,
missing and repeated fields, odd field lists, numbers that are not plain digits), the
same routing, the same CSV bytes per local day, the same records left to the reference
builders, or the same exception. Skipped when the extension is not built or
``CITYWIFI_PURE_PYTHON`` switches it off (the suite's pure run: ``archive_text``'s own
tests then hold the fallback to the reference rows)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.storage import archive_text as at
from controller.storage.archive_text import CsvPart, LocalDays, RawEntry
from radius import fastpath
from tests.test_reports_helpers import SH

NOW_MS = 1_795_579_260_000  # 2026-11-25 12:01 Asia/Shanghai

pytestmark = pytest.mark.skipif(
    at.compiled() is None,
    reason=f"{fastpath.ENV_PURE_PYTHON} is set"
    if fastpath.switched_off()
    else "controller.storage._archive_fmt is not built",
)

values = st.one_of(
    st.binary(max_size=10),
    st.sampled_from([b'"', b'""', b",", b"\n", b"\r", b"\r\n", b"\x00", b"\xff\xfe", b'a"b,c']),
    st.text(max_size=6).map(str.encode),
)
epochs = st.one_of(
    st.integers(1_790_000_000, 1_800_000_000).map(lambda n: b"%d" % n),
    st.sampled_from([b"", b"0", b" 1795579200 ", "１７９５５７９２００".encode(), b"x", b"-5"]),
    st.sampled_from([b"1_795_579_200", b"\xff", b"00001795579200", b"1795579200" * 3]),
)
LOGIN_NAMES = [b"k", b"t", b"pid", b"ref", b"mac", b"ip", b"client", b"nas_id", b"nas_ip", b"ap"]
LOGIN_NAMES += [b"venue", b"result", b"ipv6", b"ipv6_prefix", b"ipv6_delegated", b"nas_ipv6"]
LOGIN_NAMES += [b"nas_src", b"nas_public", b"nat_ip", b"nat_ports", b"", b"K", b"other"]
kinds = st.sampled_from([b"login", b"close", b"console", b"", b"Login", b"login "])


@st.composite
def field_lists(draw: st.DrawFn, names: list[bytes], extra: st.SearchStrategy[Any]) -> list[bytes]:
    pairs = draw(st.lists(st.tuples(st.sampled_from(names) | st.binary(max_size=4), values)))
    pairs += draw(st.lists(extra, max_size=3))
    flat = [x for pair in draw(st.permutations(pairs)) for x in pair]
    if draw(st.booleans()) and flat:
        flat.pop()  # an odd list: its last name has no value
    return flat


login_entries = st.lists(
    st.tuples(
        values,
        field_lists(
            LOGIN_NAMES,
            st.tuples(st.just(b"k"), kinds)
            | st.tuples(st.just(b"t"), epochs)
            | st.tuples(st.just(b"pid"), st.sampled_from([b"p1", b"p2", b"", b'p"3'])),
        ),
    ),
    max_size=8,
)
PHONES = {b"p1": b'+86138"1', b"p2": b"+86 138,\n\r2", b'p"3': b"\xff\xfe", b"": b"nobody"}


def copied(entries: list[RawEntry]) -> list[RawEntry]:
    """Each side its own lists: the Python side pads them in place (``plan_of``)."""
    return [(eid, list(f)) for eid, f in entries]


def outcome(run: Callable[[], Any]) -> Any:
    try:
        return run()
    except Exception as exc:  # the same refusal, both ways
        return ("raised", type(exc))


def texts(parts: dict[date, CsvPart]) -> dict[date, tuple[bytes, int, int, bool]]:
    return {d: (b"".join(p.chunks), p.count, p.newest, p.refused) for d, p in parts.items()}


def compiled_path(run: Callable[[], Any]) -> Any:
    assert at.compiled() is not None
    return outcome(run)


@settings(max_examples=300, deadline=None)
@given(entries=login_entries)
def test_route_is_route_py(entries: list[RawEntry]) -> None:
    def run(route: Callable[..., None], batch: list[RawEntry]) -> tuple[Any, ...]:
        ids: list[bytes] = []
        logins: list[RawEntry] = []
        consoles: list[RawEntry] = []
        pids: set[bytes] = set()
        refs: set[bytes] = set()
        route(batch, ids, logins, consoles, pids, refs)
        return ids, [e for e, _ in logins], [e for e, _ in consoles], pids, refs

    c = at.compiled()
    assert c is not None
    assert run(c.route, copied(entries)) == run(at.route_py, copied(entries))


@settings(max_examples=300, deadline=None)
@given(entries=login_entries)
def test_login_rows_are_login_lines(entries: list[RawEntry]) -> None:
    def run(format: Callable[..., None], batch: list[RawEntry]) -> Any:
        parts: dict[date, CsvPart] = {}
        format(batch, PHONES, LocalDays(SH), NOW_MS, parts)
        return texts(parts)

    fast = compiled_path(lambda: run(at.login_rows, copied(entries)))
    assert fast == outcome(lambda: run(at.login_lines, copied(entries)))


SESSION_NAMES = [b"start", b"closed", b"seen", b"in", b"out", b"known", b"acct_session_id"]
SESSION_NAMES += [b"venue_type", b"district", b"operator", b"cause", b"pid", b"mac", b"ip"]
SESSION_NAMES += [b"client", b"nas_id", b"nas_ip", b"ap", b"venue", b"ipv6", b"nat_ports"]
SESSION_NAMES += [b"nas_src", b"shut", b"last", b"d:", b"d:2026112"]
numbers = st.one_of(
    st.integers(0, 10**6).map(lambda n: b"%d" % n),
    st.sampled_from([b"", b"0", b"00", b"007", b"x", b"-1", b" 5", b"9" * 20, b"\xff"]),
    st.just("٣".encode()),  # a digit to str.isdigit, not to bytes.isdigit
)
starts = st.one_of(
    st.integers(1_795_500_000, 1_795_600_000).map(lambda n: b"%d" % n),
    st.sampled_from([b"", b"x", b"0", b"0001795579200", b"9" * 30]),
)
session_extra = st.one_of(
    st.tuples(st.sampled_from([b"start", b"closed"]), starts),
    st.tuples(st.sampled_from([b"seen", b"in", b"out"]), numbers),
    st.tuples(st.sampled_from([b"d:20261125", b"d:20261124", b"d:2026112x", b"d:x"]), numbers),
    st.tuples(st.just(b"known"), st.sampled_from([b"1", b"0", b"", b"true"])),
)
session_records = st.lists(
    st.tuples(field_lists(SESSION_NAMES, session_extra), st.sampled_from(list(PHONES.values()))),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(records=session_records)
def test_session_rows_are_session_lines(records: list[tuple[list[bytes], bytes]]) -> None:
    def run(format: Callable[..., list[int]]) -> Any:
        ledger: dict[date, CsvPart] = {}
        audit: dict[date, CsvPart] = {}
        batch = [(list(f), phone) for f, phone in records]
        refused = format(batch, LocalDays(SH), NOW_MS, ledger, audit)
        return refused, texts(ledger), texts(audit)

    assert compiled_path(lambda: run(at.session_rows)) == outcome(lambda: run(at.session_rows_py))


def test_the_hard_values_go_out_as_the_reference_writes_them() -> None:
    """One entry of everything at once, byte for byte (and a record that is no list)."""
    f = [b"k", b"login", b"t", b"1795579200", b"pid", b"p1", b"ap", b'a "b",\r\nc', b"venue"]
    fields = [*f, b"\xff\x00\xfe", b"t", b"1795579201", b"nat_ports", b'"']
    parts: dict[date, CsvPart] = {}
    at.login_rows([(b'1-"0', list(fields))], PHONES, LocalDays(SH), NOW_MS, parts)
    reference: dict[date, CsvPart] = {}
    at.login_lines([(b'1-"0', list(fields))], PHONES, LocalDays(SH), NOW_MS, reference)
    assert texts(parts) == texts(reference)
    (text,) = texts(parts).values()
    assert b'"login:1-""0"' in text[0] and b'"a ""b"",\r\nc"' in text[0]
    c = at.compiled()
    assert c is not None
    with pytest.raises(TypeError):
        c.login_csv([(b"1-0", (b"k", b"login"))], PHONES, lambda t: (b"1", date.min, b""), b"1")
    with pytest.raises(TypeError):
        c.route([(b"1-0", [b"k", "login"])], [], [], [], set(), set())


def test_a_round_in_slices_is_one_call() -> None:
    """A round longer than ``C_SLICE`` goes to C in slices (the GIL let go between):
    the same bytes per day, and the refused records by their index in the round."""
    base = 1_795_536_000  # 2026-11-25 00:00 Asia/Shanghai: the round spans two days
    n = 2 * at.C_SLICE + 7
    logins = [
        (b"%d-0" % i, [b"k", b"login", b"t", b"%d" % (base - n + 2 * i), b"pid", b"p1"])
        for i in range(n)
    ]
    records = []
    for i in range(n // 3):
        start = base - 1800 + i
        f = [b"pid", b"p%d" % i, b"start", b"%d" % start, b"closed", b"%d" % (start + 60)]
        if i % 7 == 0:  # counted on the day after its start: left to the reference
            f += [b"d:20261125", b"60"]
        records.append((f, b'+86"1'))

    def both(fmt_logins: Callable[..., None], fmt_sessions: Callable[..., list[int]]) -> Any:
        audit: dict[date, CsvPart] = {}
        ledger: dict[date, CsvPart] = {}
        fmt_logins(copied(logins), PHONES, LocalDays(SH), NOW_MS, audit)
        batch = [(list(f), phone) for f, phone in records]
        refused = fmt_sessions(batch, LocalDays(SH), NOW_MS, ledger, audit)
        return refused, texts(ledger), texts(audit)

    fast = both(at.login_rows, at.session_rows)
    assert fast == both(at.login_lines, at.session_rows_py)
    assert len(fast[2]) == 2 and fast[1] and fast[0] == list(range(0, n // 3, 7))
