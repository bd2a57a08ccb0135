"""Prometheus metrics of the RADIUS side. Labels are bounded (ports, codes, reasons).

The RADIUS shell (``radius.server``) moves four families per packet: requests by port,
type and result, drops, latency, and requests by client; and ``radius.tally.TALLY`` with
them. Doing that with the prometheus_client objects costs 1.6 µs per answer in round
3's profile, ~6 CPU µs in ``bench.counters_bench`` (four locked increments, a bucket
search, dict work; issue 16 item 4). So the shell counts
through a ``Counters`` object of ``RadiusMeters.counters()``:

- compiled (``radius._speedups.Counters``, via ``radius.fastpath``): plain C arrays,
  read when somebody looks: a scrape of the registry folds them into the prometheus
  objects before they are collected (``RadiusMeters.collect``), and ``TALLY.take()``
  folds them into the tally first. The families keep their names, help, labels,
  buckets and sample order, because the prometheus objects still render them (and the
  C side hands its per-client cells out in the order they were first counted, so the
  label sets are made in the Python way's order); only a label set's
  ``_created`` is the time of the first scrape that saw it rather than of its first
  packet.
- ``PyCounters``: the prometheus objects and the Tally moved per call, as before: the
  reference model and the fallback (``CITYWIFI_PURE_PYTHON=1``, no extension).

In the multi-process mode of ``serve --workers N`` (``PROMETHEUS_MULTIPROC_DIR`` set)
the compiled counters count too, but a scrape answered by one worker sums the metric
files of all of them, which another worker's C arrays only reach when that worker
folds. So there every ``take`` of the tally also folds into the prometheus objects
(``fold_files``), i.e. into the worker's own files: ``NasStats`` takes once a second
(``controller.services.nas_stats.FLUSH``) and once more when the worker stops, after
its endpoints drained; the worker answering a scrape folds first
(``controller.web.app.metrics``). ``/metrics`` then lags the other workers by at most
~1 s (Prometheus scrapes every ≥ 10 s; while Redis is slow, by up to ``redis.timeout``
more, as the flush's write delays the next take); a worker killed with SIGKILL loses at most its
last second of these counts (its files stay summed: the supervisor's
``mark_process_dead`` drops only live gauges).

tests/test_hot_counters.py holds the two against each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric

from radius import fastpath
from radius.tally import RESULTS, TALLY, Tally

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
ROLES: Final = ("auth", "acct")  # a role's index is what the counters are called with
ROLE_INDEX: Final = {role: i for i, role in enumerate(ROLES)}
BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class PyCounters:
    """The shell's counting done on the prometheus objects and the Tally, per call: the
    reference model of ``radius._speedups.Counters`` (same methods; nothing to take,
    everything is counted already). Children are cached per label set, as the shell did."""

    def __init__(self, meters: RadiusMeters, tally: Tally) -> None:
        self.meters = meters
        self.tally = tally
        self._answers: dict[tuple[int, int], Any] = {}  # (role, code) -> requests child
        self._clients: dict[tuple[str, int, int], Any] = {}  # (client, role, code) -> child
        self._drops: dict[tuple[int, str], Any] = {}
        self._latency: dict[int, Any] = {}
        self._at_once: dict[tuple[int, bool], Any] = {}

    def sent(self, role: int, client: str, code: int, reason: str, latency: float) -> bool:
        """An answer of ``code`` to ``client``; always True (any code is counted)."""
        port = ROLES[role]
        counter = self._answers.get((role, code))
        if counter is None:
            result = RESULTS.get(code, str(code))
            counter = self._answers[(role, code)] = self.meters.requests.labels(port, port, result)
        counter.inc()
        counter = self._clients.get((client, role, code))
        if counter is None:  # per NAS: the "NAS silent for 1 h" alert, reject rates
            result = RESULTS.get(code, str(code))
            counter = self.meters.client_requests.labels(client, port, result)
            self._clients[(client, role, code)] = counter
        counter.inc()
        self.tally.sent(client, port, code, reason)  # per NAS, to Redis
        histogram = self._latency.get(role)
        if histogram is None:
            histogram = self._latency[role] = self.meters.latency.labels(port)
        histogram.observe(latency)
        return True

    def dropped(self, role: int, client: str | None, reason: str) -> None:
        counter = self._drops.get((role, reason))
        if counter is None:
            counter = self._drops[(role, reason)] = self.meters.dropped.labels(ROLES[role], reason)
        counter.inc()
        self.tally.dropped(client, reason)  # per NAS, to Redis (console, /metrics)

    def at_once(self, role: int, status: bool, client: str | None) -> None:
        counter = self._at_once.get((role, status))
        if counter is None:
            labels = ("status", "ok") if status else ("duplicate", "cached")
            counter = self._at_once[(role, status)] = self.meters.requests.labels(
                ROLES[role], *labels
            )
        counter.inc()
        self.tally.answered_at_once("status" if status else "duplicate", client)


class RadiusMeters:
    """The four per-packet families, registered as one collector (in the place the four
    metrics had in the registry, so a scrape lists them in the same order) that folds
    the compiled counters in before it yields them."""

    def __init__(self, registry: CollectorRegistry | None, tally: Tally) -> None:
        self.requests = Counter(
            "citywifi_radius_requests_total",
            "RADIUS requests handled, by port, request type and result",
            ["port", "type", "result"],
            registry=None,
        )
        self.dropped = Counter(
            "citywifi_radius_dropped_total",
            "RADIUS packets dropped without an answer, by port and reason",
            ["port", "reason"],
            registry=None,
        )
        self.latency = Histogram(
            "citywifi_radius_request_seconds",
            "Time from receiving a RADIUS request to sending its answer",
            ["port"],
            buckets=BUCKETS,
            registry=None,
        )
        self.client_requests = Counter(
            "citywifi_radius_client_requests_total",
            "RADIUS requests answered, by client (NAS) id, port and result (accept, reject, "
            "ok): a silent NAS stops moving it",
            ["client", "port", "result"],
            registry=None,
        )
        self.tally = tally
        self.python = PyCounters(self, tally)  # children made on first use, as before
        self.compiled: fastpath.CompiledCounters | None = None  # made when first wanted
        if registry is not None:
            registry.register(self)

    def counters(self, role: str, drop_reasons: Iterable[str]) -> fastpath.Counters:
        """What an endpoint of ``role`` counts with: the compiled counters when the data
        path is compiled (``radius.fastpath``), else ``PyCounters``. Asked per endpoint,
        so the environment at its start decides (a multi-process worker's too: it also
        folds at each take, see the module docstring)."""
        self.prepare(role, drop_reasons)
        factory = fastpath.load().counters
        if factory is None or not foldable(self.latency.labels(role)):
            return self.python
        return self.compiled_with(factory, files=bool(os.environ.get(MULTIPROC_ENV)))

    def prepare(self, role: str, drop_reasons: Iterable[str]) -> None:
        """Make the label sets of ``role`` that a scrape lists from the start, at zero
        (every drop reason, every result, status, duplicate, latency), whichever counters
        count: the shell always made them when an endpoint started."""
        for reason in drop_reasons:
            self.dropped.labels(role, reason)
        for result in RESULTS.values():
            self.requests.labels(role, role, result)
        self.requests.labels(role, "status", "ok")
        self.requests.labels(role, "duplicate", "cached")
        self.latency.labels(role)

    def compiled_with(
        self, factory: fastpath.CountersFactory, *, files: bool = False
    ) -> fastpath.CompiledCounters:
        """The compiled counters (made by ``factory`` the first time), folded in at each
        collect and at each ``take`` of the tally; with ``files`` (a worker of ``serve
        --workers N``) also folded into the prometheus objects at each ``take``."""
        if self.compiled is None:
            self.compiled = factory(self.latency._upper_bounds)
            self.tally.folds.append(self.fold_tally)
        if files and self.fold_files not in self.tally.folds:
            self.tally.folds.append(self.fold_files)
        return self.compiled

    def sent_in_python(
        self, role: int, client: str, code: int, reason: str, latency: float
    ) -> None:
        """An answer the compiled counters did not take (a code they do not keep; none
        that the service replies with): the compiled ones are folded in first, so that
        the label sets are still made in the order of their first packet."""
        self.fold()
        self.python.sent(role, client, code, reason, latency)

    def fold(self) -> None:
        """Add what the compiled counters counted since the last fold to the prometheus
        objects."""
        if self.compiled is None:
            return
        answers, drops, at_once, latency = self.compiled.take_metrics()
        for role, client, code, n in answers:
            port, result = ROLES[role], RESULTS[code]
            self.requests.labels(port, port, result).inc(n)
            self.client_requests.labels(client, port, result).inc(n)
        for role, reason, n in drops:
            self.dropped.labels(ROLES[role], reason).inc(n)
        for role, status, duplicate in at_once:
            if status:
                self.requests.labels(ROLES[role], "status", "ok").inc(status)
            if duplicate:
                self.requests.labels(ROLES[role], "duplicate", "cached").inc(duplicate)
        for role, counts, total in latency:
            # Histogram.observe one at a time, done in bulk: its per-bucket values (not
            # cumulative) and its sum, the attributes observe() moves (foldable checks)
            add_observed(self.latency.labels(ROLES[role]), counts, total)

    def fold_files(self, tally: Tally) -> None:
        """``fold`` at a ``take`` of ``tally``: in multi-process mode the prometheus
        objects write to this worker's metric files, which a scrape answered by any
        worker sums, so they must not wait for this worker's own scrape."""
        self.fold()

    def fold_tally(self, tally: Tally) -> None:
        """Add what the compiled counters counted since the last ``take`` to ``tally``
        (``Tally.take`` calls it first), as ``Tally.sent``/``dropped`` would have."""
        if self.compiled is None:
            return
        answers, rejects, drops, heard = self.compiled.take_tally()
        for client, role, code, n in answers:
            tally.add(client, Tally.field(ROLES[role], code), n)
        for client, reason, n in rejects:
            tally.add(client, Tally.reject_field(reason), n)
        for source, reason, n in drops:
            tally.add(source, f"drop:{reason}", n)
        tally.heard.update(heard)

    def describe(self) -> Iterator[Metric]:
        for metric in (self.requests, self.dropped, self.latency, self.client_requests):
            yield from metric.describe()

    def collect(self) -> Iterator[Metric]:
        self.fold()
        for metric in (self.requests, self.dropped, self.latency, self.client_requests):
            yield from metric.collect()


