"""``citywifi natlog import|listen|trim`` and ``citywifi audit who``: NAT logs into the
archive and the person behind a public address and port (controller.services.natlog;
docs/audit.md, "NAT logs and `audit who`").

``audit who`` is registered under ``audit`` by ``controller.cli.reports`` (its parser
and its archive preparation live there); this module imports nothing of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from controller.cli import logs
from controller.cli.config_file import add_no_drain, load_or_none
from controller.config import Config
from controller.services import natlog
from controller.storage.archive import Archive, archive_root
from controller.storage.redis_conn import client_from_url, embedded_for
from controller.storage.redis_embedded import EmbeddedRedisError
from controller.storage.store import Store


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nat = sub.add_parser("natlog", help="NAT translations from the CGN (the address record)")
    nsub = nat.add_subparsers(dest="natlog_command", required=True)
    imp = nsub.add_parser("import", help="read a NAT log file (syslog lines or IPFIX)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--config", required=True, type=Path)
    imp.add_argument("--format", default="auto", choices=natlog.FORMATS)
    imp.add_argument(
        "--source",
        default="",
        help="the exporter's address (matched to [[natlog.exporters]] for its NAS)",
    )
    listen = nsub.add_parser("listen", help="receive syslog and IPFIX over UDP from exporters")
    listen.add_argument("--config", required=True, type=Path)
    trim = nsub.add_parser("trim", help="delete translations older than natlog.retention_days")
    trim.add_argument("--config", required=True, type=Path)


def add_who(asub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    who = asub.add_parser("who", help="the person behind a public IP:port at a time")
    who.add_argument("--config", required=True, type=Path)
    who.add_argument("--ip", required=True, help="the public address")
    who.add_argument("--port", required=True, help="the public port")
    who.add_argument("--at", required=True, help="local date-time YYYY-MM-DDTHH:MM[:SS][+08:00]")
    who.add_argument("--format", default="text", choices=("text", "json"))
    add_no_drain(who)


def cmd_audit_who(
    args: argparse.Namespace, prepare: Callable[[Config, bool], Archive], who_: str
) -> int:
    """The command line holds the config and the key files: it answers as the ``audit``
    role does (with the phone number), and is logged as ``cli:<user>``."""
    config = load_or_none(args.config)
    if config is None:
        return 1
    logs.configure_logging(config.log)  # logs to stderr: stdout is the answer
    try:
        q = natlog.parse_who(args.ip, args.port, args.at, config)
    except natlog.WhoQueryError as exc:
        print(f"citywifi audit who: {exc.message}", file=sys.stderr)
        return 2
    archive = prepare(config, not args.no_drain)
    doc = asyncio.run(_who(archive, config, who_, q))
    if args.format == "json":
        sys.stdout.buffer.write(natlog.to_json(doc) + b"\n")
    else:
        sys.stdout.write(natlog.render_text(doc))
    sys.stdout.flush()
    return 0


async def _who(
    archive: Archive, config: Config, who_: str, q: natlog.WhoQuery
) -> dict[str, object]:
    """``who`` with the open sessions from Redis when it can be reached (an embedded
    Redis not running is started for the read and stopped again)."""
    embedded = embedded_for(config.redis)
    try:
        url = config.redis.url or (await asyncio.to_thread(embedded.start) if embedded else "")
    except (EmbeddedRedisError, OSError) as exc:
        print(f"citywifi: embedded Redis not started ({exc})", file=sys.stderr)
        url = ""
    store = Store(client_from_url(url)) if url else None
    try:
        if store is not None and not await store.ping():
            print("citywifi: Redis not reachable; closed sessions only", file=sys.stderr)
            await store.close()
            store = None
        return await natlog.who_live(archive, store, config, who_, q, time.time(), with_phone=True)
    finally:
        if store is not None:
            await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)  # only stops a server this command started


def cmd_import(args: argparse.Namespace) -> int:
    config = load_or_none(args.config)
    if config is None:
        return 1
    try:
        result = natlog.import_file(
            Archive(archive_root(config)), config, args.file, args.format, args.source, time.time()
        )
    except OSError as exc:
        print(f"citywifi natlog import: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: {result.summary()}", file=sys.stderr)
    return 0


def _reload(listener: natlog.NatLogListener, path: Path) -> None:
    """SIGHUP: the exporters, retention and template timeout of the file as it is now
    (its sockets stay as bound); an invalid file keeps the running config."""
    try:
        config = load_or_none(path)
    except OSError as exc:
        print(f"citywifi natlog listen: {exc}", file=sys.stderr)
        config = None
    if config is None:
        print("citywifi natlog listen: reload refused, the running config kept", file=sys.stderr)
        return
    listener.apply_config(config)
    print(
        f"citywifi natlog listen: reloaded, {len(config.natlog.exporters)} exporter(s)",
        file=sys.stderr,
        flush=True,
    )


async def _listen(config: Config) -> None:
    listener = natlog.NatLogListener(Archive(archive_root(config)), config, time.time)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, _reload, listener, config.source)
    await listener.start()
    ports = ", ".join(f"{k} udp/{v}" for k, v in listener.ports.items())
    print(f"citywifi natlog listen: {config.natlog.bind} {ports}", file=sys.stderr, flush=True)
    try:
        await listener.run(stop)
    finally:
        listener.close()


def cmd_listen(args: argparse.Namespace) -> int:
    config = load_or_none(args.config)
    if config is None:
        return 1
    if not config.natlog.exporters:
        print(
            "citywifi natlog listen: no [[natlog.exporters]]: every datagram would be dropped",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(_listen(config))
    except OSError as exc:
        print(f"citywifi natlog listen: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_trim(args: argparse.Namespace) -> int:
    config = load_or_none(args.config)
    if config is None:
        return 1
    removed = natlog.trim(Archive(archive_root(config)), config, time.time())
    print(f"removed {len(removed)} day(s) of NAT translations", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.natlog_command == "import":
        return cmd_import(args)
    if args.natlog_command == "listen":
        return cmd_listen(args)
    return cmd_trim(args)
