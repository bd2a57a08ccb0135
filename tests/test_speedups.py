"""The compiled data path (``radius._speedups`` through ``radius.fastpath``) against the
reference model ``radius.packet``, and its batched datagram I/O over real sockets.

Differential: on random valid packets, on every seed's mutations (``tests.support.
fuzz_kit``, re-signed so they get past the authenticators) and on raw random bytes, the
compiled ``decode_request`` must return an equal ``Request`` (same fields, same dict
order) or raise a ``PacketError`` with the same reason and message, and the compiled
``encode_reply`` must give the same octets or the same ``ValueError``. Bounded and
derandomised: a few seconds. The longer, coverage-guided version is
``tests/fuzz_atheris_speedups.py``.

``recv_batch``/``send_batch`` run over loopback UDP, IPv4 and IPv6: batches, order,
addresses, truncation, a partial send (an oversized datagram in the middle of a batch),
the non-blocking empty read.

Without the extension (not built, or ``CITYWIFI_PURE_PYTHON=1``) the compiled tests are
skipped with the reason ``radius.fastpath`` gives, and the fallback tests still run.
"""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radius import fastpath, packet
from tests.support.compiled import BLOCK_EXTENSION, C, needs_c, run_python
from tests.support.fuzz_kit import (
    MA,
    PROXY_STATE,
    SECRET,
    corpus,
    fix_length,
    mutations,
    resign,
    seed_packets,
    tlv,
    vsa,
)

DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, max_examples=250)
SEEDS = seed_packets()
REPLIES_TO = {1: (2, 3, 11), 4: (5,), 12: (2, 5), 40: (41, 42), 43: (44, 45)}
SECRETS = (SECRET, b"", b"s", b"x" * 64, b"long secret " * 8)


# --------------------------------------------------------------------------- outcomes


def decode_outcome(
    fn: Callable[..., packet.Request], data: bytes, secret: bytes, require: bool
) -> tuple[Any, ...]:
    """A comparable picture of what a decoder made of ``data``."""
    try:
        r = fn(data, secret, require_message_authenticator=require)
    except packet.PacketError as exc:
        return ("drop", type(exc), exc.reason, str(exc))
    assert type(r) is packet.Request
    return (
        "request",
        r.code,
        r.identifier,
        r.authenticator,
        list(r.attrs.items()),
        list(r.vsas.items()),
        r.raw,
    )


def encode_outcome(fn: Callable[..., bytes], *args: Any, **kw: Any) -> tuple[Any, ...]:
    try:
        return ("bytes", fn(*args, **kw))
    except ValueError as exc:
        return ("error", type(exc), str(exc))


def same_decode(data: bytes, secret: bytes = SECRET) -> packet.Request | None:
    """Assert both decoders agree on ``data`` (both settings); the Request, if any."""
    assert C is not None
    for require in (True, False):
        want = decode_outcome(packet.decode_request, data, secret, require)
        got = decode_outcome(C.decode_request, data, secret, require)
        assert got == want, data.hex()
    try:
        return packet.decode_request(data, secret, require_message_authenticator=False)
    except packet.PacketError:
        return None


def same_encode(req: packet.Request, code: int, secret: bytes, attrs: bytes) -> None:
    assert C is not None
    for ma in (None, True, False):
        want = encode_outcome(
            packet.encode_reply, code, req, secret, attrs, message_authenticator=ma
        )
        got = encode_outcome(C.encode_reply, code, req, secret, attrs, message_authenticator=ma)
        assert got == want, (code, req, attrs.hex(), ma)
    defaults = encode_outcome(C.encode_reply, code, req, secret)
    assert defaults == encode_outcome(packet.encode_reply, code, req, secret)


# --------------------------------------------------------------------------- strategies


@st.composite
def vendor_tlv(draw: st.DrawFn) -> bytes:
    """A vendor sub-attribute whose length octet is right, or off by a little (0, 1,
    short, long): the edges of the RFC 2865 §5.26 split."""
    value = draw(st.binary(max_size=8))
    length = draw(st.sampled_from((0, 1, 2, len(value) + 1, len(value) + 2, len(value) + 3)))
    return bytes((draw(st.integers(0, 255)), length)) + value


