"""``citywifi serve --workers 2`` with ``[natlog] listen``: the first worker alone owns
the NAT-log ports (two binds of a fixed UDP port without SO_REUSEPORT would fail), a
syslog line sent to it lands in the archive, and a first worker killed with SIGKILL is
restarted and binds them again."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.support.redis_proc import free_port, wait_until
from tests.test_workers import Served

pytestmark = pytest.mark.multiprocess

LINE = (
    "<166>Nov 10 2025 11:41:00 cgn1 : %ASA-6-305011: Built dynamic TCP translation from"
    " inside:10.1.2.3/50000 to outside:203.0.113.5/{port}"
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, int]]:
    syslog = free_port(socket.SOCK_DGRAM)
    path = write_config(tmp_path, "")
    text = path.read_text().replace('level = "warning"', 'level = "info"')
    text += f"""
[natlog]
listen = true
retention_days = 3660
bind = "127.0.0.1"
syslog_port = {syslog}
ipfix_port = 0

[[natlog.exporters]]
address = "127.0.0.1"
"""
    path.write_text(text)
    serve = Served(path, workers=2)
    try:
        serve.wait_for("supervisor.ready")
        yield serve, syslog
    finally:
        serve.stop()


def test_first_worker_owns_the_natlog_ports(served: tuple[Served, int], tmp_path: Path) -> None:
    serve, syslog = served
    listening = serve.find("natlog.listening")
    assert [e["worker"] for e in listening] == [0] and listening[0]["syslog"] == syslog
    nat = tmp_path / "var" / "archive" / "nat"

    def send(port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(LINE.format(port=port).encode(), ("127.0.0.1", syslog))

    send(40000)
    wait_until(lambda: len(list(nat.rglob("*.parquet"))) >= 1, 20, what="NAT rows written")

    first = {e["worker"]: e["pid"] for e in serve.find("worker.started")}[0]
    os.kill(first, signal.SIGKILL)
    serve.wait_for("worker.started", worker=0, restarts=1)
    serve.wait_for("natlog.listening", count=2, worker=0)
    before = len(list(nat.rglob("*.parquet")))

    def delivered() -> bool:  # UDP: resend until the new owner has written one
        send(40001)
        return len(list(nat.rglob("*.parquet"))) > before

    wait_until(delivered, 30, interval=1.0, what="NAT rows from the restarted worker")
    assert all(e["worker"] == 0 for e in serve.find("natlog.listening"))
    assert serve.stop() == 0
