"""Faults under accounting load: real ``citywifi serve`` processes, real redis-server, UDP.

Each test drives a fleet of NAS sessions (tests/support/acct_load.py) that retransmits until
answered, injects one fault in the middle, and then checks the ground truth against
Redis: every Accounting-Request that got an answer is in Redis, and once the NASes have
retransmitted everything the usage equals the truth exactly (no loss, no double count).

- a worker of ``serve --workers 2`` killed with SIGKILL (the supervisor restarts it);
- the external Redis shut down for a few seconds (no answers while it is down);
- the embedded redis-server killed with SIGKILL (restarted from its append-only file);
- Redis frozen with SIGSTOP (requests give up after ``redis.timeout``, in-flight work is
  bounded by ``radius.max_in_flight``, memory stays flat);
- SIGTERM to ``serve`` during load (every answered request is in Redis, exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from controller.storage.redis_embedded import EmbeddedRedis
from tests.conftest import SECRET, write_config
from tests.support.acct_load import LoadPlan, LoadThread, Truth, check_redis
from tests.support.redis_proc import RedisProcess, wait_until

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parent.parent
CITYWIFI = [sys.executable, "-m", "controller.cli"]
DROPPED = "citywifi_radius_dropped_total"


class Serve:
    """``citywifi serve`` as a subprocess; its JSON log lines are collected as they come."""

    def __init__(self, config: Path, workers: int) -> None:
        self.config = config
        self.workers = workers
        self.proc = subprocess.Popen(
            [*CITYWIFI, "serve", "--config", str(config), "--workers", str(workers)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

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
        deadline = time.monotonic() + timeout
        while len(self.find(event, **fields)) < count and self.proc.poll() is None:
            assert time.monotonic() < deadline, (
                f"timed out after {timeout}s waiting for {count} x {event} {fields}\n"
                + self.log_tail()
            )
            time.sleep(0.02)
        assert len(self.find(event, **fields)) >= count, self.log_tail()

    def log_tail(self, n: int = 60) -> str:
        return "".join(self.lines[-n:])

    def ready(self) -> dict[str, Any]:
        """Wait until serving; the ready event (ports)."""
        event = "supervisor.ready" if self.workers > 1 else "serve.ready"
        self.wait_for(event, timeout=60)
        return self.find(event)[0]

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def make_config(directory: Path, redis_url: str, *, radius: str = "", redis_opts: str = "") -> Path:
    """The shared test city with info logs (ready events), plus extra [radius]/[redis] keys."""
    path = write_config(directory, redis_url)
    text = path.read_text().replace('level = "warning"', 'level = "info"')
    if radius:
        text = text.replace("acct_port = 0\n", f"acct_port = 0\n{radius}\n", 1)
    if redis_opts:
        text = text.replace('data_dir = "var"\n', f'data_dir = "var"\n{redis_opts}\n', 1)
    path.write_text(text)
    return path


@contextlib.contextmanager
def serving(config: Path, workers: int) -> Iterator[Serve]:
    """A running ``serve``; stopped (and a left-over embedded redis-server killed) after."""
    serve = Serve(config, workers)
    try:
        yield serve
    finally:
        serve.stop()
        embedded = EmbeddedRedis(config.parent / "var")
        pid = embedded.pid()
        if pid is not None and embedded.socket.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # only if serve died without stopping it


@contextlib.contextmanager
def loading(plan: LoadPlan) -> Iterator[LoadThread]:
    load = LoadThread(plan).start()
    try:
        yield load
    finally:
        load.stop()


def plan_for(port: int, tag: str, **kw: Any) -> LoadPlan:
    """About 250 reports/s for ~5 s: modest on a shared 2-core machine."""
    base: dict[str, Any] = dict(
        server=("127.0.0.1", port),
        secret=SECRET.encode(),
        tag=tag,
        sessions=150,
        persons=50,
        reports=8,
        interval=0.5,
        spread=2.0,
        nas_count=12,
        retransmit_after=0.5,
        tries_per_id=3,
        settle=45.0,
    )
    base.update(kw)
    return LoadPlan(**base)


SHORT: dict[str, Any] = dict(sessions=30, persons=10, reports=4, interval=0.3, spread=1.0)


def wait_answered(load: LoadThread, fraction: float, timeout: float = 30) -> None:
    want = int(load.truth.total * fraction)
    wait_until(
        lambda: load.truth.answered >= want or load.error is not None,
        timeout,
        0.02,
        f"{want} answered ({load.truth.summary()})",
    )


def assert_all_answered(truth: Truth) -> None:
    missing = truth.unanswered()
    assert not missing, f"{len(missing)} never answered, e.g. {[r.name for r in missing[:5]]}; " + (
        truth.summary()
    )


def assert_consistent(r: redis.Redis, truth: Truth, *, exact: bool) -> None:
    problems = check_redis(r, truth, exact=exact)
    assert not problems, f"{len(problems)} problems: {problems[:10]}; {truth.summary()}"


def scrape(http_port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def dropped(http_port: int, reason: str) -> float:
    key = (DROPPED, frozenset({("port", "acct"), ("reason", reason)}))
    return scrape(http_port).get(key, 0.0)


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def embedded_client(config: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(config.parent / "var" / "redis" / "redis.sock"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------------------- tests


def test_worker_killed_during_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path, "")  # embedded Redis, owned by the supervisor
    with serving(config, workers=2) as serve:
        ports = serve.ready()
        victim = serve.find("worker.started", worker=0)[0]["pid"]
        with loading(plan_for(ports["acct_port"], "wk")) as load:
            wait_answered(load, 0.3)
            at_kill = load.truth.answered
            os.kill(victim, signal.SIGKILL)
            serve.wait_for("worker.exited", pid=victim, signal=9)
            serve.wait_for("worker.started", worker=0, restarts=1)
            serve.wait_for("serve.ready", count=2, worker=0)
            truth = load.join()
        print(f"worker killed at {at_kill} answered; {truth.summary()}")
        assert at_kill < truth.total  # the kill happened under load
        assert_all_answered(truth)
        assert_consistent(embedded_client(config), truth, exact=True)
        assert serve.proc.poll() is None  # the supervisor carries on
        assert serve.stop() == 0


def test_redis_down_for_seconds_no_answers_then_exact(tmp_path: Path) -> None:
    rp = RedisProcess(tmp_path / "redis")
    rp.start()
    try:
        config = make_config(tmp_path, rp.url)
        with serving(config, workers=1) as serve:
            ports = serve.ready()
            with loading(plan_for(ports["acct_port"], "rd", spread=4.0)) as load:
                wait_answered(load, 0.2)
                rp.stop()  # SIGTERM: Redis writes its AOF and exits
                down_at = time.monotonic()
                # keep it down >= 3 s, and until requests arrived while it was down
                wait_until(
                    lambda: (
                        time.monotonic() - down_at >= 3.0 and load.truth.sent_since(down_at) >= 100
                    ),
                    20,
                    0.05,
                    "requests while Redis is down",
                )
                assert serve.proc.poll() is None, serve.log_tail()  # no crash
                assert http_status(ports["http_port"], "/healthz") == 200
                assert http_status(ports["http_port"], "/readyz") == 503
                up_at = time.monotonic()
                rp.start()  # same port and dir: loads the AOF
                wait_until(
                    lambda: load.truth.first_answer_after(up_at) is not None,
                    20,
                    0.02,
                    "answers after Redis returned",
                )
                first = load.truth.first_answer_after(up_at)
                assert first is not None
                print(
                    f"Redis down {up_at - down_at:.1f} s; first answer {first - up_at:.2f} s "
                    "after it returned"
                )
                truth = load.join()
            # nothing sent after Redis went away was answered before it came back
            early = [
                (rx, rep.name)
                for rx, rep, version in truth.answers_between(down_at, up_at)
                if version.first_sent >= down_at
            ]
            assert not early, early[:5]
            late_window = truth.answers_between(down_at + 1.5, up_at)
            print(f"answers received 1.5 s+ into the outage: {len(late_window)}; {truth.summary()}")
            assert not late_window
            assert_all_answered(truth)
            assert_consistent(redis.Redis(port=rp.port), truth, exact=True)
            assert dropped(ports["http_port"], "not_recorded") > 0
            assert serve.stop() == 0
    finally:
        rp.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_embedded_redis_killed_is_restarted_from_its_aof(tmp_path: Path, workers: int) -> None:
    """Short sessions started over several seconds: some have ended (Stop answered, never
    sent again) before redis-server is killed, so only the AOF can bring them back."""
    config = make_config(tmp_path, "")
    embedded = EmbeddedRedis(tmp_path / "var")
    plan = plan_for(0, f"em{workers}", spread=5.0, reports=6, interval=0.3)
    with serving(config, workers=workers) as serve:
        ports = serve.ready()
        first_pid = embedded.pid()
        assert first_pid is not None and alive(first_pid)
        plan = dataclasses.replace(plan, server=("127.0.0.1", ports["acct_port"]))
        with loading(plan) as load:
            wait_answered(load, 0.35)
            os.kill(first_pid, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_until(
                lambda: embedded.pid() not in (None, first_pid) and embedded.alive(),
                20,
                0.05,
                "embedded redis-server restarted",
            )
            serve.wait_for("redis.restarted")
            truth = load.join()
        assert serve.proc.poll() is None, serve.log_tail()
        ended = [s for s in truth.sessions if s.stop_answered(killed_at)]
        print(f"{len(ended)} sessions ended before the kill; {truth.summary()}")
        assert ended  # their data exists only in what Redis wrote before it was killed
        assert_all_answered(truth)
        assert_consistent(embedded_client(config), truth, exact=True)
        assert serve.stop() == 0


def test_redis_frozen_requests_give_up_bounded_then_exact(tmp_path: Path) -> None:
    max_in_flight = 64
    rp = RedisProcess(tmp_path / "redis")
    rp.start()
    try:
        config = make_config(
            tmp_path,
            rp.url,
            radius=f"max_in_flight = {max_in_flight}",
            redis_opts="timeout = 1.0",
        )
        with serving(config, workers=1) as serve:
            ports = serve.ready()
            proc = psutil.Process(serve.proc.pid)
            http = ports["http_port"]
            with loading(plan_for(ports["acct_port"], "fz", spread=4.0)) as load:
                wait_answered(load, 0.2)
                rss_before = proc.memory_info().rss
                not_recorded_before = dropped(http, "not_recorded")
                assert rp.proc is not None
                rp.proc.send_signal(signal.SIGSTOP)
                stopped_at = time.monotonic()
                try:
                    connections: list[int] = []

                    def redis_connections() -> int:
                        n = sum(
                            1
                            for c in proc.net_connections("tcp")
                            if c.raddr and c.raddr[1] == rp.port
                        )
                        connections.append(n)
                        return n

                    # requests pile up to max_in_flight, the rest is dropped as overload,
                    # and stuck requests give up (not answered) while Redis stays frozen
                    wait_until(
                        lambda: (
                            redis_connections() >= 0
                            and dropped(http, "overload") > 0
                            and dropped(http, "not_recorded") > not_recorded_before
                            and time.monotonic() - stopped_at >= 4.0
                        ),
                        25,
                        0.1,
                        "overload drops and timed-out requests while Redis is frozen",
                    )
                    frozen_answers = [
                        a for a in load.truth.answers_between(stopped_at + 1.0, time.monotonic())
                    ]
                    rss_frozen = proc.memory_info().rss
                finally:
                    rp.proc.send_signal(signal.SIGCONT)
                resumed_at = time.monotonic()
                wait_until(
                    lambda: load.truth.first_answer_after(resumed_at) is not None,
                    20,
                    0.02,
                    "answers after SIGCONT",
                )
                first = load.truth.first_answer_after(resumed_at)
                assert first is not None
                truth = load.join()
            print(
                f"frozen {resumed_at - stopped_at:.1f} s; redis connections max "
                f"{max(connections)}; rss {rss_before >> 20} -> {rss_frozen >> 20} MiB; "
                f"first answer {first - resumed_at:.2f} s after SIGCONT; {truth.summary()}"
            )
            assert not frozen_answers
            assert max(connections) <= max_in_flight + 16, connections
            assert rss_frozen - rss_before < 64 << 20
            assert_all_answered(truth)
            assert_consistent(redis.Redis(port=rp.port), truth, exact=True)
            assert serve.stop() == 0
    finally:
        if rp.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                rp.proc.send_signal(signal.SIGCONT)
        rp.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_during_load_keeps_every_answered_request(tmp_path: Path, workers: int) -> None:
    config = make_config(tmp_path, "")  # embedded: stopped (AOF flushed) on the way out
    with serving(config, workers=workers) as serve:
        ports = serve.ready()
        with loading(plan_for(ports["acct_port"], f"st{workers}", settle=5.0)) as load:
            wait_answered(load, 0.4)
            serve.proc.send_signal(signal.SIGTERM)
            try:
                code = serve.proc.wait(30)  # workers drain in <= 5 s, the supervisor waits 20 s
            except subprocess.TimeoutExpired:
                pytest.fail("serve did not exit within its shutdown deadline\n" + serve.log_tail())
            exited_at = time.monotonic()
            load.stop()
            truth = load.join()
        assert code == 0, serve.log_tail()
        late = truth.answers_between(exited_at, float("inf"))
        assert not late
        print(f"exit {code}; {truth.summary()}")
        assert truth.answered < truth.total  # the signal came under load
    embedded = EmbeddedRedis(tmp_path / "var")
    embedded.start()  # from the AOF the stopped serve left
    try:
        r = redis.Redis(unix_socket_path=str(embedded.socket))
        assert_consistent(r, truth, exact=False)
    finally:
        embedded.stop()


def test_sigterm_answers_the_requests_it_drains(tmp_path: Path) -> None:
    """Requests waiting for a slow Redis when SIGTERM comes are finished *and answered*
    (the sockets stop reading but stay open until the drain is over)."""
    rp = RedisProcess(tmp_path / "redis")
    rp.start()
    try:
        config = make_config(tmp_path, rp.url, redis_opts="timeout = 4.0")
        with serving(config, workers=1) as serve:
            ports = serve.ready()
            with loading(plan_for(ports["acct_port"], "sd", settle=5.0)) as load:
                wait_answered(load, 0.2)
                assert rp.proc is not None
                rp.proc.send_signal(signal.SIGSTOP)
                frozen_at = time.monotonic()
                try:
                    wait_until(
                        lambda: load.truth.sent_since(frozen_at) >= 120, 10, 0.01, "in flight"
                    )
                    term_at = time.monotonic()
                    serve.proc.send_signal(signal.SIGTERM)
                    # the fault: Redis stays frozen a moment into the shutdown
                    time.sleep(0.3)  # fault timing (Redis frozen into the shutdown), not a wait
                finally:
                    rp.proc.send_signal(signal.SIGCONT)
                code = serve.proc.wait(30)
                load.stop()
                truth = load.join()
            assert code == 0, serve.log_tail()
            in_flight = [
                r
                for r in truth.reports
                if r.versions and frozen_at <= r.versions[0].first_sent <= term_at - 0.1
            ]
            unanswered = [r.name for r in in_flight if r.answered_at is None]
            print(
                f"{len(in_flight)} in flight at SIGTERM, {len(unanswered)} unanswered; "
                f"{truth.summary()}"
            )
            assert in_flight, truth.summary()
            assert not unanswered, unanswered[:10]
            assert_consistent(redis.Redis(port=rp.port), truth, exact=False)
    finally:
        if rp.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                rp.proc.send_signal(signal.SIGCONT)
        rp.stop()


def test_embedded_redis_restart_is_retried_until_it_succeeds(tmp_path: Path) -> None:
    """A restart that fails (here: an unreadable append-only file) is logged and tried
    again; once the file is back, Redis returns with everything acknowledged before."""
    config = make_config(tmp_path, "")
    embedded = EmbeddedRedis(tmp_path / "var")
    aof = embedded.dir / "appendonly.aof"
    with serving(config, workers=1) as serve:
        ports = serve.ready()
        with loading(plan_for(ports["acct_port"], "rf1", **SHORT)) as load:
            before = load.join()
        assert_all_answered(before)
        pid = embedded.pid()
        assert pid is not None
        saved = aof.read_bytes()  # written before each reply (appendfsync: when synced)
        broken = aof.with_name("broken.tmp")
        broken.write_bytes(b"not an append-only file\n")
        broken.replace(aof)  # Redis keeps appending to the old, now unlinked, file
        os.kill(pid, signal.SIGKILL)
        serve.wait_for("redis.died", pid=pid, signal=9)
        serve.wait_for("redis.restart_failed")
        assert serve.proc.poll() is None
        fixed = aof.with_name("fixed.tmp")
        fixed.write_bytes(saved)
        fixed.replace(aof)
        serve.wait_for("redis.restarted")
        with loading(plan_for(ports["acct_port"], "rf2", **SHORT)) as load:
            after = load.join()
        assert_all_answered(after)
        r = embedded_client(config)
        assert_consistent(r, before, exact=True)
        assert_consistent(r, after, exact=True)
        assert serve.stop() == 0, serve.log_tail()


def test_embedded_start_waits_while_redis_loads_a_large_aof(tmp_path: Path) -> None:
    """``start``'s timeout is for an answer at all: a server busy loading its AOF
    (LOADING) is waited for, not killed as "did not answer"."""
    first = EmbeddedRedis(tmp_path / "var")
    first.start()
    try:
        r = redis.Redis(unix_socket_path=str(first.socket))
        r.execute_command("DEBUG", "POPULATE", 600_000, "k", 40)
        r.bgrewriteaof()  # the keys into the AOF

        def rewritten() -> bool:
            info = r.info("persistence")
            return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

        wait_until(rewritten, 30, 0.05, "AOF rewrite")
    finally:
        first.stop()
    again = EmbeddedRedis(tmp_path / "var")
    try:
        again.start(timeout=0.05)  # loading 600k keys takes longer than that
        assert redis.Redis(unix_socket_path=str(again.socket)).dbsize() == 600_000
        log = (again.dir / "redis.log").read_text()
        assert "DB loaded from append only file" in log
    finally:
        again.stop()


async def test_redis_timeout_bounds_an_exchange_with_a_frozen_redis(tmp_path: Path) -> None:
    """``redis.timeout`` is in force on both Redis paths (the RADIUS hot path and the
    rest): a frozen Redis fails the call after it, well before the 2 s default."""
    from controller.config import load_config
    from controller.storage.redis_conn import connect_store
    from controller.storage.store import StoreUnavailable

    rp = RedisProcess(tmp_path / "redis")
    rp.start()
    config = load_config(make_config(tmp_path, rp.url, redis_opts="timeout = 0.2"))
    assert config.redis.timeout == 0.2
    store = await connect_store(config, None)
    try:
        assert rp.proc is not None
        rp.proc.send_signal(signal.SIGSTOP)
        for call in (
            lambda: store.mac_owner("02-00-00-00-00-01"),  # batched hot path
            lambda: store.used_on("0" * 20, "20260101"),  # redis-py
        ):
            with pytest.raises(StoreUnavailable):
                async with asyncio.timeout(1.8):  # a TimeoutError here: option not applied
                    await call()
    finally:
        if rp.proc is not None:
            rp.proc.send_signal(signal.SIGCONT)
        await store.close()
        rp.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_an_adopted_embedded_redis_is_watched_too(tmp_path: Path, workers: int) -> None:
    """``serve`` restarted after a crash finds its predecessor's redis-server still
    running and uses it; when that one dies, ``serve`` restarts it all the same."""
    config = make_config(tmp_path, "")
    leftover = EmbeddedRedis(tmp_path / "var")
    leftover.start()  # what a serve killed with SIGKILL leaves behind
    try:
        with serving(config, workers=workers) as serve:
            ports = serve.ready()
            assert leftover.process is not None
            leftover.process.kill()
            leftover.process.wait()
            serve.wait_for("redis.restarted")
            with loading(plan_for(ports["acct_port"], f"ad{workers}", **SHORT)) as load:
                truth = load.join()
            assert_all_answered(truth)
            assert_consistent(embedded_client(config), truth, exact=True)
            assert serve.stop() == 0, serve.log_tail()
        assert not leftover.socket.exists()  # the restarted one was ours: stopped with serve
    finally:
        leftover.stop()
