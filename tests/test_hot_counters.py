"""The RADIUS shell's counters in C (``radius._speedups.Counters``, issue 16 item 4)
against their reference model, the prometheus objects and the Tally moved per call
(``radius.metrics.PyCounters``).

Both ways the same events must give the same scrape (every sample of the four families,
in the same order, with the same labels and values; ``_created`` apart, which is a
clock reading, and the latency sum up to float rounding: the C side adds the latencies
up before prometheus adds the total) and the same ``Tally.take()``. First for arbitrary
sequences of events with scrapes and takes between them (hypothesis), then on a real
Controller over real UDP, once on each data path with the same traffic.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from controller.cli.serve import Controller
from controller.config import Config
from controller.services.logins import issue_login
from radius import fastpath
from radius.core import DROP_REASONS
from radius.metrics import BUCKETS, MULTIPROC_ENV, RADIUS, ROLES, RadiusMeters
from radius.tally import Counted, Tally
from tests.conftest import SECRET
from tests.support.clocks import local_hour_clock
from tests.support.pyrad_client import RadiusClient, set_pap
from tests.support.redis_proc import until

try:
    from radius import _speedups
except ImportError:  # the optional build did not happen
    _speedups = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
needs_compiled = pytest.mark.skipif(
    _speedups is None, reason="radius._speedups is not built (no C compiler or headers)"
)
FAMILIES = (
    "citywifi_radius_requests_total",
    "citywifi_radius_dropped_total",
    "citywifi_radius_request_seconds",
    "citywifi_radius_client_requests_total",
)
Key = tuple[str, tuple[tuple[str, str], ...]]


def samples(text: str) -> list[tuple[Key, float]]:
    """The samples of the four families in scrape order, without ``_created``."""
    out = []
    for family in text_string_to_metric_families(text):
        if family.name.removesuffix("_total") not in {f.removesuffix("_total") for f in FAMILIES}:
            continue
        for s in family.samples:
            if not s.name.endswith("_created"):
                out.append(((s.name, tuple(sorted(s.labels.items()))), s.value))
    return out


def assert_same_scrape(got: list[tuple[Key, float]], want: list[tuple[Key, float]]) -> None:
    assert [k for k, _ in got] == [k for k, _ in want]
    for (key, a), (_, b) in zip(got, want, strict=True):
        if key[0].endswith("_sum"):
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), key
        else:
            assert a == b, key


class Rig:
    """A registry, a tally and the meters over them, counting compiled or the Python way."""

    def __init__(self, compiled: bool) -> None:
        self.registry = CollectorRegistry()
        self.tally = Tally()
        self.meters = RadiusMeters(self.registry, self.tally)
        for role in ROLES:
            self.meters.prepare(role, DROP_REASONS)
        self.counters: fastpath.Counters = (
            self.meters.compiled_with(_speedups.Counters) if compiled else self.meters.python
        )

    def apply(self, event: tuple[Any, ...]) -> None:
        kind, *args = event
        if kind == "sent":  # as radius.server does: a code C does not keep goes to Python
            if not self.counters.sent(*args):
                self.meters.sent_in_python(*args)
        elif kind == "dropped":
            self.counters.dropped(*args)
        else:
            self.counters.at_once(*args)

    def scrape(self) -> list[tuple[Key, float]]:
        return samples(generate_latest(self.registry).decode())


roles = st.sampled_from(range(len(ROLES)))
clients = st.sampled_from(["nas-a", "nas-b", "长安-nas-3"])
latencies = st.one_of(
    st.sampled_from((0.0, *BUCKETS)),  # on a bound: "le" includes it
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False),
)
events = st.one_of(
    st.tuples(
        st.just("sent"),
        roles,
        clients,
        st.sampled_from([2, 3, 11, 5, 4, 40]),  # 4, 40: codes C leaves to Python
        st.sampled_from(["", "accept", "bad_password", "exhausted"]),
        latencies,
    ),
    st.tuples(
        st.just("dropped"), roles, st.one_of(st.none(), clients), st.sampled_from(DROP_REASONS)
    ),
    st.tuples(st.just("at_once"), roles, st.booleans(), st.one_of(st.none(), clients)),
    st.just(("scrape",)),
    st.just(("take",)),
)


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=60))
def test_compiled_counters_give_the_same_scrape_and_take_as_the_reference(
    sequence: list[tuple[Any, ...]],
) -> None:
    compiled, reference = Rig(compiled=True), Rig(compiled=False)
    for event in [*sequence, ("scrape",), ("take",)]:
        if event == ("scrape",):
            assert_same_scrape(compiled.scrape(), reference.scrape())
        elif event == ("take",):
            assert compiled.tally.take() == reference.tally.take()
        else:
            compiled.apply(event)
            reference.apply(event)


@needs_compiled
def test_what_is_taken_is_gone_and_each_reader_takes_its_own() -> None:
    c = _speedups.Counters((0.001, 0.01, math.inf))
    assert c.sent(0, "nas-a", 3, "bad_password", 0.001) is True
    c.dropped(1, None, "unknown_client")
    c.at_once(0, True, "nas-b")
    tally = c.take_tally()
    assert tally == (
        [("nas-a", 0, 3, 1)],
        [("nas-a", "bad_password", 1)],
        [(None, "unknown_client", 1)],
        ["nas-a", "nas-b"],
    )
    assert c.take_tally() == ([], [], [], [])
    # the scrape's side is still all there, and then gone too
    assert c.take_metrics() == (
        [(0, "nas-a", 3, 1)],
        [(1, "unknown_client", 1)],
        [(0, 1, 0)],
        [(0, (1, 0, 0), 0.001)],
    )
    assert c.take_metrics() == ([], [], [], [])


@needs_compiled
def test_a_refused_call_counts_nothing() -> None:
    c: Any = _speedups.Counters((1.0, math.inf))  # Any: called with the wrong types
    with pytest.raises(ValueError, match="role 2"):
        c.sent(2, "nas-a", 2, "", 0.1)
    with pytest.raises(TypeError):
        c.sent(0, None, 2, "", 0.1)
    with pytest.raises(TypeError):
        c.sent(0, "nas-a", 2, None, 0.1)
    with pytest.raises(TypeError):
        c.sent(0, "nas-a", 2, "", "slow")
    with pytest.raises(TypeError):
        c.dropped(0, b"nas-a", "bad")
    with pytest.raises(TypeError):
        c.sent(0, "nas-a", 2, "")
    assert c.sent(0, "nas-a", 4, "", 0.1) is False  # a code it does not keep
    assert c.take_metrics() == ([], [], [], [])
    assert c.take_tally() == ([], [], [], [])
    with pytest.raises(ValueError):
        _speedups.Counters((1.0, 0.5))
    with pytest.raises(ValueError):
        _speedups.Counters(())


# ------------------------------------------------------------ multi-process mode


def accepted(meters: RadiusMeters) -> float:
    """The prometheus object's own figure (no collect, so nothing folds on reading)."""
    return float(meters.requests.labels("auth", "auth", "accept")._value.get())


