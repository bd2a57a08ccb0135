"""The hot path's Redis link alone: client CPU µs per unit through ``Batcher`` and
``DirectLink`` (controller.storage.redis_batch) against a real redis-server.

A closed loop like the RADIUS server's callback paths (``Store._soon``): ``--window``
units in flight, each answered unit's done callback submits the next, so the units of
one loop tick share a write. A unit is one EVALSHA of a small script with accounting's
shape (10 arguments in, an array of 9 replies out), plus a GET. Per data path (compiled
reply router, pure-Python one) and checkout (``--checkout``, repeatable: each measured
process imports ``controller`` and ``radius`` from that tree, so another checkout's link,
e.g. main's, runs side by side with this one, alternating), per round: units/s and the
process's CPU (utime + stime, ``time.process_time``) per unit: what the link costs the
server::

    .venv/bin/python -m bench.redis_link [--duration 5] [--rounds 2] [--window 64] \
        [--checkout ../main --checkout .]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)

SCRIPT = """
redis.call('HINCRBY', KEYS[1], 'n', 1)
return {1, 0, ARGV[1], ARGV[2], 'x', ARGV[3], 0, 1, ARGV[4]}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _measure(url: str, duration: float, window: int) -> tuple[float, float]:
    from controller.storage.redis_batch import Batcher, link_for
    from controller.storage.redis_conn import client_from_url

    client = client_from_url(url)
    sha = await client.script_load(SCRIPT)
    batch = Batcher(link_for(client))
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    count = 0
    stop_at = 0.0
    in_flight = window
    args = ("a" * 32, 1712345678, "AA-BB-CC-DD-EE-FF", 123456, "x" * 20, 7, 8, 9, 10)

    def unit(i: int) -> list[Any]:
        return [("EVALSHA", sha, 1, f"k{i % 1000}", *args), ("GET", "nothing")]

    def answered(future: asyncio.Future[list[Any]]) -> None:
        nonlocal count, in_flight
        future.result()
        count += 1
        if loop.time() < stop_at:
            batch.submit(unit(count)).add_done_callback(answered)
            return
        in_flight -= 1
        if in_flight == 0:
            done.set()

    # warm up (the connection, the script cache), then measure
    await asyncio.gather(*(batch.run(unit(i)) for i in range(window * 4)))
    cpu0, wall0 = time.process_time(), loop.time()
    stop_at = wall0 + duration
    for i in range(window):
        batch.submit(unit(i)).add_done_callback(answered)
    await done.wait()
    cpu, wall = time.process_time() - cpu0, loop.time() - wall0
    await batch.close()
    await client.aclose()
    return count / wall, cpu / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--paths", default="compiled,pure")
    parser.add_argument("--checkout", action="append", default=[])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:  # a measured process, importing from the checkout (PYTHONPATH)
        url, duration, window = opts.child
        rate, us = asyncio.run(_measure(url, float(duration), int(window)))
        print(rate, us)
        return
    checkouts = [os.path.abspath(c) for c in opts.checkout] or [ROOT]
    from controller.storage.redis_embedded import redis_server_binary

    port = _free_port()
    with tempfile.TemporaryDirectory() as work:
        server = subprocess.Popen(
            [
                str(redis_server_binary()),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                work,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            url = f"redis://127.0.0.1:{port}/0"
            print(f"{'checkout':24} {'path':9} {'round':>5} {'units/s':>8} {'CPU µs/unit':>12}")
            for rnd in range(1, opts.rounds + 1):
                for checkout in checkouts:
                    for path in opts.paths.split(","):
                        pure = "1" if path == "pure" else ""
                        env = dict(os.environ, CITYWIFI_PURE_PYTHON=pure, PYTHONPATH=checkout)
                        # the script by path: sys.path[0] is bench/, then PYTHONPATH's tree
                        child = [sys.executable, __file__, "--child", url]
                        out = subprocess.run(
                            [*child, str(opts.duration), str(opts.window)],
                            env=env,
                            cwd=checkout,
                            capture_output=True,
                            text=True,
                            check=True,
                        ).stdout.split()
                        rate, us = float(out[0]), float(out[1])
                        print(f"{checkout[-24:]:24} {path:9} {rnd:>5} {rate:>8.0f} {us:>12.2f}")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
