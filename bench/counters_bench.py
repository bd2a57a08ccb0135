"""What the RADIUS shell's counting costs per answer (issue 16 item 4): the counters in C
(``radius._speedups.Counters``, read at scrape and flush time) against the Python way
(``radius.metrics.PyCounters``: the prometheus objects and the Tally per call) and
against the inline code ``radius.server._sent`` had before (the same work without the
method call). Also per drop, and what a scrape's fold and a flush's take then cost.

Every variant counts the same mix of answers (200 NAS; auth accepts and rejects with a
reason, accounting responses) into its own registry and tally; the variants take turns
within each round, so the noise of a shared machine falls on all of them alike. CPU
time is the thread's (``time.thread_time``). Prints figures; asserts nothing.

    .venv/bin/python -m bench.counters_bench [--answers 200000] [--rounds 5] [--clients 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

from radius import fastpath
from radius.core import DROP_REASONS
from radius.metrics import ROLES, RadiusMeters
from radius.tally import RESULTS, Tally

Mix = list[tuple[int, str, int, str, float]]


def mix(n: int, clients: int) -> Mix:
    """n answers: 60 % accounting responses, 30 % accepts, 10 % rejects with a reason."""
    out: Mix = []
    for i in range(n):
        client = f"nas-{i * 7919 % clients}"
        latency = (i % 50) * 0.0002
        if i % 10 < 6:
            out.append((1, client, 5, "ok", latency))
        elif i % 10 < 9:
            out.append((0, client, 2, "accept", latency))
        else:
            out.append((0, client, 3, "bad_password", latency))
    return out


def fresh(registry: CollectorRegistry | None = None) -> RadiusMeters:
    meters = RadiusMeters(registry or CollectorRegistry(), Tally())
    for role in ROLES:
        meters.prepare(role, DROP_REASONS)
    return meters


def inline_of(meters: RadiusMeters) -> Callable[[int, str, int, str, float], None]:
    """The body of ``RadiusEndpoint._sent``'s counting before issue 16 item 4."""
    by_code = {(r, c): meters.requests.labels(p, p, res) for r, p in enumerate(ROLES)
               for c, res in RESULTS.items()}  # fmt: skip
    clients: dict[tuple[str, int], object] = {}
    latency = [meters.latency.labels(p) for p in ROLES]
    tally = meters.tally

    def sent(role: int, client: str, code: int, reason: str, seconds: float) -> None:
        by_code[(role, code)].inc()
        counter = clients.get((client, code))
        if counter is None:
            counter = meters.client_requests.labels(client, ROLES[role], RESULTS[code])
            clients[(client, code)] = counter
        counter.inc()  # type: ignore[attr-defined]
        tally.sent(client, ROLES[role], code, reason)
        latency[role].observe(seconds)

    return sent


def run_answers(answers: Mix, sent: Callable[[int, str, int, str, float], object]) -> float:
    """CPU µs per answer."""
    t0 = time.thread_time()
    for role, client, code, reason, seconds in answers:
        sent(role, client, code, reason, seconds)
    return (time.thread_time() - t0) / len(answers) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=200)
    args = parser.parse_args()
    factory = fastpath.load().counters
    print(f"data path: {fastpath.reason()}")
    answers = mix(args.answers, args.clients)
    variants: dict[str, Callable[[], Callable[[int, str, int, str, float], object]]] = {
        "before (inline, main)": lambda: inline_of(fresh()),
        "python (PyCounters)": lambda: fresh().python.sent,
    }
    if factory is not None:
        variants["compiled (C Counters)"] = lambda: fresh().compiled_with(factory).sent
    drops: dict[str, list[float]] = {"python": [], "compiled": []}
    figures: dict[str, list[float]] = {name: [] for name in variants}
    fold_ms: list[float] = []
    take_ms: list[float] = []
    for _ in range(args.rounds):
        for name, make in variants.items():
            figures[name].append(run_answers(answers, make()))
        for name in drops:
            if name == "compiled" and factory is None:
                continue
            meters = fresh()
            counters: fastpath.Counters = meters.python
            if name == "compiled" and factory is not None:
                counters = meters.compiled_with(factory)
            sources = [(i & 1, f"nas-{i % args.clients}") for i in range(args.answers // 4)]
            t0 = time.thread_time()
            for role, client in sources:
                counters.dropped(role, client, "overload")
            drops[name].append((time.thread_time() - t0) / len(sources) * 1e6)
        if factory is not None:  # one scrape's fold and one flush's take after a round
            registry = CollectorRegistry()
            meters = fresh(registry)
            run_answers(answers, meters.compiled_with(factory).sent)
            t0 = time.thread_time()
            generate_latest(registry)
            fold_ms.append((time.thread_time() - t0) * 1e3)
            t0 = time.thread_time()
            meters.tally.take()
            take_ms.append((time.thread_time() - t0) * 1e3)
    base = statistics.median(figures["before (inline, main)"])
    print(f"{args.answers} answers x {args.rounds} rounds, {args.clients} NAS; CPU µs per answer")
    for name, values in figures.items():
        med = statistics.median(values)
        runs = " ".join(f"{v:.3f}" for v in values)
        print(f"  {name:24s} median {med:.3f} µs  ({base / med:.2f}x of before)  runs: {runs}")
    for name, values in drops.items():
        if values:
            print(f"  drop, {name:18s} median {statistics.median(values):.3f} µs")
    if fold_ms:
        print(
            f"  after {args.answers} answers: scrape (fold + render) "
            f"{statistics.median(fold_ms):.1f} ms, tally take {statistics.median(take_ms):.1f} ms"
        )


if __name__ == "__main__":
    main()