@needs_compiled
def test_a_worker_of_serve_workers_counts_in_c_and_folds_into_its_files_at_each_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(fastpath.ENV_PURE_PYTHON, raising=False)
    monkeypatch.setenv(MULTIPROC_ENV, "/nonexistent")  # read as a flag here; values: below
    tally = Tally()
    meters = RadiusMeters(None, tally)
    counters = meters.counters("auth", DROP_REASONS)
    assert counters is meters.compiled is not None
    assert meters.counters("acct", DROP_REASONS) is counters  # one set, folded once
    assert tally.folds == [meters.fold_tally, meters.fold_files]
    assert counters.sent(0, "nas-a", 2, "", 0.001)
    assert accepted(meters) == 0  # counted in C only
    assert tally.take().counts == {("nas-a", "auth:accept"): 1}
    assert accepted(meters) == 1  # NasStats' once-a-second take wrote it to the files
    assert counters.sent(0, "nas-a", 2, "", 0.001)
    tally.take()
    assert accepted(meters) == 2


@needs_compiled
def test_one_process_alone_folds_into_prometheus_only_at_a_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(fastpath.ENV_PURE_PYTHON, raising=False)
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    tally = Tally()
    meters = RadiusMeters(None, tally)
    counters = meters.counters("auth", DROP_REASONS)
    assert counters is meters.compiled is not None
    assert tally.folds == [meters.fold_tally]
    counters.sent(0, "nas-a", 2, "", 0.001)
    tally.take()
    assert accepted(meters) == 0
    meters.fold()  # what RadiusMeters.collect does first
    assert accepted(meters) == 1


def test_a_worker_writes_no_series_of_its_own_to_the_metric_files(tmp_path: Path) -> None:
    """What a worker lists is the families it counts: the check that fold can reach a
    histogram's buckets is made on the endpoint's own latency child, not on a probe
    histogram (which, made in a worker, would be in every multi-process scrape)."""
    script = (
        "from radius.core import DROP_REASONS\n"
        "from radius.metrics import RADIUS\n"
        "RADIUS.counters('auth', DROP_REASONS).at_once(0, True, 'nas-a')\n"
        "from radius.tally import TALLY\n"
        "TALLY.take()\n"
    )
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=ROOT, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    text = generate_latest(registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "citywifi_radius_request_seconds" in names
    assert not {n for n in names if "probe" in n}, names
    status = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "citywifi_radius_requests_total"
        and s.labels == {"port": "auth", "type": "status", "result": "ok"}
    ]
    assert status == [1.0]  # folded at the take (C) or counted at once (pure Python)


