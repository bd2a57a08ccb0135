"""``citywifi admin sessions|disconnect|block|unblock|revoke-devices``: the admin
actions (``controller.services.admin``) from the command line, on the same Redis as a
running ``serve``; the answer is printed as JSON, logs go to stderr."""

from __future__ import annotations

import argparse
import time
from typing import Any

from controller.cli.admin_command import admin_session, person_actions, person_of, run_json
from controller.config import Config
from controller.services.admin import (
    block,
    block_until,
    disconnect,
    person_status,
    revoke_devices,
    unblock,
)


def add_parser(sub: Any) -> None:
    """``citywifi admin sessions|disconnect|block|unblock|revoke-devices``."""
    admin = sub.add_parser("admin", help="a person's sessions and usage; disconnect, block")
    actions = admin.add_subparsers(dest="admin_command", required=True)
    helps = {
        "sessions": "today's usage and open sessions of a person",
        "disconnect": "disconnect every open session of a person now (RFC 5176)",
        "block": "reject a person at login until a time, and disconnect them",
        "unblock": "lift a block",
        "revoke-devices": "revoke the person's remembered-device cookies (SMS needed again)",
    }
    block_parser = person_actions(actions, helps)["block"]
    when = block_parser.add_mutually_exclusive_group()
    when.add_argument("--until", help="YYYY-MM-DD (its 00:00) or YYYY-MM-DDTHH:MM")
    when.add_argument("--days", type=int, help="N local days counting today")
    block_parser.add_argument("--reason", default="", help="kept with the block")


async def _cli(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    action = args.admin_command
    async with admin_session(config, dae=action in ("disconnect", "block")) as (store, enforcer):
        pid = person_of(config, args)
        now = int(time.time())
        if action == "sessions":
            return await person_status(store, config.quota, pid, now)
        if action == "disconnect":
            return await disconnect(enforcer, pid)
        if action == "block":
            until = block_until(now, config.quota.timezone, until=args.until, days=args.days)
            return await block(
                store, enforcer, config.quota, pid, now=now, until=until, reason=args.reason
            )
        if action == "revoke-devices":
            return await revoke_devices(store, pid)
        return await unblock(store, pid)


def run_cli(config: Config, args: argparse.Namespace) -> int:
    """Run one admin command; print its JSON answer. Exit 2 on a usage problem."""
    return run_json(config, f"citywifi admin {args.admin_command}", lambda: _cli(config, args))
