"""The compiled RESP reply router (``radius._speedups.ReplyRouter``) against its reference,
``controller.storage.redis_batch.ReplyRouter`` (hiredis.Reader and a Python loop).

What must hold: on the same octets, however they are cut into chunks, the compiled
router yields exactly hiredis's replies (bytes, int, None, nested lists, the error class
with the UTF-8 "replace" message) and hiredis's protocol errors, as soon as hiredis finds
them; it hands each waiting unit exactly the replies the reference hands it. The one
intended difference: the link speaks RESP2 (it never sends HELLO), so a RESP3 type byte is
a protocol error for the compiled router, where hiredis would parse it.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import exceptions as redis_errors

from controller.storage.redis_batch import ReplyRouter, router_factory
from radius import fastpath

COMPILED = fastpath.load().reply_router
needs_c = pytest.mark.skipif(
    COMPILED is None,
    reason=f"compiled path not in use here ({fastpath.reason()}); the fallback is tested",
)
RESP3 = b"_,#%~=(>|"


def hiredis_reader() -> Any:
    return hiredis.Reader(replyError=redis_errors.ResponseError)


def compiled_reader() -> Any:
    assert COMPILED is not None
    return COMPILED(redis_errors.ResponseError, hiredis.ProtocolError)


def shown(value: Any) -> Any:
    """Replies in a comparable form (exceptions compare by identity)."""
    if isinstance(value, list):
        return [shown(v) for v in value]
    if isinstance(value, BaseException):
        return ("error", type(value), value.args)
    return value


def read_all(reader: Any, data: bytes, cuts: list[int]) -> list[Any]:
    """Every reply and, last, the protocol error, after each chunk; chunk boundaries are
    recorded, so an error must also come as early as hiredis's."""
    out: list[Any] = []
    at = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            reader.feed(data[at:cut])
            at = max(at, cut)
            while (reply := reader.gets()) is not False:
                out.append(shown(reply))
            out.append("|")
    except hiredis.ProtocolError as exc:
        out.append(("protocol", str(exc)))
    return out


@st.composite
def chunked(draw: st.DrawFn, data: st.SearchStrategy[bytes]) -> tuple[bytes, list[int]]:
    octets = draw(data)
    cuts = draw(st.lists(st.integers(0, len(octets)), max_size=8))
    return octets, cuts


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


LINE = st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
SCALAR = st.one_of(
    LINE.map(lambda b: b"+" + b + b"\r\n"),
    LINE.map(lambda b: b"-" + b + b"\r\n"),
    st.sampled_from([b"-ERR \xff\xfe bad utf-8\r\n", b"-NOSCRIPT No matching script\r\n"]),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: b":%d\r\n" % i),
    st.binary(max_size=40).map(_bulk),  # \r\n inside: bulk strings carry anything
    st.just(b"$-1\r\n"),
    st.just(b"*-1\r\n"),
)
REPLY = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=5).map(lambda xs: b"*%d\r\n" % len(xs) + b"".join(xs)),
    max_leaves=30,
)
REPLIES = st.lists(REPLY, max_size=8).map(b"".join)