attribute = st.one_of(
    st.tuples(st.integers(1, 255), st.binary(max_size=40)).map(lambda t: tlv(*t)),
    st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=30)).map(lambda t: vsa(*t)),
    st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=10)), max_size=4).map(
        lambda subs: vsa(9, b"".join(tlv(t, v) for t, v in subs))
    ),
    st.lists(vendor_tlv(), min_size=1, max_size=4).map(lambda subs: vsa(311, b"".join(subs))),
    st.binary(max_size=12).map(lambda v: tlv(PROXY_STATE, v)),
    st.just(tlv(MA, bytes(16))),
)


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    """A request-shaped packet: any code, Identifier, authenticator and attributes, with
    a Message-Authenticator often first; re-signed most of the time, then maybe padded."""
    code = draw(st.sampled_from((1, 4, 12, 40, 43, 2, 5, 0, 255)))
    attrs = b"".join(draw(st.lists(attribute, max_size=8)))
    if draw(st.booleans()):
        attrs = tlv(MA, bytes(16)) + attrs
    auth = draw(st.binary(min_size=16, max_size=16))
    body = bytes((code, draw(st.integers(0, 255)), 0, 0)) + auth + attrs
    data = fix_length(body)
    if draw(st.integers(0, 9)) < 8:
        data = resign(data, draw(st.sampled_from(SECRETS)))
    return data + draw(st.binary(max_size=4))


# --------------------------------------------------------------------------- fallback


def test_reason_names_the_path() -> None:
    path = fastpath.load()
    assert path.reason == fastpath.reason()
    if path.compiled:
        assert path.reason == fastpath.COMPILED and path.batch_io is not None
    else:
        assert path.reason.startswith("pure-Python fallback: ")
        assert path.decode_request is packet.decode_request and path.batch_io is None


def _probe(env: dict[str, str], prelude: str = "") -> list[str]:
    code = (
        prelude + "from radius import fastpath\n"
        "p = fastpath.load()\n"
        "print(fastpath.available(), p.compiled, p.batch_io is None)\n"
        "print(p.reason)\n"
    )
    return run_python(code, env).splitlines()


def test_environment_forces_the_fallback() -> None:
    flags, why = _probe({fastpath.ENV_PURE_PYTHON: "1"})
    assert flags == "False False True"
    assert why == "pure-Python fallback: CITYWIFI_PURE_PYTHON=1"


def test_missing_extension_falls_back_and_says_why() -> None:
    """As after a `pip install .` without a compiler: the import fails, the server runs."""
    env = {fastpath.ENV_PURE_PYTHON: ""}
    flags, why = _probe(env, BLOCK_EXTENSION)
    assert flags == "False False True"
    assert why == "pure-Python fallback: radius._speedups is not built (no compiler here)"


# --------------------------------------------------------------------------- codec


@needs_c
def test_md5_and_hmac_match_hashlib() -> None:
    import hashlib
    import hmac

    assert C is not None
    rng = random.Random(1321)
    for n in [*range(0, 200), 4095, 4096, 10_000]:
        data = rng.randbytes(n)
        assert C.md5(data) == hashlib.md5(data).digest()
        key = rng.randbytes(rng.choice((0, 1, 16, 63, 64, 65, 200)))
        assert C.hmac_md5(key, data) == hmac.digest(key, data, "md5")


@needs_c
def test_seeds_and_corpus_decode_alike() -> None:
    for _name, data in corpus():
        for secret in SECRETS:
            same_decode(data, secret)
    for data in SEEDS.values():
        req = same_decode(data)
        assert req is not None


@needs_c
def test_mutated_seeds_decode_alike() -> None:
    """The fuzz kit's mutations (bit flips, lengths, hostile attributes, re-signed)."""
    for data in mutations(list(SEEDS.values()), 4000, seed=1600):
        same_decode(data)


