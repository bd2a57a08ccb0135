"""bench.floor_server, the minimal servers of ``bench.floors``: each step answers a real
Accounting-Request over UDP correctly (Response Authenticator checked by
``radius.packet.decode_reply``), drops one with a wrong Request Authenticator, and the
Redis steps answer only after their own write is in a real redis-server. Plus the
ladder's table with a skipped step. No figures are asserted."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench import floors
from radius import fastpath, packet
from radius.attrs import Attr
from tests.support.redis_proc import RedisProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"testing123"
COMPILED = fastpath.available()


def accounting_request(identifier: int, session: bytes, seconds: int) -> bytes:
    attrs = (
        packet.attr_int(Attr.ACCT_STATUS_TYPE, 3)
        + packet.attr(Attr.ACCT_SESSION_ID, session)
        + packet.attr_int(Attr.ACCT_SESSION_TIME, seconds)
    )
    return packet.encode_request(4, identifier, SECRET, attrs, message_authenticator=False)


def udp_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path / "redis")
    proc.start()
    yield proc
    proc.stop()


# every flag of bench.floor_server at least once, in as few processes as that takes
COVERING = ("md5-mmsg", "codec", "dedup-c-mmsg", "redis", "redis-c-mmsg", "task")
STEPS = [s for s in floors.STEPS if s.name in COVERING]


@pytest.mark.parametrize("step", STEPS, ids=[s.name for s in STEPS])
def test_floor_server_answers_and_drops(step: floors.Step, redis_server: RedisProcess) -> None:
    if step.compiled and not COMPILED:
        pytest.skip(f"needs the compiled path ({fastpath.reason()})")
    auth_port, acct_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.floor_server",
            *step.server_args,
            "--auth-port",
            str(auth_port),
            "--acct-port",
            str(acct_port),
            "--redis-port",
            str(redis_server.port),
        ],
        cwd=ROOT,
    )
    try:
        wait_until(lambda: udp_bound(acct_port), 15, what=f"{step.name} bound")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
            nas.settimeout(5)
            verifies = step.server_args[1] != "none"  # the MD5-only floor checks nothing
            if verifies:
                bad = bytearray(accounting_request(9, b"s-bad", 1))
                bad[4] ^= 1  # Request Authenticator broken
                nas.sendto(bytes(bad), ("127.0.0.1", acct_port))
            for ident in range(3):
                request = accounting_request(ident, b"s-%d" % ident, 60 + ident)
                nas.sendto(request, ("127.0.0.1", acct_port))
                reply, _ = nas.recvfrom(4096)
                got = packet.decode_reply(reply, SECRET, request[4:20])
                assert (got.code, got.identifier) == (5, ident)
                if step.redis:  # answered after the write: it is there
                    value = redis.Redis(port=redis_server.port).get(b"floor:s-%d" % ident)
                    assert value == str(60 + ident).encode()
            if verifies:  # the broken one was dropped, not answered
                nas.settimeout(0.3)
                with pytest.raises(TimeoutError):
                    nas.recvfrom(4096)
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode in (0, -15)


def test_table_shows_skipped_steps_and_per_request_cost() -> None:
    result = {
        "rps": 10_000.0,
        "unanswered": 0,
        "server_cpu_cores": 0.5,
        "redis_cpu_cores": 0.2,
        "lat_ms": {"p99": 3.0},
    }
    step = next(s for s in floors.STEPS if s.name == "redis")
    text = floors.table([(step, result, None), (floors.STEPS[-1], None, "rlm_redis missing")])
    assert "50.0" in text and "20.0" in text  # 0.5 cores at 10k/s = 50 µs per answer
    assert "skipped: rlm_redis missing" in text
