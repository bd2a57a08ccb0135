"""Differential, coverage-guided fuzzing of the compiled codec (``radius._speedups``)
against the reference model ``radius.packet``, with atheris (libFuzzer for Python).

Not collected by pytest (the name does not start with ``test_``); CI runs it bounded
through ``tests/test_fuzz_atheris_speedups_ci.py`` when atheris is installed (it is a test
dependency: a manylinux wheel exists for CPython 3.11). A longer run, by hand, from the
repository root::

    .venv/bin/python tests/fuzz_atheris_speedups.py -max_total_time=300 \\
        -artifact_prefix=/tmp/ /tmp/citywifi-speedups-corpus tests/fuzz_corpus/seeds

Coverage comes from the instrumented Python reference (the C side is not instrumented,
so the fuzzer steers by the Python decoder's branches, which mirror the C's). Each input
is tried as sent and re-signed (``tests.support.fuzz_kit.resign``: the fuzzer cannot
compute MD5), with both Message-Authenticator settings and three secrets (empty, short,
longer than an HMAC block); every decoded request is answered with each reply code by
both encoders, and its attributes read as an Accounting-Request's event values by both
``radius.events._accounting_values`` and the compiled ``accounting_values`` (values and
types). Any difference (result, ``PacketError`` reason or message, reply octets,
``ValueError``) is a crash; the input is left in ``<artifact_prefix>crash-<sha1>``.

The same input also drives the compiled duplicate cache against ``radius.dedup``
(octet pairs as begin/finish/forget/lookup on eight keys, time steps forwards and back,
small windows and capacities), the compiled RESP packer against
``controller.storage.redis_batch.pack`` (the octets split into commands and arguments
of every type the link accepts or refuses), the compiled RESP reply router against
hiredis.Reader (the octets as a reply stream, whole and cut into chunks; the replies and
the protocol error must be hiredis's, except that a RESP3 type byte is refused), and the
compiled counters of the RADIUS shell against ``radius.metrics.PyCounters`` (octet
triples as answers, drops, at-once answers and invalid calls, which must raise and count
nothing; then one scrape and one take of each, the same but for ``_created`` and the
float rounding of the latency sum).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    import atheris
except ImportError:  # pragma: no cover - optional tool
    sys.exit("atheris is not installed: .venv/bin/pip install atheris")

with atheris.instrument_imports():
    from radius import dedup, events, packet

import re  # noqa: E402

import hiredis  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from redis import exceptions as redis_errors  # noqa: E402

from controller.storage.redis_batch import pack  # noqa: E402
from radius.core import DROP_REASONS  # noqa: E402
from radius.metrics import ROLES, RadiusMeters  # noqa: E402
from radius.tally import Tally  # noqa: E402

try:
    from radius import _speedups as compiled
    from radius import fastpath  # binds the Request and PacketError types
except ImportError:  # pragma: no cover
    sys.exit("radius._speedups is not built: nothing to compare (pip install .)")

from tests.support.fuzz_kit import SECRET, fix_length, resign  # noqa: E402 (after sys.path)

assert fastpath.available() or fastpath.reason().endswith("=1")
SECRETS = (SECRET, b"", b"a much longer shared secret than one HMAC-MD5 block of 64 octets")
REPLIES = {1: (2, 3, 11), 4: (5,), 12: (2, 5), 40: (41, 42), 43: (44, 45)}


def decoded(fn: Any, data: bytes, secret: bytes, require: bool) -> tuple[Any, ...]:
    try:
        r = fn(data, secret, require_message_authenticator=require)
    except packet.PacketError as exc:
        return ("drop", exc.reason, str(exc))
    return (
        "ok",
        r.code,
        r.identifier,
        r.authenticator,
        list(r.attrs.items()),
        list(r.vsas.items()),
        r.raw,
    )


def encoded(fn: Any, *args: Any, **kw: Any) -> tuple[Any, ...]:
    try:
        return ("ok", fn(*args, **kw))
    except ValueError as exc:
        return ("error", str(exc))


def check(data: bytes, secret: bytes) -> None:
    for require in (True, False):
        want = decoded(packet.decode_request, data, secret, require)
        got = decoded(compiled.decode_request, data, secret, require)
        if got != want:
            raise AssertionError(f"decode differs on {data.hex()}: {got} != {want}")
    try:
        req = packet.decode_request(data, secret, require_message_authenticator=False)
    except packet.PacketError:
        return
    attrs: dict[int, list[bytes]] = req.attrs  # type: ignore[assignment]
    want_values = events._accounting_values(attrs)
    got_values = compiled.accounting_values(attrs)
    if got_values != want_values or list(map(type, got_values)) != list(map(type, want_values)):
        raise AssertionError(f"accounting values differ on {data.hex()}: {got_values}")
    for code in (*REPLIES[req.code], 0):
        for ma in (None, True, False):
            args = (code, req, secret, b"\x12\x07hello")
            want = encoded(packet.encode_reply, *args, message_authenticator=ma)
            got = encoded(compiled.encode_reply, *args, message_authenticator=ma)
            if got != want:
                raise AssertionError(f"encode differs on {data.hex()} code {code}: {got} != {want}")


STEPS = (0.0, 0.1, 0.5, 1.0, 2.0, 3.0, -0.5, 40.0)


def outcome(fn: Any, *args: Any) -> tuple[Any, ...]:
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("error", type(exc))


def check_dedup(data: bytes) -> None:
    """Octet pairs as operations on a Python and a C cache; every result the same."""
    if len(data) < 2:
        return
    window, capacity = (0.5, 1.0, 3.0, 30.0)[data[0] & 3], 1 + (data[0] >> 2) % 6
    ref, c = dedup.DedupCache(window, capacity), compiled.DedupCache(window, capacity)
    now = float(data[1])
    for at in range(2, len(data) - 1, 2):
        op, arg = data[at], data[at + 1]
        now += STEPS[op >> 5]
        k: Any = ("192.0.2.1", 5000 + (arg & 7), 4, arg >> 3 & 3, bytes([arg >> 5]) * 16)
        kind = op & 7
        if kind == 7:
            k = (k, [])  # unhashable: the same TypeError
        if kind < 2:
            args: tuple[Any, ...] = ("begin", k, now)
        elif kind < 4:
            args = ("finish", k, bytes([op, arg]), now)
        elif kind == 4:
            args = ("finish", k, None, now)
        else:
            args = ("lookup", k, now)
        want = outcome(getattr(ref, args[0]), *args[1:])
        got = outcome(getattr(c, args[0]), *args[1:])
        if got != want or len(ref) != len(c):
            raise AssertionError(f"dedup differs on {data.hex()} at {at}: {got} != {want}")


def argument(chunk: bytes) -> Any:
    kind, body = chunk[0] % 9, chunk[1:]
    if kind == 0:
        return body
    if kind == 1:
        return body.decode("utf-8", "surrogateescape")  # lone surrogates: refused
    if kind == 2:  # 1,000 octets at most: within repr()'s 4300 digits (see kind 3)
        return int.from_bytes(body[:1000], "big", signed=True)
    if kind == 3:
        # beyond 64 bits, within repr()'s 4300 digits: beyond, hiredis 3.5's pack_command
        # crashes (it uses the NULL repr), where ours raises repr()'s ValueError
        return int.from_bytes(body[:64] * 5, "big", signed=True)
    if kind == 4:
        return float.fromhex(body.hex() or "0") if len(body) < 12 else float("nan")
    if kind == 5:
        return memoryview(body)
    if kind == 6:
        return len(body) % 2 == 0  # a bool: refused
    if kind == 7:
        return None  # refused
    return bytearray(body)  # refused


def check_pack(data: bytes) -> None:
    """Commands split at 0xff, arguments at 0xfe, each typed by its first octet."""
    commands = [tuple(argument(a) for a in cmd.split(b"\xfe") if a) for cmd in data.split(b"\xff")]
    want = outcome(pack, commands)
    got = outcome(compiled.pack_commands, commands)
    if got != want:
        raise AssertionError(f"pack differs on {data.hex()}: {got} != {want}")


COUNTER_CLIENTS = ("nas-a", "nas-b", "长安", "")
COUNTER_CODES = (2, 3, 11, 5, 4, 0)
COUNTER_REASONS = ("", "accept", "bad_password", *DROP_REASONS)
LATENCIES = (0.0, 0.0005, 0.001, 0.0049, 2.5, 3.0, 1e300, -1.0)


def scraped(registry: CollectorRegistry) -> list[tuple[str, float]]:
    """The samples in scrape order, without ``_created`` (not rendered: that costs ~8 ms,
    and the rendering is prometheus_client's own, the same both ways)."""
    return [
        (f"{s.name}{sorted(s.labels.items())}", s.value)
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    ]


def same_scrape(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> bool:
    """The same samples in the same order; a latency sum up to float rounding (the C side
    adds the latencies up before prometheus adds the total)."""
    return len(got) == len(want) and all(
        g == w or ("_sum" in g[0] and g[0] == w[0] and math.isclose(g[1], w[1], rel_tol=1e-9))
        for g, w in zip(got, want, strict=True)
    )


def counter_rig() -> tuple[CollectorRegistry, Tally, RadiusMeters]:
    registry, tally = CollectorRegistry(), Tally()
    meters = RadiusMeters(registry, tally)
    for role in ROLES:
        meters.prepare(role, DROP_REASONS)
    return registry, tally, meters


# kept from input to input (making them costs more than a scrape): both see every
# input's events, so they must agree after each one
RIGS = (counter_rig(), counter_rig())


def check_counters(data: bytes) -> None:
    """Octet triples as events on the compiled counters and on PyCounters."""
    if len(data) < 4 or data[0] & 7:  # one input in eight: two scrapes cost ~4 ms
        return
    data = data[1:]
    rigs = RIGS
    c = rigs[0][2].compiled_with(compiled.Counters)
    ref = rigs[1][2].python
    for at in range(0, min(len(data), 96) - 2, 3):
        op, a, b = data[at], data[at + 1], data[at + 2]
        role, client = op >> 7, COUNTER_CLIENTS[a & 3]
        kind = op & 7
        if kind < 4:
            code, reason = COUNTER_CODES[(a >> 2) % 6], COUNTER_REASONS[b % len(COUNTER_REASONS)]
            args: tuple[Any, ...] = (role, client, code, reason, LATENCIES[b >> 5])
            if not c.sent(*args):
                rigs[0][2].sent_in_python(*args)
            ref.sent(*args)
        elif kind == 4:
            source = None if a & 4 else client
            # a DropReason (radius.core): their label sets are made at start, in order
            c.dropped(role, source, DROP_REASONS[b % len(DROP_REASONS)])
            ref.dropped(role, source, DROP_REASONS[b % len(DROP_REASONS)])
        elif kind == 5:
            source = None if a & 4 else client
            c.at_once(role, bool(b & 1), source)
            ref.at_once(role, bool(b & 1), source)
        else:  # refused: a role beyond acct, or a client or reason of another type
            bad: tuple[Any, ...] = (
                (2 + a, client, 2, "", 0.1) if b & 1 else (role, client.encode(), 2, "", 0.1)
            )
            for method, args in (("sent", bad), ("dropped", (*bad[:2], b"x"))):
                if outcome(getattr(c, method), *args)[0] != "error":
                    raise AssertionError(f"counters took {method}{args} on {data.hex()}")
    got, want = scraped(rigs[0][0]), scraped(rigs[1][0])
    if not same_scrape(got, want):
        raise AssertionError(f"counters' scrape differs on {data.hex()}: {got} != {want}")
    if rigs[0][1].take() != rigs[1][1].take():
        raise AssertionError(f"counters' take differs on {data.hex()}")


def shown(value: Any) -> Any:
    if isinstance(value, list):
        return [shown(v) for v in value]
    if isinstance(value, BaseException):
        return ("error", type(value), value.args)
    return value


def read_all(reader: Any, data: bytes, size: int) -> list[Any]:
    out: list[Any] = []
    try:
        for at in range(0, len(data), size):
            reader.feed(data[at : at + size])
            while (reply := reader.gets()) is not False:
                out.append(shown(reply))
            out.append("|")
    except hiredis.ProtocolError as exc:
        out.append(("protocol", str(exc)))
    return out


RESP3_REFUSED = re.compile(r'Protocol error, got "[_,#%~=(>|]" as reply type byte')


TOKENS = (
    *(b"+", b"-", b":", b"$", b"*", b"\r\n", b"\r\n", b"\r", b"\n", b"0", b"1", b"-1", b"3"),
    *(b"*1\r\n" * 300, b"9223372036854775808", b"4294967296", b"x", b"\xff", b"_"),
)


def as_resp(data: bytes) -> bytes:
    """The octets as RESP-ish tokens (an octet above the table: itself), so that random
    input makes reply streams, valid and broken, which raw RADIUS-shaped input rarely is."""
    return b"".join(TOKENS[b] if b < len(TOKENS) else bytes([b]) for b in data)


def check_replies(data: bytes) -> None:
    """The octets, and their RESP tokens, as Redis replies: the C router's gets()
    against hiredis.Reader's."""
    check_stream(data)
    check_stream(as_resp(data))


def check_stream(data: bytes) -> None:
    if re.search(rb"\*[1-9][0-9]{5}", data):
        return  # hiredis allocates the announced list at once: gigabytes, not a finding
    for size in (len(data) or 1, 1, 1 + data[0] % 7 if data else 1):
        want = read_all(hiredis.Reader(replyError=redis_errors.ResponseError), data, size)
        router = compiled.ReplyRouter(redis_errors.ResponseError, hiredis.ProtocolError)
        got = read_all(router, data, size)
        if got == want:
            continue
        last = got[-1] if got else None
        refused = isinstance(last, tuple) and RESP3_REFUSED.fullmatch(last[1]) is not None
        if not (refused and want[: len(got) - 1] == got[:-1]):
            raise AssertionError(f"replies differ on {data.hex()} ({size}): {got} != {want}")


def one_input(data: bytes) -> None:
    check_dedup(data)
    check_pack(data)
    check_counters(data)
    check_replies(data)
    for secret in SECRETS:
        check(data, secret)
        signed = resign(fix_length(data), secret)
        if signed != data:
            check(signed, secret)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