@needs_c
def test_every_prefix_and_bit_flip_of_a_seed() -> None:
    for data in (SEEDS["auth-proxy-state"], SEEDS["acct-interim"], SEEDS["auth-vsa-tunnel"]):
        for n in range(len(data) + 1):
            same_decode(data[:n])
        for i in range(len(data) * 8):
            flipped = bytearray(data)
            flipped[i // 8] ^= 1 << (i % 8)
            same_decode(bytes(flipped))
            same_decode(resign(bytes(flipped)))


@needs_c
@DETERMINISTIC
@given(packets(), st.sampled_from(SECRETS))
def test_random_packets_decode_alike(data: bytes, secret: bytes) -> None:
    same_decode(data, secret)


@needs_c
@DETERMINISTIC
@given(st.binary(max_size=120))
def test_random_bytes_decode_alike(data: bytes) -> None:
    same_decode(data)
    same_decode(resign(fix_length(data)))


@needs_c
@DETERMINISTIC
@given(
    packets(),
    st.sampled_from(SECRETS),
    st.integers(0, 255),
    st.one_of(st.binary(max_size=60), st.integers(4040, 4100).map(bytes)),
)
def test_replies_encode_alike(data: bytes, secret: bytes, code: int, attrs: bytes) -> None:
    req = same_decode(data, secret)
    if req is None:
        return
    same_encode(req, code, secret, attrs)
    for right in REPLIES_TO[req.code]:
        same_encode(req, right, secret, attrs)


@needs_c
def test_replies_to_every_seed_encode_alike() -> None:
    for data in SEEDS.values():
        req = packet.decode_request(data, SECRET, require_message_authenticator=False)
        for code in (*REPLIES_TO[req.code], 0, 3, 5, 255):
            for secret in SECRETS:
                same_encode(req, code, secret, b"")
                same_encode(req, code, secret, tlv(18, b"hello") + tlv(27, b"\0\0\0\x3c"))


@needs_c
def test_proxy_state_echo_and_oversized_reply() -> None:
    """Proxy-States come back in order after the reply's attributes (RFC 2865 §5.33);
    a reply that would pass 4096 octets is refused alike."""
    assert C is not None
    states = [tlv(PROXY_STATE, bytes([i]) * 200) for i in range(19)]
    data = resign(
        fix_length(bytes((1, 7, 0, 0)) + bytes(16) + tlv(MA, bytes(16)) + b"".join(states))
    )
    req = same_decode(data)
    assert req is not None and len(req.all(PROXY_STATE)) == 19
    same_encode(req, 2, SECRET, b"")
    same_encode(req, 2, SECRET, bytes(100))
    out = C.encode_reply(2, req, SECRET, message_authenticator=False)
    assert out.endswith(b"".join(states))
    with pytest.raises(ValueError, match="exceeds 4096"):
        C.encode_reply(2, req, SECRET, bytes(300))


# --------------------------------------------------------------------------- batch I/O


def _pair(family: socket.AddressFamily, host: str) -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(family, socket.SOCK_DGRAM)
    tx = socket.socket(family, socket.SOCK_DGRAM)
    for s in (rx, tx):  # room for the whole batch (up to net.core.rmem_max)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((host, 0))
    rx.setblocking(False)
    tx.setblocking(False)
    return rx, tx


def _recv_all(rx: socket.socket, want: int) -> list[tuple[bytes, Any]]:
    """Poll (non-blocking reads, select between) until ``want`` datagrams came."""
    import select

    assert C is not None
    got: list[tuple[bytes, Any]] = []
    while len(got) < want:
        ready, _, _ = select.select([rx], [], [], 5)
        assert ready, f"only {len(got)} of {want} datagrams arrived"
        got += C.recv_batch(rx.fileno(), 64)
    return got


@needs_c
@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_batches_over_loopback(family: socket.AddressFamily, host: str) -> None:
    assert C is not None
    rx, tx = _pair(family, host)
    with rx, tx:
        assert C.recv_batch(rx.fileno(), 16) == []  # non-blocking: nothing waits
        dest = rx.getsockname()
        items = [(f"datagram {i}".encode() * (i % 7 + 1), dest) for i in range(300)]
        assert C.send_batch(tx.fileno(), items) == 300
        got = _recv_all(rx, 300)
        assert [d for d, _ in got] == [d for d, _ in items]
        assert {a for _, a in got} == {tx.getsockname()}  # as socket.recvfrom gives it
        # replies go back to the addresses recv_batch gave, in one call
        assert C.send_batch(rx.fileno(), [(b"re:" + d, a) for d, a in got[:50]]) == 50
        back = _recv_all(tx, 50)
        assert [d for d, _ in back] == [b"re:" + d for d, _ in got[:50]]
        assert C.send_batch(tx.fileno(), []) == 0


@needs_c
def test_batch_larger_than_one_system_call() -> None:
    assert C is not None
    rx, tx = _pair(socket.AF_INET, "127.0.0.1")
    with rx, tx:
        n = C.MAX_BATCH + 300
        items = [(i.to_bytes(4, "big"), rx.getsockname()) for i in range(n)]
        assert C.send_batch(tx.fileno(), items) == n
        got = _recv_all(rx, n)
        assert [int.from_bytes(d, "big") for d, _ in got] == list(range(n))


@needs_c
def test_long_datagram_is_cut_as_recvfrom_would() -> None:
    assert C is not None
    rx, tx = _pair(socket.AF_INET, "127.0.0.1")
    with rx, tx:
        tx.sendto(bytes(range(256)) * 20, rx.getsockname())
        ((data, _),) = _recv_all(rx, 1)
        assert data == (bytes(range(256)) * 20)[:4096]


@needs_c
def test_partial_send_stops_at_the_failing_datagram() -> None:
    """sendmmsg sends in order and stops at the first failure: the count says how many
    went; the caller's next call starting at the failing one raises its error."""
    assert C is not None
    rx, tx = _pair(socket.AF_INET, "127.0.0.1")
    with rx, tx:
        dest = rx.getsockname()
        huge = bytes(70_000)  # above the 65,507-octet UDP maximum: EMSGSIZE
        items = [(b"one", dest), (b"two", dest), (huge, dest), (b"four", dest)]
        assert C.send_batch(tx.fileno(), items) == 2
        with pytest.raises(OSError) as caught:
            C.send_batch(tx.fileno(), items[2:])
        assert caught.value.errno == errno.EMSGSIZE
        assert C.send_batch(tx.fileno(), items[3:]) == 1
        assert [d for d, _ in _recv_all(rx, 3)] == [b"one", b"two", b"four"]


@needs_c
def test_bad_items_are_refused_before_sending() -> None:
    assert C is not None
    rx, tx = _pair(socket.AF_INET, "127.0.0.1")
    with rx, tx:
        port = rx.getsockname()[1]
        with pytest.raises(ValueError, match="numeric IPv4"):
            C.send_batch(tx.fileno(), [(b"x", ("localhost", port))])
        with pytest.raises(TypeError):
            C.send_batch(tx.fileno(), [("text", ("127.0.0.1", port))])
        with pytest.raises(OverflowError):
            C.send_batch(tx.fileno(), [(b"x", ("127.0.0.1", 70_000))])
        with pytest.raises(OSError):
            C.recv_batch(10_000, 4)  # not a descriptor
        assert C.recv_batch(rx.fileno(), 4) == []


@needs_c
def test_vendor_specific_edges_exhaustively() -> None:
    """Every vendor payload of up to 4 octets over the lengths that matter (0..4, 255):
    which ones split into sub-attributes (RFC 2865 §5.26) and which stay raw."""
    import itertools

    alphabet = (0, 1, 2, 3, 4, 255)
    for n in range(5):
        for sub in itertools.product(alphabet, repeat=n):
            for code in (1, 4):
                body = bytes((code, 9, 0, 0)) + bytes(16) + tlv(MA, bytes(16))
                same_decode(resign(fix_length(body + vsa(311, bytes(sub)))))


@needs_c
def test_request_built_by_filling_slots_or_by_the_class_is_the_same() -> None:
    """The compiled decoder fills Request's slots directly while Request is the plain
    six-field dataclass (``fastpath._request_slots``); bound without them it calls the
    class. Both give a Request equal to the reference's."""
    assert C is not None
    slots = fastpath._request_slots()
    assert slots is not None, "Request changed shape: the compiled decoder calls the class"
    data = SEEDS["auth-vsa-tunnel"]
    want = packet.decode_request(data, SECRET)
    try:
        C.bind(packet.Request, packet.PacketError)
        assert C.decode_request(data, SECRET) == want
    finally:
        C.bind(packet.Request, packet.PacketError, slots)
    got = C.decode_request(data, SECRET)
    assert got == want and type(got) is packet.Request
    with pytest.raises(AttributeError):
        got.code = 2  # type: ignore[misc]  # still frozen


@needs_c
def test_a_call_made_inside_a_call_gets_its_own_buffers() -> None:
    """Python code can run inside send_batch (a port's __index__; in recv_batch the
    garbage collector's finalizers): a nested call must not overwrite the outer call's
    message arrays."""
    assert C is not None
    rx, tx = _pair(socket.AF_INET, "127.0.0.1")
    with rx, tx:
        host, port = rx.getsockname()

        class NestingPort:
            def __index__(self) -> int:
                nested = [(b"nested %d" % i, (host, port)) for i in range(5)]
                assert C is not None and C.send_batch(tx.fileno(), nested) == 5
                return int(port)

        outer = [(b"outer %d" % i, (host, port)) for i in range(3)]
        outer.append((b"outer 3", (host, NestingPort())))  # type: ignore[arg-type]
        assert C.send_batch(tx.fileno(), outer) == 4
        got = [d for d, _ in _recv_all(rx, 9)]
        assert got[:5] == [b"nested %d" % i for i in range(5)]
        assert got[5:] == [b"outer %d" % i for i in range(4)]
