"""``citywifi user add|passwd|disable|list``: the console's named accounts
(``controller.services.accounts``) from the command line, on the same Redis as a running
``serve`` — how the first account is made.

A password is never an argument (it would sit in the shell history, ``ps`` and audit
logs): it is asked for twice at a terminal (``getpass``), or read as the first line of
standard input with ``--password-stdin`` (for provisioning scripts). Actions are
recorded in the audit log as done by ``cli:<login name>``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from controller.cli import logs
from controller.config import Config
from controller.domain.accounts import AccountError
from controller.services.accounts import Accounts
from controller.storage.redis_conn import connect_store, embedded_for
from controller.storage.store import StoreUnavailable


def add_parser(sub: Any) -> None:
    user = sub.add_parser("user", help="console accounts: add, passwd, disable, list")
    actions = user.add_subparsers(dest="user_command", required=True)
    add = actions.add_parser("add", help="add a console account")
    add.add_argument("name")
    add.add_argument(
        "--role",
        action="append",
        required=True,
        help="admin, operations, reports, audit or operator:<id> (repeatable)",
    )
    add.add_argument("--totp", action="store_true", help="require a TOTP code at sign-in")
    passwd = actions.add_parser("passwd", help="set a new password (ends the account's sessions)")
    passwd.add_argument("name")
    for p in (add, passwd):
        p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    disable = actions.add_parser("disable", help="disable an account (ends its sessions)")
    disable.add_argument("name")
    actions.add_parser("list", help="the accounts, their roles and state (JSON)")
    for p in (add, passwd, disable, actions.choices["list"]):
        p.add_argument("--config", required=True, type=Path)


def read_password(from_stdin: bool, stdin: TextIO, name: str) -> str:
    """The new password: stdin's first line, or asked twice at the terminal."""
    if from_stdin:
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"new password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("mismatch", "the two passwords differ")
    return first


def _actor() -> str:
    try:
        return f"cli:{os.getlogin()}"
    except OSError:  # no controlling terminal (a script, a container)
        return f"cli:uid{os.getuid()}"


async def _run(config: Config, args: argparse.Namespace, password: str) -> dict[str, Any]:
    embedded = embedded_for(config.redis)
    store = await connect_store(config, embedded)
    accounts = Accounts(store, issuer=config.brand.name["en"])
    by = _actor()
    try:
        action = args.user_command
        if action == "add":
            operators = frozenset(config.operators)
            added = await accounts.add(
                args.name, password, args.role, totp=args.totp, by=by, operators=operators
            )
            out: dict[str, Any] = {
                "user": added.account.name,
                "roles": sorted(added.account.role_names),
            }
            if added.totp_uri:  # shown once: the secret is not printed again
                out["totp_uri"] = added.totp_uri
            return out
        if action == "passwd":
            return {
                "user": args.name,
                "sessions_ended": await accounts.passwd(args.name, password, by=by),
            }
        if action == "disable":
            ended = await accounts.disable(args.name, by=by)
            return {"user": args.name, "disabled": True, "sessions_ended": ended}
        return {
            "users": [
                {
                    "user": a.name,
                    "roles": sorted(a.role_names),
                    "totp": bool(a.totp_secret),
                    "disabled": a.disabled,
                    "locked_for": await accounts.db.locked_for(a.name),
                }
                for a in await accounts.accounts()
            ]
        }
    finally:
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def run_cli(config: Config, args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    """Run one ``user`` command; print its JSON answer. Exit 2 on a refused request."""
    logs.configure_logging(config.log)  # logs to stderr: stdout is the answer
    try:
        password = ""
        if args.user_command in ("add", "passwd"):
            password = read_password(args.password_stdin, stdin or sys.stdin, args.name)
        result = asyncio.run(_run(config, args, password))
    except AccountError as exc:
        print(f"citywifi user {args.user_command}: {exc.message}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"citywifi user {args.user_command}: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0