# garbage: valid replies cut and spliced with RESP's own characters, so the parser's
# every check is reached (lengths, signs, CR/LF placement, depth)
PIECE = st.one_of(
    REPLY,
    st.sampled_from(
        [
            *(b"\r\n", b"\r", b"\n", b"*", b"$", b":", b"+", b"-", b"0", b"-1", b"-2", b"1"),
            *(b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808"),
            *(b"4294967295", b"4294967296", b"00", b"-0", b"+1", b" 1", b"*1\r\n" * 1030),
            *(b"x", b"\x00", b"\xff", b'"', b"\\", b"\t", b"_", b"%", b","),
        ]
    ),
    st.binary(max_size=6),
)
GARBAGE = st.lists(PIECE, max_size=12).map(b"".join)


def _hiredis_safe(data: bytes) -> bool:
    """hiredis.Reader allocates a list of the announced size at once: a garbage
    ``*123456789`` would take gigabytes (or MemoryError) before any element arrives."""
    return not re.search(rb"\*[1-9][0-9]{5}", data)


def assert_same_reading(data: bytes, cuts: list[int]) -> None:
    want = read_all(hiredis_reader(), data, cuts)
    got = read_all(compiled_reader(), data, cuts)
    if got == want:
        return
    # the one intended difference: a RESP3 type byte is refused, where hiredis parses
    last = got[-1]
    assert isinstance(last, tuple) and last[0] == "protocol", (got, want)
    byte = re.fullmatch(r'Protocol error, got "(.)" as reply type byte', last[1])
    assert byte is not None and byte.group(1).encode() in RESP3, (got, want)
    done = got[:-1]
    assert want[: len(done)] == done, (got, want)


@needs_c
@settings(max_examples=800, derandomize=True, database=None, deadline=None)
@given(chunked(REPLIES))
def test_the_compiled_reader_reads_as_hiredis(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    assert read_all(compiled_reader(), data, cuts) == read_all(hiredis_reader(), data, cuts)


@needs_c
@settings(max_examples=1500, derandomize=True, database=None, deadline=None)
@given(chunked(GARBAGE))
def test_the_compiled_reader_fails_on_garbage_as_hiredis(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    if _hiredis_safe(data):
        assert_same_reading(data, cuts)


@needs_c
def test_the_compiled_reader_on_the_edges() -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    for data in [
        b"*1\r\n" * 1024 + b":1\r\n",  # 1024 levels: hiredis's limit, still fine
        b"*1\r\n" * 1024 + b"*",  # one more: "Max nesting depth exceeded" at once
        b"$-2\r\n",
        b"*-2\r\n",
        b"*4294967296\r\n",
        b"$9223372036854775807\r\n",  # waits (hiredis does too)
        b"$99999999999999999999\r\n",
        b":-9223372036854775808\r\n:9223372036854775808\r\n",
        b"+a\rb\r\n",
        b"-a\nb\r\n",
        b"$3\r\nabcXY+OK\r\n",  # the CRLF after a bulk is skipped unread, as hiredis does
        b"\x00",
        b"\x7f",
        b"\n",
    ]:
        assert_same_reading(data, [])
        assert_same_reading(data, list(range(len(data))))  # one octet at a time
    for resp3 in RESP3:
        got = read_all(compiled_reader(), bytes([resp3]) + b"1\r\n", [])
        assert got == [("protocol", f'Protocol error, got "{chr(resp3)}" as reply type byte')]


@needs_c
def test_a_protocol_error_sticks() -> None:
    reader = compiled_reader()
    reader.feed(b"+OK\r\n?")
    assert reader.gets() == b"OK"
    for _ in range(2):
        with pytest.raises(hiredis.ProtocolError, match='got "\\?" as reply type byte'):
            reader.gets()
    with pytest.raises(hiredis.ProtocolError):
        reader.feed(b"+OK\r\n")


def both_routers() -> Iterator[Any]:
    yield ReplyRouter
    if COMPILED is not None:
        yield COMPILED


UNITS = st.lists(st.tuples(st.integers(1, 4), st.sampled_from(["wait", "cancelled"])), max_size=8)


def route(factory: Any, data: bytes, cuts: list[int], units: list[tuple[int, str]]) -> list[Any]:
    """What each unit's future holds after each chunk, with answered and len()."""
    loop = asyncio.new_event_loop()
    try:
        router = factory(redis_errors.ResponseError, hiredis.ProtocolError)
        futures = []
        for count, state in units:
            future = loop.create_future()
            if state == "cancelled":
                future.cancel()
            router.push(count, future)
            futures.append(future)
        trace: list[Any] = []
        at = 0
        for cut in [*sorted(cuts), len(data)]:
            try:
                router.feed(data[at:cut])
            except hiredis.ProtocolError as exc:
                trace.append(("protocol", str(exc)))
            at = max(at, cut)
            states = [
                "cancelled" if f.cancelled() else (shown(f.result()) if f.done() else "waiting")
                for f in futures
            ]
            trace.append((states, router.answered, len(router)))
        left = router.take()
        trace.append(([futures.index(f) for f in left], len(router)))
        return trace
    finally:
        loop.close()


@needs_c
@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(chunked(REPLIES), UNITS)
def test_the_compiled_router_hands_each_unit_what_the_reference_does(
    case: tuple[bytes, list[int]], units: list[tuple[int, str]]
) -> None:
    data, cuts = case
    assert route(COMPILED, data, cuts, units) == route(ReplyRouter, data, cuts, units)


@pytest.mark.parametrize("factory", list(both_routers()), ids=lambda f: f.__module__)
def test_a_unit_is_answered_when_its_last_reply_is_parsed(factory: Any) -> None:
    trace = route(
        factory, b"+a\r\n:1\r\n$1\r", [5, 9], [(2, "wait"), (1, "cancelled"), (1, "wait")]
    )
    assert trace[0] == (["waiting", "cancelled", "waiting"], 0, 3)
    assert trace[1] == ([[b"a", 1], "cancelled", "waiting"], 1, 2)
    assert trace[2] == ([[b"a", 1], "cancelled", "waiting"], 1, 2)  # "$1\r": not complete
    assert trace[3] == ([1, 2], 0)  # taken: the cancelled one still waits for its reply
    with pytest.raises(ValueError):
        factory(redis_errors.ResponseError, hiredis.ProtocolError).push(0, None)


@pytest.mark.parametrize("factory", list(both_routers()), ids=lambda f: f.__module__)
def test_without_waiting_units_replies_stay_unparsed(factory: Any) -> None:
    loop = asyncio.new_event_loop()
    try:
        router = factory(redis_errors.ResponseError, hiredis.ProtocolError)
        router.feed(b"+early\r\n")  # no unit waits: kept, like the reference's reader
        future = loop.create_future()
        router.push(1, future)
        router.feed(b"")
        assert future.result() == [b"early"] and router.answered == 1
    finally:
        loop.close()


def test_the_link_routes_with_the_data_path_router() -> None:
    assert router_factory() is (COMPILED or ReplyRouter)


def _stream_reply(entries: int) -> bytes:
    """An XREADGROUP reply of the archiver's shape: one stream, `entries` entries of
    eight fields, about 370 octets each."""
    items = []
    for i in range(entries):
        fields = [b"kind", b"login", b"at", b"%d" % (1_790_000_000_000 + i), b"phone"]
        fields += [b"8613%09d" % i, b"detail", b"x" * 300]
        items.append(b"*2\r\n" + _bulk(b"1790000000000-%d" % i) + b"*8\r\n")
        items.append(b"".join(_bulk(f) for f in fields))
    return b"*1\r\n*2\r\n" + _bulk(b"citywifi:outbox") + b"*%d\r\n" % entries + b"".join(items)


@needs_c
@pytest.mark.parametrize("chunk", [7, 1000, 65536])
def test_a_chunked_reply_is_scanned_once(chunk: int) -> None:
    """A reply cut into chunks is read as hiredis reads it, and the scanner looks at each
    octet about once: it resumes where the last chunk ran out (the arrays still open and
    the items they owe) instead of rescanning the reply from its start on every chunk,
    which made a 733 KB XREADGROUP reply in 64 KiB chunks cost twice as much as whole."""
    entries = 2000 if chunk > 7 else 100
    data = _stream_reply(entries)
    cuts = list(range(chunk, len(data), chunk))
    assert read_all(compiled_reader(), data, cuts) == read_all(hiredis_reader(), data, cuts)
    whole = compiled_reader()
    read_all(whole, data, [])
    reader = compiled_reader()
    read_all(reader, data, cuts)
    # a chunk boundary costs at most the header and partial line it cut, read again
    # (bulk data is skipped unread, so `examined` is well below len(data))
    bound = whole.examined + 32 * len(cuts)
    assert whole.examined < len(data) and reader.examined <= bound, (reader.examined, bound)
    loop = asyncio.new_event_loop()
    try:  # and the same through the routing path (feed with a unit waiting)
        router = compiled_reader()
        future = loop.create_future()
        router.push(1, future)
        at = 0
        for cut in [*cuts, len(data)]:
            router.feed(data[at:cut])
            at = cut
        assert future.done() and len(future.result()[0][0][1]) == entries
        assert router.examined <= bound, (router.examined, bound)
    finally:
        loop.close()


@needs_c
def test_short_words_are_one_object_and_keep_their_value() -> None:
    """Field names and status words (1-16 octets from a lowercase letter) come from the
    reader's small cache of bytes objects, one allocation fewer each (an archiver round
    reads ~550,000); anything else is made anew, and a slot two words share just holds
    the later one: every value stays what hiredis reads."""
    words = [b"pid", b"in_octets", b"a" * 16, b"a" * 17, b"Pid", b"0ab", b"pie", b"x"]
    many = [w + b"%d" % i for i in range(3000) for w in (b"k", b"zz")]  # collisions
    data = b"".join(_bulk(w) for w in [*words, *many, *words])
    want = read_all(hiredis_reader(), data, [])
    assert read_all(compiled_reader(), data, []) == want
    reader = compiled_reader()
    reader.feed(_bulk(b"pid") + _bulk(b"pid") + _bulk(b"Pid") + _bulk(b"Pid"))
    first, second, upper, upper_again = (reader.gets() for _ in range(4))
    assert first == second == b"pid" and first is second
    assert upper == upper_again == b"Pid" and upper is not upper_again