# ------------------------------------------------------------------ a real Controller


class Recorder:
    """Appended to ``TALLY.folds`` after the compiled counters' fold: sees what each
    ``take`` (NasStats' flush, or ours) hands out, and adds it up."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str | None, str], int] = {}
        self.heard: set[str] = set()

    def __call__(self, tally: Tally) -> None:
        for key, n in tally.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.heard |= tally.heard


def deltas(before: list[tuple[Key, float]], after: list[tuple[Key, float]]) -> dict[Key, float]:
    """What moved; of the latency only the counts (a bucket is a matter of timing)."""
    was = dict(before)
    moved = {}
    for key, value in after:
        name, labels = key
        if name.endswith("_sum") or (name.endswith("_bucket") and ("le", "+Inf") not in labels):
            continue
        if value != was.get(key, 0.0):
            moved[key] = value - was.get(key, 0.0)
    return moved


async def traffic(ctl: Controller, run: str) -> None:
    """An accept, a reject, accounting with a retransmission, Status-Servers and drops."""
    assert ctl.store is not None
    issued = await issue_login(
        ctl.store,
        phone_e164="+8613800138016",
        mac="",
        client_id="nas-local",
        person_key=ctl.person_key,
        ttl=300,
        now=int(ctl.clock()),
    )
    auth = ("127.0.0.1", ctl.auth_port)
    acct = ("127.0.0.1", ctl.acct_port)
    async with RadiusClient(auth, SECRET.encode(), local_addr=("127.0.0.1", 0)) as c:
        req = c.auth_request(User_Name=issued.username, Calling_Station_Id="AA-BB-CC-00-16-01")
        set_pap(req, issued.password)
        reply = await c.request(req, timeout=2.0)
        assert reply is not None and reply.code == 2
        req = c.auth_request(User_Name=f"nobody-{run}", Calling_Station_Id="AA-BB-CC-00-16-02")
        set_pap(req, "wrong")
        reply = await c.request(req, timeout=2.0)
        assert reply is not None and reply.code == 3
        assert (await c.request(c.status_server(), timeout=2.0)) is not None
    async with RadiusClient(acct, SECRET.encode(), local_addr=("127.0.0.1", 0)) as c:
        req = c.acct_request(
            Acct_Status_Type="Start", Acct_Session_Id=f"s-{run}", User_Name=issued.username
        )
        data = req.RequestPacket()
        first = await c.request_raw(data, timeout=2.0)
        assert first is not None and first == await c.request_raw(data, timeout=2.0)
        assert (await c.request(c.status_server(accounting=True), timeout=2.0)) is not None
    async with RadiusClient(auth, b"wrong", local_addr=("127.0.0.1", 0)) as c:
        assert await c.request(c.auth_request(User_Name="x"), timeout=0.3) is None
    async with RadiusClient(auth, SECRET.encode(), local_addr=("127.0.0.3", 0)) as c:
        assert await c.request(c.auth_request(User_Name="x"), timeout=0.3) is None


async def one_run(config: Config, run: str) -> tuple[dict[Key, float], Counted]:
    ctl = Controller(config, clock=local_hour_clock(config.quota.timezone))
    await ctl.start()
    recorder = Recorder()
    tally = RADIUS.tally
    try:
        tally.take()  # what earlier tests left
        tally.folds.append(recorder)
        before = samples(generate_latest(REGISTRY).decode())
        await traffic(ctl, run)

        def dropped_twice() -> bool:
            moved = deltas(before, samples(generate_latest(REGISTRY).decode()))
            return sum(n for (name, _), n in moved.items() if "dropped" in name) >= 2

        await until(dropped_twice, 5.0, "the drop counted twice")
        after = samples(generate_latest(REGISTRY).decode())
    finally:
        await ctl.stop()
        tally.take()
        if recorder in tally.folds:
            tally.folds.remove(recorder)
    return deltas(before, after), Counted(recorder.counts, frozenset(recorder.heard))


@needs_compiled
async def test_a_real_server_counts_the_same_on_both_paths(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(fastpath.ENV_PURE_PYTHON, raising=False)
    compiled = await one_run(config, "compiled")
    assert RADIUS.compiled is not None
    monkeypatch.setenv(fastpath.ENV_PURE_PYTHON, "1")
    pure = await one_run(config, "pure")
    assert compiled == pure
    moved, counted = compiled
    assert (
        moved[
            (
                "citywifi_radius_requests_total",
                (("port", "acct"), ("result", "cached"), ("type", "duplicate")),
            )
        ]
        == 1
    )
    assert counted.counts[("nas-local", "auth:accept")] == 1
    assert counted.counts[(None, "drop:unknown_client")] == 1
    assert counted.heard == {"nas-local"}
