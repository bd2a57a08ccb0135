"""The ``citywifi`` command: serve, check-config, issue-login (and report, audit, admin).

Every command that reads a config takes ``--config FILE``, else ``$CITYWIFI_CONFIG``,
else ``/etc/citywifi/citywifi.toml``. ``serve`` ends with one line and an exit code
from ``controller.startup`` when it cannot start, and speaks systemd's notify protocol
(``controller.systemd``) when run under ``Type=notify``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from controller.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    check_config,
    config_path,
    load_config,
)
from controller.domain.mac import normalize_mac
from controller.domain.phone import PhoneError, normalize_phone
from controller.startup import EXIT_CONFIG, EXIT_USAGE, explain
from controller.systemd import Notifier

CONFIG_HELP = f"the config file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH} if it exists)"


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("citywifi")
    except PackageNotFoundError:  # run from a source tree
        from controller import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citywifi",
        description="City free-WiFi controller: RADIUS, portal, quota.",
        epilog=f"Commands that read a config take --config FILE, else ${CONFIG_ENV}, "
        f"else {DEFAULT_CONFIG_PATH}.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
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
    check.add_argument("file", type=Path, nargs="?", help=CONFIG_HELP)
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
    from controller.services.admin import add_parser as add_admin_commands

    add_admin_commands(sub)  # admin sessions | disconnect | block | unblock
    for command in _commands(parser):  # one rule for where every command's config comes from
        for action in command._actions:
            if "--config" in action.option_strings:
                action.required, action.default, action.help = False, None, CONFIG_HELP
    return parser


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                yield command
                yield from _commands(command)


def _resolve_config(args: argparse.Namespace) -> str | None:
    """Fill in ``args.config`` (``args.file`` for check-config); the complaint if none."""
    name = "file" if args.command == "check-config" else "config"
    if not hasattr(args, name):
        return None
    path = config_path(getattr(args, name), os.environ)
    if path is None:
        return (
            f"citywifi {args.command}: no config: give --config FILE, set {CONFIG_ENV}, "
            f"or create {DEFAULT_CONFIG_PATH}"
        )
    setattr(args, name, path)
    return None


def _load(path: Path, exit_code: int = 1) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise SystemExit(exit_code) from None


def cmd_check_config(path: Path) -> int:
    found = check_config(path, warnings=True)
    for problem in found:
        print(problem, file=sys.stderr)
    problems = [p for p in found if not p.warning]
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    warned = len(found) - len(problems)
    print(f"{path}: OK" + (f" ({warned} warning(s))" if warned else ""))
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
    from controller.services.logins import issue_login
    from controller.storage.keyfiles import load_person_key
    from controller.storage.redis_conn import connect_store, embedded_for

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
    """Serve until SIGTERM; exit 0 then, else with ``controller.startup``'s code and line."""
    import structlog

    from controller.logs import configure_logging

    notifier = Notifier.from_environ()  # before any child process inherits $NOTIFY_SOCKET
    try:
        config = load_config(config_path)
    except ConfigError as exc:  # placeholder secrets included: serve refuses to start
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        notifier.status(f"failed: {len(exc.problems)} problem(s) in {config_path}")
        return EXIT_CONFIG
    configure_logging(config.log)
    log = structlog.get_logger("citywifi")
    for warning in config.warnings:
        log.warning("config.warning", problem=str(warning))
    if workers is None:
        from controller.supervisor import default_workers

        workers = default_workers()
    try:
        if workers > 1:
            from controller.supervisor import serve_workers

            return serve_workers(config, workers, notifier=notifier)
        from controller.runtime import run

        run(_serve_one(config, notifier))
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        error = explain(exc, config)
        if error is None:
            raise
        log.error("serve.start_failed", error=str(error), exit_code=error.exit_code)
        notifier.status(f"failed: {error}")
        return error.exit_code
    return 0


async def _serve_one(config: Config, notifier: Notifier) -> None:
    """``serve --workers 1``: one process; READY=1 once its sockets and Redis are up."""
    from controller.app import Controller, run_forever
    from controller.services.tasks import cancel_and_wait

    watchdog = notifier.start_watchdog()  # from the start: waiting for Redis takes a while

    def ready(controller: Controller) -> None:
        notifier.ready(
            f"serving: RADIUS auth {controller.auth_port}/udp, acct {controller.acct_port}/udp,"
            f" HTTP {controller.http_port}/tcp, "
            f"{'embedded' if controller.embedded else 'external'} Redis"
        )

    try:
        await run_forever(config, on_ready=ready, on_stopping=notifier.stopping)
    finally:
        await cancel_and_wait(watchdog)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    complaint = _resolve_config(args)
    if complaint is not None:
        print(complaint, file=sys.stderr)
        return EXIT_USAGE
    if args.command == "check-config":
        return cmd_check_config(args.file)
    if args.command == "issue-login":
        return _redis_errors_in_one_line(
            args.command, lambda: cmd_issue_login(args.config, args.phone, args.mac, args.client)
        )
    if args.command in ("report", "audit"):
        from controller.reports.cli import run as run_report_command

        return run_report_command(args)
    if args.command == "admin":
        from controller.services.admin import run_cli as run_admin_command

        return run_admin_command(_load(args.config), args)
    if args.command == "serve" and args.workers is not None and args.workers < 1:
        print("citywifi serve: --workers must be at least 1", file=sys.stderr)
        return 2
    return cmd_serve(args.config, args.workers)


def _redis_errors_in_one_line(command: str, run: Callable[[], int]) -> int:
    """A command that needs Redis says so in one line when it cannot reach it."""
    try:
        return run()
    except Exception as exc:
        error = explain(exc)
        if error is None or isinstance(exc, ConfigError):
            raise
        print(f"citywifi {command}: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
