"""``citywifi eap list|revoke``: a person's EAP ("connect automatically") credentials
from the command line, on the same Redis as a running ``serve``
(``controller.services.eap_revoke``); revoking also disconnects the EAP sessions the
credentials opened (RFC 5176, through the enforcer's DAE client). The answer is printed
as JSON, logs go to stderr."""

from __future__ import annotations

import argparse
import time
from typing import Any

from controller.cli.admin_command import admin_session, person_actions, person_of, run_json
from controller.config import Config
from controller.services.admin import AdminError
from controller.services.eap_revoke import credentials_json, list_credentials, revoke_credentials


def add_parser(sub: Any) -> None:
    """``citywifi eap list|revoke``."""
    eap = sub.add_parser("eap", help="a person's EAP (Passpoint) credentials: list, revoke")
    actions = eap.add_subparsers(dest="eap_command", required=True)
    helps = {
        "list": "the person's EAP credentials (username, label, issued, expires)",
        "revoke": "revoke one credential (--credential) or all, disconnecting their sessions",
    }
    revoke = person_actions(actions, helps)["revoke"]
    revoke.add_argument("--credential", help="the credential's username (default: all)")


async def _cli(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    revoking = args.eap_command == "revoke"
    async with admin_session(config, dae=revoking) as (store, enforcer):
        pid = person_of(config, args)
        if not revoking:
            return credentials_json(pid, await list_credentials(store, pid))
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


def run_cli(config: Config, args: argparse.Namespace) -> int:
    """Run one eap command; print its JSON answer. Exit 2 on a usage problem (or an
    unknown credential), 1 when Redis is unavailable."""
    return run_json(config, f"citywifi eap {args.eap_command}", lambda: _cli(config, args))
