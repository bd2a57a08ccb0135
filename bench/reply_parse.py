"""The Redis reply reader alone: CPU µs per stream entry to read an archiver-shaped
XREADGROUP reply, whole and cut into chunks, by the compiled reader
(``radius._speedups.ReplyRouter``) and by hiredis (the pure-Python path's reader), side
by side in one process, alternating rounds, so the machine's noise falls on both alike.

The archiver reads its outbox in rounds of up to 10,000 entries; Redis writes such a
reply in 16–64 KiB pieces, so what a reader costs on a reply that arrives in chunks is
what the archiver pays::

    .venv/bin/python -m bench.reply_parse [--entries 2000] [--chunks 0,65536,4096] \\
        [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import hiredis
from redis import exceptions as redis_errors

from radius import fastpath


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def stream_reply(entries: int) -> bytes:
    """One stream, `entries` entries of eight fields (the outbox's login shape)."""
    items = []
    for i in range(entries):
        fields = [b"kind", b"login", b"at", b"%d" % (1_790_000_000_000 + i), b"phone"]
        fields += [b"8613%09d" % i, b"detail", b"x" * 300]
        items.append(b"*2\r\n" + _bulk(b"1790000000000-%d" % i) + b"*8\r\n")
        items.append(b"".join(_bulk(f) for f in fields))
    return b"*1\r\n*2\r\n" + _bulk(b"citywifi:outbox") + b"*%d\r\n" % entries + b"".join(items)


def read(make: Callable[[], Any], pieces: list[bytes]) -> Any:
    """As the link reads: after every chunk, whatever replies are complete."""
    reader = make()
    reply = False
    for piece in pieces:
        reader.feed(piece)
        reply = reader.gets()
    assert reply is not False
    return reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--chunks", default="0,65536,4096", help="chunk sizes; 0 = whole")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = stream_reply(args.entries)
    compiled = fastpath.load().reply_router
    readers: dict[str, Callable[[], Any]] = {
        "hiredis": lambda: hiredis.Reader(replyError=redis_errors.ResponseError)
    }
    if compiled is not None:
        readers["compiled"] = lambda: compiled(redis_errors.ResponseError, hiredis.ProtocolError)
    else:
        print(f"compiled path not in use ({fastpath.reason()}): hiredis only")
    print(f"reply: {args.entries} entries, {len(data):,} octets")
    for size in (int(c) for c in args.chunks.split(",")):
        pieces = [data] if size == 0 else [data[i : i + size] for i in range(0, len(data), size)]
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, make in readers.items():
                start = time.process_time()
                repeat = 0
                while repeat < 3 or time.process_time() - start < 0.2:
                    read(make, pieces)
                    repeat += 1
                per = (time.process_time() - start) / repeat / args.entries * 1e6
                best[name] = min(best.get(name, per), per)
        shown = ", ".join(f"{name} {us:.2f}" for name, us in best.items())
        ratio = (
            f"  (compiled/hiredis {best['compiled'] / best['hiredis']:.2f})"
            if "compiled" in best
            else ""
        )
        label = "whole" if size == 0 else f"{size}-octet chunks ({len(pieces)})"
        print(f"{label:>28}: µs/entry, best of {args.rounds}: {shown}{ratio}")


if __name__ == "__main__":
    main()
