"""``citywifi serve --workers 2`` as a subprocess: shared ports, summed metrics, restarts.

The supervisor starts the embedded Redis once and two workers that bind the same RADIUS
and HTTP ports with SO_REUSEPORT. Requests from many source ports spread over both
workers; ``/metrics`` (answered by either) sums both; a worker killed with SIGKILL is
restarted and answers again; SIGHUP reaches every worker; SIGTERM stops everything.

The workers count their RADIUS answers in C (``radius._speedups.Counters``) unless
``CITYWIFI_PURE_PYTHON=1``, and fold them into their metric files once a second and when
they stop (``radius.metrics``): so the tests poll the files and ``/metrics`` until the
figure arrives, and check that what the workers counted last before SIGTERM is there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from controller.cli.supervisor import resolve_ports
from controller.config import load_config
from radius.attrs import Code
from tests.conftest import SECRET, write_config
from tests.support.pyrad_client import RadiusClient
from tests.support.redis_proc import free_port, wait_until

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parent.parent
CITYWIFI = [sys.executable, "-m", "controller.cli"]
REQUESTS = "citywifi_radius_requests_total"
ACCT_OK = {"port": "acct", "type": "acct", "result": "ok"}


class Served:
    """A ``citywifi serve`` subprocess whose JSON log lines are collected as they come."""

    def __init__(self, config: Path, workers: int) -> None:
        self.proc = subprocess.Popen(
            [*CITYWIFI, "serve", "--config", str(config), "--workers", str(workers)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in list(self.events)
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        ]

    def wait_for(self, event: str, count: int = 1, timeout: float = 30, **fields: Any) -> None:
        wait_until(
            lambda: len(self.find(event, **fields)) >= count or self.proc.poll() is not None,
            timeout,
            0.02,
            f"{count} x {event} {fields}",
        )
        assert len(self.find(event, **fields)) >= count, "".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture
def ports() -> dict[str, int]:
    return {
        "auth": free_port(socket.SOCK_DGRAM),
        "acct": free_port(socket.SOCK_DGRAM),
        "http": free_port(),
    }


def workers_config(directory: Path, ports: dict[str, int]) -> Path:
    """The test city on embedded Redis (the supervisor starts it once) at fixed ``ports``
    (auth, acct, http: every worker binds the same ones), logging at info."""
    path = write_config(directory, "")
    text = path.read_text()
    text = text.replace("auth_port = 0", f"auth_port = {ports['auth']}")
    text = text.replace("acct_port = 0", f"acct_port = {ports['acct']}")
    text = text.replace("port = 0", f"port = {ports['http']}")
    text = text.replace('level = "warning"', 'level = "info"')
    path.write_text(text)
    return path


@pytest.fixture
def served(tmp_path: Path, ports: dict[str, int]) -> Iterator[Served]:
    serve = Served(workers_config(tmp_path, ports), workers=2)
    try:
        serve.wait_for("supervisor.ready")
        yield serve
    finally:
        serve.stop()


async def send_accounting(port: int, count: int, tag: str) -> int:
    """``count`` Interim-Updates, each from a fresh source port; returns how many answered."""
    answered = 0
    for i in range(count):
        async with RadiusClient(("127.0.0.1", port), SECRET.encode()) as c:
            req = c.acct_request(
                Acct_Status_Type="Interim-Update",
                Acct_Session_Id=f"{tag}-{i}",
                Acct_Session_Time=60,
                User_Name=f"walk-in-{tag}-{i}",
            )
            reply = await c.request(req, timeout=2.0, retries=2)
        answered += reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    return answered


def scrape(http_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == REQUESTS and sample.labels == ACCT_OK:
                return sample.value
    return 0.0


def timed_accounts(metrics_dir: Path) -> float:
    """``citywifi_redis_seconds_count{op="account"}`` summed over the workers' own metric
    files, which each worker's store timings reach at its once-a-second fold (not only
    when a scrape happens to be answered by it)."""
    files = [str(db) for db in metrics_dir.glob("histogram_*.db")]
    total = 0.0
    for metric in MultiProcessCollector.merge(files, accumulate=True):  # type: ignore[no-untyped-call]
        for sample in metric.samples:
            if sample.name == "citywifi_redis_seconds_count" and sample.labels["op"] == "account":
                total += sample.value
    return total


def per_worker(metrics_dir: Path) -> dict[int, float]:
    """Answered accounting per worker pid, read from each worker's own metric file."""
    out: dict[int, float] = {}
    for db in metrics_dir.glob("counter_*.db"):
        pid = int(db.stem.split("_")[1])
        for metric in MultiProcessCollector.merge([str(db)], accumulate=True):  # type: ignore[no-untyped-call]
            for sample in metric.samples:
                if (
                    sample.name == REQUESTS
                    and {k: v for k, v in sample.labels.items() if k != "pid"} == ACCT_OK
                ):
                    out[pid] = out.get(pid, 0.0) + sample.value
    return out


