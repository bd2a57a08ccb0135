"""The compiled duplicate cache (``radius._speedups.DedupCache``) against the reference
model ``radius.dedup.DedupCache`` (RFC 5080 §2.2.2), and which one the server runs.

Differential and stateful: a hypothesis ``RuleBasedStateMachine`` drives one of each
with the same operations (``begin``, ``finish`` with a reply or None, ``lookup``, time
moving forwards by small and large steps, standing still, or going back), on a small
pool of keys that differ in every field, with small windows and capacities so that
expiry and eviction happen all the time, and asserts identical results after every step:
the same reply object or ``IN_PROGRESS`` or None, the same length, the same exception.
Without the extension (not built, or ``CITYWIFI_PURE_PYTHON=1``) the compiled tests are
skipped with the reason ``radius.fastpath`` gives.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from radius import fastpath, packet
from radius.core import ServerCore
from radius.dedup import IN_PROGRESS, DedupCache, DedupKey
from tests.support.compiled import C, needs_c

KEYS: list[DedupKey] = [
    ("192.0.2.1", 5000, 4, 7, bytes(16)),
    ("192.0.2.2", 5000, 4, 7, bytes(16)),
    ("192.0.2.1", 5001, 4, 7, bytes(16)),
    ("192.0.2.1", 5000, 1, 7, bytes(16)),
    ("192.0.2.1", 5000, 4, 8, bytes(16)),
    ("192.0.2.1", 5000, 4, 7, b"\x01" * 16),
    ("2001:db8::1", 1812, 1, 255, b"\xff" * 16),
]
"""Keys differing in one field each (the first is the base), and an IPv6 one."""

REPLIES = [b"", b"reply", b"\x05\x07\x00\x14" + bytes(16)]


def _key(n: int) -> DedupKey:
    """Equal to ``KEYS[n]`` but a distinct object, as each datagram makes its own."""
    host, port, code, ident, auth = KEYS[n]
    return (host, port, code, ident, bytes(bytearray(auth)))


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except Exception as exc:  # the same exception type from both
        return ("raised", type(exc))


def _same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    if a[0] != b[0]:
        return False
    x, y = a[1], b[1]
    if x is None or x is IN_PROGRESS or y is None or y is IN_PROGRESS:
        return x is y
    return bool(x is y or x == y)


class Twins(RuleBasedStateMachine):
    """A reference cache and a compiled one, driven together."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.ref: Any = None
        self.c: Any = None

    @initialize(
        window=st.sampled_from([0.5, 1.0, 3.0, 30.0]),
        max_entries=st.integers(1, 6),
        start=st.floats(-1e6, 1e9, allow_nan=False),
    )
    def make(self, window: float, max_entries: int, start: float) -> None:
        assert C is not None
        self.ref = DedupCache(window, max_entries)
        self.c = C.DedupCache(window, max_entries=max_entries)
        self.now = start

    @rule(step=st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 1.0, 2.9, 3.0, 31.0, -0.5]))
    def tick(self, step: float) -> None:
        self.now += step

    def both(self, name: str, *args: Any) -> tuple[str, Any]:
        a = _outcome(lambda: getattr(self.ref, name)(*args))
        b = _outcome(lambda: getattr(self.c, name)(*args))
        assert _same(a, b), (name, args, a, b)
        return a

    @rule(n=st.integers(0, len(KEYS) - 1))
    def begin(self, n: int) -> None:
        self.both("begin", _key(n), self.now)

    @rule(n=st.integers(0, len(KEYS) - 1), r=st.integers(0, len(REPLIES) - 1))
    def finish(self, n: int, r: int) -> None:
        reply = bytes(bytearray(REPLIES[r]))  # one object, given to both
        self.both("finish", _key(n), reply, self.now)

    @rule(n=st.integers(0, len(KEYS) - 1))
    def forget(self, n: int) -> None:
        self.both("finish", _key(n), None, self.now)

    @rule(n=st.integers(0, len(KEYS) - 1))
    def lookup(self, n: int) -> None:
        self.both("lookup", _key(n), self.now)

    @rule()
    def unhashable(self) -> None:
        kind, error = self.both("lookup", ("192.0.2.1", 1, 4, 7, [0]), self.now)
        assert kind == "raised" and error is TypeError

    @invariant()
    def same_length(self) -> None:
        if self.ref is not None:
            assert len(self.ref) == len(self.c)


TestTwins = needs_c(Twins.TestCase)
TestTwins.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None, derandomize=True, database=None
)


@needs_c
def test_same_api_and_errors() -> None:
    assert C is not None
    cache = C.DedupCache(5.0)
    assert (cache.window, cache.max_entries, len(cache)) == (5.0, 200_000, 0)
    key = KEYS[0]
    cache.begin(key=key, now=1.0)
    assert cache.lookup(key, now=2.0) is IN_PROGRESS
    cache.finish(key, reply=b"r", now=3.0)
    assert cache.lookup(key, 7.9) == b"r" and cache.lookup(key, 8.0) is None
    for bad in ((0.0,), (-1.0,), (1.0, 0), (1.0, -5)):
        with pytest.raises(ValueError, match="must be positive"):
            C.DedupCache(*bad)
        with pytest.raises(ValueError, match="must be positive"):
            DedupCache(*bad)
    with pytest.raises(TypeError):
        cache.lookup(key)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        cache.finish(key, b"r", 1.0, now=2.0)  # type: ignore[call-arg]


@needs_c
def test_bulk_expiry_and_eviction_at_scale() -> None:
    assert C is not None
    ref, c = DedupCache(1.0, 5_000), C.DedupCache(1.0, 5_000)
    for cache in (ref, c):
        for n in range(20_000):
            k = ("192.0.2.1", n, 4, n & 0xFF, n.to_bytes(16, "big"))
            cache.begin(k, n * 1e-4)
            cache.finish(k, b"r", n * 1e-4)
    assert len(ref) == len(c) == 5_000
    probe = ("192.0.2.1", 19_999, 4, 19_999 & 0xFF, (19_999).to_bytes(16, "big"))
    assert ref.lookup(probe, 2.5) == c.lookup(probe, 2.5) == b"r"
    assert ref.lookup(probe, 3.0) is c.lookup(probe, 3.0) is None
    assert len(ref) == len(c) == 0


def test_the_server_core_runs_the_cache_of_its_data_path() -> None:
    core = ServerCore("acct", lambda host: None)
    if fastpath.available():
        assert C is not None and type(core.dedup) is C.DedupCache
    else:
        assert type(core.dedup) is DedupCache
    path = fastpath.DataPath(
        compiled=False,
        reason="test",
        decode_request=packet.decode_request,
        encode_reply=packet.encode_reply,
        batch_io=None,
    )
    pure = ServerCore("acct", lambda host: None, data_path=path)
    assert type(pure.dedup) is DedupCache
