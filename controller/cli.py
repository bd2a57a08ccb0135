"""The ``citywifi`` command: serve, check-config, issue-login."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

from controller.config import Config, ConfigError, check_config, load_config
from controller.mac import normalize_mac
from controller.phone import PhoneError, normalize_phone


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citywifi", description="City free-WiFi controller: RADIUS, portal, quota."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run RADIUS auth + accounting, portal and APIs")
    serve.add_argument("--config", required=True, type=Path)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the ports (default: one per CPU; 1: a single process)",
    )
    check = sub.add_parser("check-config", help="validate a config file; exit 1 if invalid")
    check.add_argument("file", type=Path)
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
    from controller.reports.cli import add_commands as add_report_commands

    add_report_commands(sub)  # report subsidy, audit export / trim
    from controller.admin import add_parser as add_admin_commands

    add_admin_commands(sub)  # admin sessions | disconnect | block | unblock
    return parser


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise SystemExit(1) from None


def cmd_check_config(path: Path) -> int:
    problems = check_config(path)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{path}: OK")
    return 0


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
    from controller.app import connect_store
    from controller.identity import load_person_key
    from controller.logins import issue_login
    from controller.redis_conn import embedded_for

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
    config = _load(config_path)
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


def cmd_serve(config_path: Path, workers: int | None = None) -> int:
    from controller.app import run_forever
    from controller.logs import configure_logging

    config = _load(config_path)
    configure_logging(config.log)
    with contextlib.suppress(KeyboardInterrupt):
        if workers is None:
            from controller.supervisor import default_workers

            workers = default_workers()
        if workers > 1:
            from controller.supervisor import serve_workers

            return serve_workers(config, workers)
        from controller.runtime import run

        run(run_forever(config))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check-config":
        return cmd_check_config(args.file)
    if args.command == "issue-login":
        return cmd_issue_login(args.config, args.phone, args.mac, args.client)
    if args.command in ("report", "audit"):
        from controller.reports.cli import run as run_report_command

        return run_report_command(args)
    if args.command == "admin":
        from controller.admin import run_cli as run_admin_command

        return run_admin_command(_load(args.config), args)
    if args.command == "serve" and args.workers is not None and args.workers < 1:
        print("citywifi serve: --workers must be at least 1", file=sys.stderr)
        return 2
    return cmd_serve(args.config, args.workers)


if __name__ == "__main__":
    sys.exit(main())
