"""Per-layer shares of a py-spy profile of ``citywifi serve`` (issue 16 item 6).

py-spy cannot attach to a running worker on the development box ("Failed to find python
version from target process"), but it can launch the server itself:
``CITYWIFI_BENCH_PYSPY=<file> python -m bench.run acct`` runs the bench's server under
``py-spy record --subprocesses --gil --format raw`` (bench/stack.py). This reads that
file: each sample (a stack of the thread holding the GIL) goes to the layer of its
innermost frame of ours (``controller/``, ``radius/``); library frames below it count
for that layer (hiredis under the Redis batcher, DuckDB under the archiver), and a stack
with none of ours is the event loop (uvloop, asyncio) or the interpreter. Start-up
(imports, config) is left out. Given the server's CPU µs per answer (``--us``, from the
same bench run), it prints each layer's µs per answer.

    .venv/bin/python -m bench.profile_layers /tmp/acct.prof.txt --us 97
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# innermost frame's file (prefix) -> layer; first match wins, most specific first
LAYERS: tuple[tuple[str, str], ...] = (
    ("radius/batch_socket.py", "socket I/O (recvmmsg/sendmmsg batches)"),
    ("radius/server.py", "RADIUS endpoint (datagram, dedup, in-flight, send)"),
    ("radius/core.py", "RADIUS endpoint (datagram, dedup, in-flight, send)"),
    ("radius/dedup.py", "RADIUS endpoint (datagram, dedup, in-flight, send)"),
    ("radius/packet.py", "codec (decode, verify, encode)"),
    ("radius/fastpath.py", "codec (decode, verify, encode)"),
    ("radius/events.py", "request events (attributes to typed fields)"),
    ("radius/attrs.py", "request events (attributes to typed fields)"),
    ("radius/metrics.py", "metrics and tallies"),
    ("radius/tally.py", "metrics and tallies"),
    ("controller/services/metrics.py", "metrics and tallies"),
    ("controller/services/nas_stats.py", "metrics and tallies"),
    ("controller/storage/nas_stats.py", "metrics and tallies"),
    ("controller/storage/metered.py", "metrics and tallies"),
    ("controller/services/radius_service.py", "accounting service (the write, observers)"),
    ("controller/domain/", "domain rules (quota days, identity, venue)"),
    ("controller/services/enforcer.py", "enforcer (due index writer, loop)"),
    ("controller/storage/store.py", "store (command building, reply mapping)"),
    ("controller/storage/keys.py", "store (command building, reply mapping)"),
    ("controller/storage/redis_batch.py", "Redis batching (RESP pack, hiredis parse)"),
    ("controller/services/archiver.py", "archiver (main thread and writer)"),
    ("controller/storage/archive.py", "archiver (main thread and writer)"),
    ("controller/services/trace.py", "trace hook"),
    ("controller/storage/trace.py", "trace hook"),
    ("controller/cli/logs.py", "logging"),
)
STARTUP = ("_find_and_load", "(controller/config/", "load_config", "serve.py:__init__")
_FRAME = re.compile(r"\(([^:()]+\.py):\d+\)")


def layer_of(frames: list[str]) -> str | None:
    """The layer of one sample (None: start-up, left out)."""
    if any(marker in f for f in frames for marker in STARTUP[:1]):
        return None
    for frame in reversed(frames):
        m = _FRAME.search(frame)
        if m is None:
            continue
        path = m.group(1)
        if path.startswith(("controller/", "radius/")):
            for prefix, layer in LAYERS:
                if path.startswith(prefix):
                    return layer
            if path.startswith(("controller/cli/", "radius/server")):
                continue  # the loop's driver: look further out
            return f"other ({path})"
    return "event loop, interpreter (uvloop, asyncio, GC)"


def shares(path: Path) -> tuple[Counter[str], int]:
    by_process: dict[str, Counter[str]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        layer = layer_of(frames[1:])
        if layer is not None:
            by_process.setdefault(frames[0], Counter())[layer] += int(count)
    # the worker: the process with the most samples (the supervisor idles)
    worker = max(by_process.values(), key=lambda c: sum(c.values()), default=Counter())
    return worker, sum(worker.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", type=Path, help="py-spy raw output")
    ap.add_argument("--us", type=float, default=0.0, help="server CPU µs per answer")
    o = ap.parse_args()
    counts, total = shares(o.profile)
    print(f"{total} samples holding the GIL in the worker")
    print("| layer | share | µs per answer |\n|---|---|---|")
    for layer, n in counts.most_common():
        us = f"{o.us * n / total:.1f}" if o.us and total else ""
        print(f"| {layer} | {100 * n / total:.1f} % | {us} |")


if __name__ == "__main__":
    main()