def foldable(child: Histogram) -> bool:
    """Whether this prometheus_client's histograms keep what ``fold`` adds to
    (``_buckets``, ``_sum``) and their bounds in ``_upper_bounds``; if a later version
    does not, the shell counts the Python way rather than wrongly. Asked of a child the
    endpoint lists anyway: a probe histogram of its own would be written to a worker's
    metric files and show up in every multi-process scrape."""
    buckets, total = getattr(child, "_buckets", None), getattr(child, "_sum", None)
    return (
        isinstance(buckets, list)
        and len(buckets) == len(getattr(child, "_upper_bounds", ()))
        and all(hasattr(b, "inc") for b in buckets)
        and hasattr(total, "inc")
    )


def add_observed(child: Histogram, counts: Iterable[float], total: float) -> None:
    """``observe`` of many values at once: ``counts`` per bucket (not cumulative, in the
    order of the child's ``_upper_bounds``) and their ``total``, added to the child's
    per-bucket values and sum, the attributes ``observe`` moves (``foldable`` checks)."""
    for bucket, n in zip(child._buckets, counts, strict=True):
        if n:
            bucket.inc(n)
    child._sum.inc(total)


RADIUS: Final = RadiusMeters(REGISTRY, TALLY)  # the process's one set (like the registry)
REQUESTS: Final = RADIUS.requests
DROPPED: Final = RADIUS.dropped
LATENCY: Final = RADIUS.latency
CLIENT_REQUESTS: Final = RADIUS.client_requests
REJECTS = Counter(
    "citywifi_radius_rejects_total",
    "Access-Rejects by reason (controller.domain.access.Outcome: exhausted, device_limit, blocked, "
    "bad_password, credential_used, ...): 'exhausted' is the allowance-used-up reject",
    ["reason"],
)
