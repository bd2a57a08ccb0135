"""RadSec (RFC 6614) against UDP through a live ``citywifi serve`` (Controller in process,
real Redis started here, loopback), one client configured for both transports.

Prints the TLS connection set-up time (TCP connect + mutual-TLS handshake + the
certificate lookup, median of ``--handshakes``), then the throughput of
``--requests`` Accounting-Requests (Start of a new session each, so each is one Redis
write) with ``--window`` in flight, over one RadSec connection and over UDP. The load
generator shares the process and its CPU: compare the two lines, not the absolute
figures with ``bench.run``. Figures, no assertions.

    .venv/bin/python -m bench.radsec_bench --requests 20000 --window 64
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

from controller.cli.serve import Controller
from controller.config import load_config
from radius.attrs import AcctStatus, Attr, Code
from radius.packet import attr_int, attr_text, encode_request
from radius.radsec import RADSEC_SECRET
from tests.conftest import SECRET, service_sections
from tests.support.radsec_kit import Pki, client_context, make_pki
from tests.support.redis_proc import RedisProcess


def _config(directory: Path, redis_url: str, pki: Pki) -> Path:
    text = service_sections(redis_url) + textwrap.dedent(
        f"""
        [[operators]]
        id = "op-a"
        name = "A"

        [[venues]]
        id = "v1"
        name = "V"
        type = "hospital"
        district = "d"
        operator = "op-a"

        [[clients]]
        id = "nas-1"
        address = "127.0.0.1"
        secret = "{SECRET}"
        venue = "v1"
        radsec_fingerprint = ["{pki.client.fingerprint}"]

        [radsec]
        enabled = true
        bind = "127.0.0.1"
        port = 0
        certificate = "{pki.server.cert}"
        private_key = "{pki.server.key}"
        ca_certificates = "{pki.ca}"
        max_in_flight = 4096
        """
    )
    path = directory / "citywifi.toml"
    path.write_text(text)
    return path


def _start(ident: int, secret: bytes, n: int, tag: str) -> bytes:
    return encode_request(
        Code.ACCOUNTING_REQUEST,
        ident,
        secret,
        attr_int(Attr.ACCT_STATUS_TYPE, AcctStatus.START)
        + attr_text(Attr.ACCT_SESSION_ID, f"{tag}-{n}")
        + attr_text(Attr.USER_NAME, f"aa-bb-cc-{n % 256:02x}-{n // 256 % 256:02x}-01"),
        message_authenticator=False,
    )


async def _radsec(port: int, pki: Pki, requests: int, window: int) -> float:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(pki, pki.client)
    )
    slots = asyncio.Semaphore(window)

    async def read_all() -> None:
        for _ in range(requests):
            header = await reader.readexactly(4)
            await reader.readexactly(int.from_bytes(header[2:4], "big") - 4)
            slots.release()

    started = time.perf_counter()
    replies = asyncio.ensure_future(read_all())
    for n in range(requests):
        await slots.acquire()
        writer.write(_start(n % 256, RADSEC_SECRET, n, "rs"))
    await replies
    elapsed = time.perf_counter() - started
    writer.close()
    return requests / elapsed


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, slots: asyncio.Semaphore, done: asyncio.Future[None], total: int) -> None:
        self.slots, self.done, self.left = slots, done, total

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.slots.release()
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)


async def _udp(port: int, requests: int, window: int) -> float:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(window)
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Udp(slots, done, requests), remote_addr=("127.0.0.1", port)
    )
    started = time.perf_counter()
    for n in range(requests):
        await slots.acquire()
        transport.sendto(_start(n % 256, SECRET.encode(), n, "udp"))
    await done
    elapsed = time.perf_counter() - started
    transport.close()
    return requests / elapsed


async def _handshakes(port: int, pki: Pki, count: int) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(pki, pki.client)
        )
        times.append(time.perf_counter() - started)
        writer.close()
    return statistics.median(times) * 1000


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        pki = make_pki(directory / "pki")
        redis_proc = RedisProcess(directory / "redis")
        redis_proc.start()
        controller = Controller(load_config(_config(directory, redis_proc.url, pki)))
        try:
            await controller.start()
            assert controller.radsec is not None
            port = controller.radsec.port
            ms = await _handshakes(port, pki, args.handshakes)
            print(f"RadSec connection set-up (TCP + mutual TLS + lookup): median {ms:.2f} ms")
            await _radsec(port, pki, min(2000, args.requests), args.window)  # warm-up
            rs = await _radsec(port, pki, args.requests, args.window)
            udp = await _udp(controller.acct_port, args.requests, args.window)
            print(f"Accounting Start, window {args.window}, {args.requests} requests:")
            print(f"  RadSec, one connection: {rs:8.0f} req/s")
            print(f"  UDP:                    {udp:8.0f} req/s")
        finally:
            await controller.stop()
            redis_proc.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--handshakes", type=int, default=50)
    arguments = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(arguments))
    else:
        uvloop.run(main(arguments))
