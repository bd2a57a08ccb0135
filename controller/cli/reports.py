"""``citywifi report subsidy`` and ``citywifi audit export|trim``: the same figures and
records as the HTTP API, from the command line, with or without a running ``serve``.

Each command first drains the outbox into the archive when Redis is reachable (the
embedded one is started for the duration of the command if no ``serve`` runs), then
reads the archive; with Redis down it reads the archive as it is and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from controller.cli import natlog as natlog_cli
from controller.cli import report_sign
from controller.cli.config_file import add_no_drain, load_or_none
from controller.config import Config
from controller.services import audit
from controller.services.archiver import Archiver
from controller.services.reports import writers
from controller.services.reports.query import FORMATS, GROUPS, ReportRequestError, parse_request
from controller.services.reports.signature import build_signed
from controller.storage.archive import Archive, archive_root
from controller.storage.datafiles import write_private
from controller.storage.keyfiles import load_person_key
from controller.storage.redis_conn import client_from_url, embedded_for
from controller.storage.redis_embedded import EmbeddedRedisError
from controller.storage.store import Store, StoreUnavailable


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="subsidy reports from the usage archive")
    rsub = report.add_subparsers(dest="report_command", required=True)
    subsidy = rsub.add_parser(
        "subsidy", help="per day x venue usage and subsidy (or monthly roll-ups by --group)"
    )
    subsidy.add_argument("--config", required=True, type=Path)
    subsidy.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD")
    subsidy.add_argument("--to", dest="last", required=True, help="last day, YYYY-MM-DD")
    subsidy.add_argument("--format", default="csv", help=f"one of {', '.join(FORMATS)}")
    subsidy.add_argument("--group", default="venue", help=f"one of {', '.join(GROUPS)}")
    subsidy.add_argument("--out", required=True, help="file to write ('-': standard output)")
    subsidy.add_argument("--lang", default="zh", help="the workbook's language: zh or en")
    add_no_drain(subsidy)
    report_sign.add_commands(rsub)

    audit = sub.add_parser("audit", help="the security audit log (login records)")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    export = asub.add_parser("export", help="login records of a time range, by phone or MAC")
    export.add_argument("--config", required=True, type=Path)
    export.add_argument("--from", dest="first", required=True, help="YYYY-MM-DD or date-time")
    export.add_argument("--to", dest="last", required=True, help="YYYY-MM-DD or date-time")
    export.add_argument("--phone", default="", help="only this mobile number")
    export.add_argument("--mac", default="", help="only this device MAC")
    export.add_argument("--format", default="csv", help="csv or json")
    export.add_argument("--out", required=True, help="file to write ('-': standard output)")
    add_no_drain(export)
    trim = asub.add_parser("trim", help="delete audit records older than audit.retention_days")
    trim.add_argument("--config", required=True, type=Path)
    natlog_cli.add_who(asub)  # audit who --ip --port --at


async def drain_outbox(config: Config, archive: Archive) -> int | None:
    """Archive what Redis still holds; None when Redis cannot be reached."""
    embedded = embedded_for(config.redis)
    try:
        url = config.redis.url or (await asyncio.to_thread(embedded.start) if embedded else "")
    except (EmbeddedRedisError, OSError) as exc:
        print(f"citywifi: embedded Redis not started ({exc})", file=sys.stderr)
        return None
    store = Store(client_from_url(url))
    try:
        if not await store.ping():
            return None
        archiver = Archiver(store, archive, lambda: config)
        try:
            handled = await archiver.drain()
        except StoreUnavailable:
            return None
        await asyncio.to_thread(archiver.maintain, time.time())
        return handled
    finally:
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)  # only stops a server this command started


def _prepare(config: Config, drain: bool) -> Archive:
    archive = Archive(archive_root(config))
    if drain and asyncio.run(drain_outbox(config, archive)) is None:
        print(
            "citywifi: Redis not reachable; reading the archive without the latest closes",
            file=sys.stderr,
        )
    return archive


class ProgressBar:
    """``[#####-----] 12/31`` on a terminal; silent when stderr is a file or a pipe."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.enabled = stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        width = 30
        filled = width * done // total
        self.stream.write(f"\r{self.label} [{'#' * filled}{'-' * (width - filled)}] {done}/{total}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _write(out: str, body: bytes, *, private: bool = False) -> None:
    """Write ``out`` (``-``: standard output) atomically; ``private``: created 0600 (an
    audit export holds phone numbers)."""
    if out == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return
    target = Path(out)
    tmp = target.with_name(f".{target.name}.tmp")
    if private:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # a leftover would keep its mode
        write_private(tmp, body)
    else:
        tmp.write_bytes(body)
    os.replace(tmp, target)


def cmd_report_subsidy(args: argparse.Namespace) -> int:
    config = load_or_none(args.config)
    if config is None:
        return 1
    params = {"from": args.first, "to": args.last, "format": args.format, "group": args.group}
    params["lang"] = args.lang
    try:
        req = parse_request(params, config)
    except ReportRequestError as exc:
        print(f"citywifi report subsidy: {exc.message}", file=sys.stderr)
        return 2
    archive = _prepare(config, not args.no_drain)
    report = build_signed(archive, config, req, time.time(), ProgressBar(sys.stderr, "days"))
    _write(args.out, writers.render(report, req.format))
    print(f"sha256 {writers.digest(report)}  {args.out}", file=sys.stderr)
    return 0


def cli_who() -> str:
    """Who runs an export from the command line (the export log's ``who``)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def cmd_audit_export(args: argparse.Namespace) -> int:
    config = load_or_none(args.config)
    if config is None:
        return 1
    params = {
        "from": args.first,
        "to": args.last,
        "phone": args.phone,
        "mac": args.mac,
        "format": args.format,
    }
    try:
        q = audit.parse_query(params, config)
    except audit.AuditQueryError as exc:
        print(f"citywifi audit export: {exc.message}", file=sys.stderr)
        return 2
    archive = _prepare(config, not args.no_drain)
    key = load_person_key(config.security.person_key, config.redis.data_dir)
    body = audit.export(archive, config, key, cli_who(), q, time.time())
    _write(args.out, body, private=True)
    return 0


def cmd_audit_trim(args: argparse.Namespace) -> int:
    config = load_or_none(args.config)
    if config is None:
        return 1
    removed = audit.trim(Archive(archive_root(config)), config, time.time())
    print(f"removed {len(removed)} day(s) of audit records", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch ``citywifi report …`` / ``citywifi audit …``."""
    if args.command == "report":
        if args.report_command != "subsidy":
            return report_sign.run(args)
        return cmd_report_subsidy(args)
    if args.audit_command == "export":
        return cmd_audit_export(args)
    if args.audit_command == "who":
        return natlog_cli.cmd_audit_who(args, _prepare, cli_who())
    return cmd_audit_trim(args)
