"""RFC 5080 §2.2.2 duplicate cache: time is passed in, so no test waits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radius.dedup import IN_PROGRESS, DedupCache, DedupKey


def key(n: int = 0) -> DedupKey:
    return ("192.0.2.1", 1812 + n, 1, n & 0xFF, n.to_bytes(16, "big"))


def test_unknown_key() -> None:
    assert DedupCache(5.0).lookup(key(), 0.0) is None


def test_in_progress_then_reply() -> None:
    cache = DedupCache(5.0)
    cache.begin(key(), 10.0)
    assert cache.lookup(key(), 10.5) is IN_PROGRESS
    cache.finish(key(), b"reply", 11.0)
    assert cache.lookup(key(), 15.9) == b"reply"
    assert cache.lookup(key(1), 15.9) is None


def test_reply_expires_after_window_from_answer() -> None:
    cache = DedupCache(5.0)
    cache.begin(key(), 0.0)
    cache.finish(key(), b"reply", 4.0)
    assert cache.lookup(key(), 8.9) == b"reply"
    assert cache.lookup(key(), 9.0) is None
    assert len(cache) == 0


def test_in_progress_older_than_window_is_gone() -> None:
    cache = DedupCache(5.0)
    cache.begin(key(), 0.0)
    assert cache.lookup(key(), 4.9) is IN_PROGRESS
    assert cache.lookup(key(), 5.0) is None


def test_finish_without_reply_forgets() -> None:
    cache = DedupCache(5.0)
    cache.begin(key(), 0.0)
    cache.finish(key(), None, 1.0)
    assert cache.lookup(key(), 1.0) is None
    assert len(cache) == 0


def test_late_finish_still_caches() -> None:
    cache = DedupCache(5.0)
    cache.begin(key(), 0.0)
    cache.finish(key(), b"late", 7.0)
    assert cache.lookup(key(), 7.5) == b"late"


def test_keys_differ_by_every_field() -> None:
    cache = DedupCache(5.0)
    base: DedupKey = ("192.0.2.1", 5000, 4, 7, bytes(16))
    cache.begin(base, 0.0)
    cache.finish(base, b"r", 0.0)
    variants: list[DedupKey] = [
        ("192.0.2.2", 5000, 4, 7, bytes(16)),
        ("192.0.2.1", 5001, 4, 7, bytes(16)),
        ("192.0.2.1", 5000, 1, 7, bytes(16)),
        ("192.0.2.1", 5000, 4, 8, bytes(16)),
        ("192.0.2.1", 5000, 4, 7, b"\x01" * 16),
    ]
    for other in variants:
        assert cache.lookup(other, 1.0) is None
    assert cache.lookup(base, 1.0) == b"r"


def test_max_entries_evicts_oldest() -> None:
    cache = DedupCache(100.0, max_entries=3)
    for n in range(5):
        cache.begin(key(n), float(n))
        cache.finish(key(n), bytes([n]), float(n))
    assert len(cache) == 3
    assert cache.lookup(key(0), 5.0) is None
    assert cache.lookup(key(1), 5.0) is None
    assert cache.lookup(key(4), 5.0) == b"\x04"


def test_refinish_moves_entry_to_the_back() -> None:
    cache = DedupCache(10.0)
    cache.begin(key(0), 0.0)
    cache.begin(key(1), 1.0)
    cache.finish(key(0), b"zero", 2.0)
    cache.finish(key(1), b"one", 3.0)
    assert cache.lookup(key(0), 11.9) == b"zero"
    assert cache.lookup(key(0), 12.0) is None
    assert cache.lookup(key(1), 12.5) == b"one"


def test_expiry_of_many_is_bulk() -> None:
    cache = DedupCache(1.0)
    for n in range(10_000):
        cache.begin(key(n), 0.0)
        cache.finish(key(n), b"r", 0.0)
    assert cache.lookup(key(0), 2.0) is None
    assert len(cache) == 0


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        DedupCache(0.0)
    with pytest.raises(ValueError):
        DedupCache(1.0, max_entries=0)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["begin", "finish", "forget", "lookup"]),
            st.integers(0, 5),
            st.floats(0.0, 3.0),
        ),
        max_size=60,
    )
)
def test_matches_a_simple_model(ops: list[tuple[str, int, float]]) -> None:
    window = 4.0
    cache = DedupCache(window)
    model: dict[DedupKey, tuple[float, bytes | None]] = {}
    now = 0.0
    for op, n, step in ops:
        now += step
        k = key(n)
        if op == "begin":
            cache.begin(k, now)
            model[k] = (now, None)
        elif op == "finish":
            cache.finish(k, bytes([n]), now)
            model[k] = (now, bytes([n]))
        elif op == "forget":
            cache.finish(k, None, now)
            model.pop(k, None)
        entry = model.get(k)
        want = None
        if entry is not None and now - entry[0] < window:
            want = IN_PROGRESS if entry[1] is None else entry[1]
        assert cache.lookup(k, now) == want
