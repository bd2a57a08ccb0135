"""``citywifi eap list|revoke``: a person's EAP ("connect automatically") credentials
from the command line, on the same Redis as a running ``serve``
(``controller.services.eap_revoke``); revoking also disconnects the EAP sessions the
credentials opened (RFC 5176, through the enforcer's DAE client). The answer is printed
as JSON, logs go to stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from controller.cli import logs
from controller.config import Config
from controller.services.admin import AdminError, resolve_person
from controller.services.eap_revoke import list_credentials, revoke_credentials
from controller.services.enforcer import Enforcer
from controller.storage.keyfiles import load_person_key
from controller.storage.redis_conn import connect_store, embedded_for
from controller.storage.store import StoreUnavailable


def add_parser(sub: Any) -> None:
    """``citywifi eap list|revoke``."""
    eap = sub.add_parser("eap", help="a person's EAP (Passpoint) credentials: list, revoke")
    actions = eap.add_subparsers(dest="eap_command", required=True)
    helps = {
        "list": "the person's EAP credentials (username, label, issued, expires)",
        "revoke": "revoke one credential (--credential) or all, disconnecting their sessions",
    }
    for name, text in helps.items():
        p = actions.add_parser(name, help=text)
        p.add_argument("--config", required=True, type=Path)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--phone", help="mobile number")
        who.add_argument("--person", help="person id")
        if name == "revoke":
            p.add_argument("--credential", help="the credential's username (default: all)")


async def _cli(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    embedded = embedded_for(config.redis)
    store = await connect_store(config, embedded)
    enforcer = Enforcer(config, store)
    try:
        pid = resolve_person(
            phone=args.phone,
            person=args.person,
            person_key=load_person_key(config.security.person_key, config.redis.data_dir),
        )
        if args.eap_command == "list":
            found = await list_credentials(store, pid)
            return {
                "person": pid,
                "credentials": [
                    {
                        "username": c.username,
                        "label": c.label,
                        "issued_at": c.issued_at,
                        "expires_at": c.expires_at,
                    }
                    for c in found
                ],
            }
        await enforcer.start(loop=False)  # its DAE client only: no loop, no log line
        result = await revoke_credentials(
            store,
            enforcer,
            pid,
            args.credential or None,
            realm=config.passpoint.realm,
            now=int(time.time()),
            by="cli",
        )
        if args.credential and not result.revoked:
            raise AdminError(404, "not_found", "no such credential of this person")
        return result.to_json()
    finally:
        await enforcer.stop()
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)  # only a server this command started


def run_cli(config: Config, args: argparse.Namespace) -> int:
    """Run one eap command; print its JSON answer. Exit 2 on a usage problem (or an
    unknown credential), 1 when Redis is unavailable."""
    logs.configure_logging(config.log)  # logs to stderr: stdout is the answer
    try:
        result = asyncio.run(_cli(config, args))
    except AdminError as exc:
        print(f"citywifi eap {args.eap_command}: {exc.message}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"citywifi eap {args.eap_command}: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0
