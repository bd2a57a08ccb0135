"""``citywifi issue-login``: a one-time RADIUS login for a phone number (staff, kiosks),
bound to one NAS client and optionally to one device, on the same Redis as ``serve``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from controller.cli.config_file import load_or_exit
from controller.config import Config
from controller.domain.mac import normalize_mac
from controller.domain.phone import PhoneError, normalize_phone
from controller.services.logins import issue_login
from controller.storage.keyfiles import load_person_key
from controller.storage.redis_conn import connect_store, embedded_for


def add_parser(sub: Any) -> None:
    issue = sub.add_parser(
        "issue-login", help="issue a one-time RADIUS login for a phone number (staff, kiosks)"
    )
    issue.add_argument("--config", required=True, type=Path)
    issue.add_argument("--phone", required=True)
    issue.add_argument("--mac", default="", help="bind the credential to this device")
    issue.add_argument(
        "--client",
        default="",
        help="[[clients]] id of the NAS it will be used at (default: the only client)",
    )


def _issue_client(config: Config, client_id: str) -> str | None:
    """The client a staff credential is bound to: the one named, else the only one."""
    ids = [c.id for c in config.clients]
    if client_id in ids or (not client_id and len(ids) == 1):
        return client_id or ids[0]
    given = f"no [[clients]] entry {client_id!r}" if client_id else "several clients"
    choices = ", ".join(ids) if ids else "none configured"
    print(f"citywifi issue-login: --client: {given}; choose one of: {choices}", file=sys.stderr)
    return None


async def _issue_login(config: Config, phone: str, mac: str, client_id: str) -> dict[str, object]:
    embedded = embedded_for(config.redis)
    store = await connect_store(config, embedded)
    try:
        issued = await issue_login(
            store,
            phone_e164=phone,
            mac=mac,
            client_id=client_id,
            person_key=load_person_key(config.security.person_key, config.redis.data_dir),
            ttl=config.quota.login_ttl,
            now=int(time.time()),
        )
    finally:
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)  # only stops a server this command started
    return {
        "username": issued.username,
        "password": issued.password,
        "expires_in": issued.expires_in,
    }


def cmd_issue_login(config_path: Path, phone: str, mac: str, client: str = "") -> int:
    config = load_or_exit(config_path)
    try:
        e164 = normalize_phone(phone)
    except PhoneError as exc:
        print(f"citywifi issue-login: --phone: {exc}", file=sys.stderr)
        return 2
    norm_mac = ""
    if mac:
        norm_mac = normalize_mac(mac) or ""
        if not norm_mac:
            print(f"citywifi issue-login: --mac: not a MAC address: {mac!r}", file=sys.stderr)
            return 2
    client_id = _issue_client(config, client)
    if client_id is None:
        return 2
    print(json.dumps(asyncio.run(_issue_login(config, e164, norm_mac, client_id))))
    return 0