def folded(metrics_dir: Path, answered: int, http_port: int | None = None) -> dict[int, float]:
    """Answered accounting per worker pid once the workers' files sum to ``answered``
    (each folds its compiled counters in once a second); with ``http_port``, once a
    scrape of ``/metrics`` (either worker's) says ``answered`` too."""
    counts: dict[int, float] = {}

    def arrived() -> bool:
        counts.clear()
        counts.update(per_worker(metrics_dir))
        if sum(counts.values()) != answered:
            return False
        return http_port is None or scrape(http_port) == answered

    wait_until(arrived, 10, 0.05, f"{answered} answers in the metric files")
    return counts


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_workers_share_ports_sum_metrics_and_survive_a_kill(
    served: Served, ports: dict[str, int], tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "var" / "metrics"
    workers = {e["worker"]: e["pid"] for e in served.find("worker.started")}
    assert len(workers) == 2 and len(served.find("serve.ready")) == 2

    assert await send_accounting(ports["acct"], 40, "a") == 40
    counts = folded(metrics_dir, 40, ports["http"])  # one scrape, both summed
    assert sum(v > 0 for v in counts.values()) == 2, counts  # both workers answered
    assert set(counts) == set(workers.values())
    wait_until(  # each answer's Redis round trip, timed by the worker that answered it
        lambda: timed_accounts(metrics_dir) >= 40, 10, 0.05, "40 timed round trips"
    )

    victim_index, victim = 0, workers[0]
    os.kill(victim, signal.SIGKILL)
    served.wait_for("worker.exited", pid=victim, signal=9)
    served.wait_for("worker.started", worker=victim_index, restarts=1)
    served.wait_for("serve.ready", count=2, worker=victim_index)
    replacement = served.find("worker.started", worker=victim_index, restarts=1)[0]["pid"]
    assert replacement != victim and alive(replacement)

    assert await send_accounting(ports["acct"], 40, "b") == 40
    counts = folded(metrics_dir, 80, ports["http"])
    assert counts.get(replacement, 0) > 0, counts  # the restarted worker answers
    assert counts[victim] > 0  # the dead worker's counts are kept, not lost

    served.proc.send_signal(signal.SIGHUP)
    served.wait_for("config.reloaded", count=2)

    # answered just before SIGTERM, likely after the workers' last timed fold: each
    # worker folds once more when it stops, after draining (its files outlive it)
    assert await send_accounting(ports["acct"], 20, "c") == 20
    assert served.stop() == 0
    counts = per_worker(metrics_dir)
    assert sum(counts.values()) == 100, counts
    assert not (tmp_path / "var" / "redis" / "redis.sock").exists()  # AOF flushed, stopped
    for pid in (replacement, workers[1]):
        wait_until(lambda pid=pid: not alive(pid), 10, what=f"worker {pid} gone")  # type: ignore[misc]
    assert served.find("supervisor.stopped")


def test_port_zero_is_resolved_once_for_every_worker(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "redis://127.0.0.1:1/0"))  # ports are 0
    ports, held = resolve_ports(config)
    try:
        assert 0 not in (ports.auth, ports.acct, ports.http)
        assert len(held) == 3
        # a worker can bind the same port while the reservation is held (SO_REUSEPORT)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", ports.auth))
    finally:
        for sock in held:
            sock.close()
