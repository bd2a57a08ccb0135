"""What the admin commands acting on one person share (``citywifi admin``, ``citywifi
eap``): the Redis (embedded or configured) and the enforcer's DAE client for the
command's run, the person named by ``--phone`` or ``--person``, and the answer printed
as JSON with the exit codes every such command uses (2: a usage problem, 1: Redis
unavailable)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from controller.cli import logs
from controller.config import Config
from controller.services.admin import AdminError, resolve_person
from controller.services.enforcer import Enforcer
from controller.storage.keyfiles import load_person_key
from controller.storage.redis_conn import connect_store, embedded_for
from controller.storage.store import Store, StoreUnavailable


@asynccontextmanager
async def admin_session(config: Config, *, dae: bool) -> AsyncIterator[tuple[Store, Enforcer]]:
    """The store and an enforcer for one command; with ``dae`` its DAE client is started
    (no loop, no log line) so the command can send Disconnect-Requests itself. An
    embedded Redis this command started is stopped at the end."""
    embedded = embedded_for(config.redis)
    store = await connect_store(config, embedded)
    enforcer = Enforcer(config, store)
    try:
        if dae:
            await enforcer.start(loop=False)
        yield store, enforcer
    finally:
        await enforcer.stop()
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)  # only a server this command started


def person_actions(actions: Any, helps: dict[str, str]) -> dict[str, argparse.ArgumentParser]:
    """One sub-command of ``actions`` a name in ``helps``, each taking ``--config`` and the
    person (``--phone`` or ``--person``, one of them required); the parsers by name, for
    the options of one action."""
    parsers = {}
    for name, text in helps.items():
        p = actions.add_parser(name, help=text)
        p.add_argument("--config", required=True, type=Path)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--phone", help="mobile number")
        who.add_argument("--person", help="person id")
        parsers[name] = p
    return parsers


def person_of(config: Config, args: argparse.Namespace) -> str:
    """The person id of ``--phone`` or ``--person`` (AdminError for a bad one)."""
    return resolve_person(
        phone=args.phone,
        person=args.person,
        person_key=load_person_key(config.security.person_key, config.redis.data_dir),
    )


def run_json(
    config: Config, name: str, work: Callable[[], Coroutine[Any, Any, dict[str, Any]]]
) -> int:
    """Run ``work`` and print its JSON answer on stdout (logs go to stderr). Exit 2 on a
    usage problem (``AdminError``), 1 when Redis is unavailable."""
    logs.configure_logging(config.log)  # logs to stderr: stdout is the answer
    try:
        result = asyncio.run(work())
    except AdminError as exc:
        print(f"{name}: {exc.message}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"{name}: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0
