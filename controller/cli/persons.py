"""``citywifi person erase|export --phone N --config FILE``: a person's erasure (the
admin's command) and their own export (``controller.services.persons``), on the same
Redis and archive as a running ``serve``. ``erase`` prints what was deleted (person id,
never the number); ``export`` prints the person's records as JSON, or writes them
``0600`` to ``--out``. Logs go to stderr."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from controller.cli import logs
from controller.cli.reports import cli_who
from controller.config import Config
from controller.domain.identity import person_id
from controller.domain.phone import PhoneError, normalize_phone
from controller.services import persons
from controller.storage.archive import Archive, archive_root
from controller.storage.datafiles import write_private
from controller.storage.keyfiles import load_person_key
from controller.storage.redis_conn import connect_store, embedded_for
from controller.storage.store import StoreUnavailable


def add_parser(sub: Any) -> None:
    """``citywifi person erase|export``."""
    person = sub.add_parser("person", help="erase a person's records, or export them (PIPL)")
    actions = person.add_subparsers(dest="person_command", required=True)
    helps = {
        "erase": "delete a person's number binding, devices, credentials and codes "
        "(usage for settlement and the audit log stay until their retention)",
        "export": "a person's own records as JSON (their copy: with their number)",
    }
    for name, text in helps.items():
        p = actions.add_parser(name, help=text)
        p.add_argument("--config", required=True, type=Path)
        p.add_argument("--phone", required=True, help="mobile number")
        if name == "export":
            p.add_argument("--out", type=Path, help="write here (0600) instead of stdout")


async def _cli(config: Config, args: argparse.Namespace, phone: str) -> dict[str, Any]:
    embedded = embedded_for(config.redis)
    store = await connect_store(config, embedded)
    try:
        pid = person_id(phone, load_person_key(config.security.person_key, config.redis.data_dir))
        archive = Archive(archive_root(config))
        now = time.time()
        if args.person_command == "erase":
            return await persons.erase(store, archive, config, pid, who=cli_who(), now=now)
        return await persons.export(store, archive, config, phone, pid, who=cli_who(), now=now)
    finally:
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)  # only a server this command started


def run_cli(config: Config, args: argparse.Namespace) -> int:
    """Run one person command; exit 2 on a bad number, 1 when Redis is unavailable."""
    logs.configure_logging(config.log)  # logs to stderr: stdout is the answer
    name = f"citywifi person {args.person_command}"
    try:
        phone = normalize_phone(args.phone)
    except PhoneError as exc:
        print(f"{name}: phone: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_cli(config, args, phone))
    except StoreUnavailable as exc:
        print(f"{name}: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, ensure_ascii=False, indent=2) + "\n"
    out: Path | None = getattr(args, "out", None)
    if out is None:
        sys.stdout.write(text)
        return 0
    with contextlib.suppress(FileNotFoundError):
        out.unlink()  # an existing file would keep its mode; this one holds the number
    write_private(out, text.encode())
    print(f"{name}: written to {out}", file=sys.stderr)
    return 0
