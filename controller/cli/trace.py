"""``citywifi trace --client ID [--seconds N]``: turn on the RADIUS trace of one client
for N seconds (every worker of every instance sees the switch within a second,
``controller.services.trace``) and print each of its requests and our replies as they
happen, decoded with names, passwords redacted — the ``radiusd -X`` of one NAS. Ctrl-C
or the end of N seconds turns the trace off again (unless ``--leave-on``); ``--off``
turns a running trace off."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from controller.cli import logs
from controller.config import Config
from controller.storage.redis_conn import connect_store, embedded_for
from controller.storage.store import StoreUnavailable
from controller.storage.trace import TraceStore

MAX_SECONDS = 3600  # a forgotten trace ends by itself within the hour


def add_parser(sub: Any) -> None:
    p = sub.add_parser("trace", help="print one client's RADIUS packets decoded, for N seconds")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--client", required=True, help="[[clients]] id")
    p.add_argument("--seconds", type=int, default=300, help=f"1..{MAX_SECONDS} (default 300)")
    p.add_argument("--leave-on", action="store_true", help="do not turn it off at the end")
    p.add_argument("--off", action="store_true", help="turn the client's trace off and exit")


def _actor() -> str:
    try:
        return f"cli:{os.getlogin()}"
    except OSError:
        return f"cli:uid{os.getuid()}"


async def follow(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    embedded = embedded_for(config.redis)
    store = await connect_store(config, embedded)
    db = TraceStore(store)
    try:
        configured = any(c.id == args.client and c.trace for c in config.clients)
        if args.off:
            print("off" if await db.off(args.client) else "was not on", file=out)
            if configured:  # the switch adds to the config; it cannot turn that off
                print("still traced: `trace = true` in its [[clients]] entry", file=out)
            return 0
        await db.on(args.client, args.seconds, _actor())
        print(f"tracing client {args.client} for {args.seconds} s (Ctrl-C ends it)", file=out)
        out.flush()
        deadline = time.monotonic() + args.seconds
        last = "$"
        try:
            task = asyncio.current_task()
            while (left := deadline - time.monotonic()) > 0:
                if task is not None and task.cancelling():  # a library swallowed a cancel
                    raise asyncio.CancelledError
                for entry in await db.read(args.client, last, int(min(left, 1.0) * 1000) or 1):
                    last = entry.id
                    arrow = "<-" if entry.direction == "in" else "->"
                    print(f"{arrow} {entry.lines[0]}", file=out)
                    for line in entry.lines[1:]:
                        print(line, file=out)
                    out.flush()
        finally:
            if not args.leave_on:
                with contextlib.suppress(StoreUnavailable):
                    await db.off(args.client)
        return 0
    finally:
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def run_cli(config: Config, args: argparse.Namespace, out: TextIO | None = None) -> int:
    logs.configure_logging(config.log)
    if args.client not in {c.id for c in config.clients}:
        print(f"citywifi trace: --client: no [[clients]] entry {args.client!r}", file=sys.stderr)
        return 2
    if not 1 <= args.seconds <= MAX_SECONDS:
        print(f"citywifi trace: --seconds is 1..{MAX_SECONDS}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(follow(config, args, out or sys.stdout))
    except KeyboardInterrupt:
        return 0
    except StoreUnavailable as exc:
        print(f"citywifi trace: Redis unavailable: {exc}", file=sys.stderr)
        return 1
