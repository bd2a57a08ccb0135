"""The ``citywifi`` command: serve, check-config, issue-login (and report, audit, admin).

Every command that reads a config takes ``--config FILE``, else ``$CITYWIFI_CONFIG``,
else ``/etc/citywifi/citywifi.toml`` (``config_file``). ``serve`` ends with one line and
an exit code from ``controller.cli.startup`` when it cannot start, and speaks systemd's
notify protocol (``controller.cli.systemd``) when run under ``Type=notify``. The
commands themselves live in their own modules: ``serve`` (the composition root and the
``serve`` command), ``supervisor`` (``--workers N``), ``logins``, ``reports``, ``admin``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed
from pathlib import Path

import controller
from controller.cli import admin, eap, logins, natlog, persons, reports, test_login, trace, users
from controller.cli.config_file import CONFIG_HELP, load_or_exit, resolve_config
from controller.cli.startup import EXIT_USAGE, explain
from controller.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    ConfigError,
    check_config,
)


def version() -> str:
    try:
        return installed("citywifi")
    except PackageNotFoundError:  # run from a source tree
        return controller.__version__


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
    logins.add_parser(sub)  # issue-login
    reports.add_commands(sub)  # report subsidy, audit export / trim / who
    natlog.add_commands(sub)  # natlog import / listen / trim
    admin.add_parser(sub)  # admin sessions | disconnect | block | unblock
    eap.add_parser(sub)  # eap list | revoke (EAP credentials, docs/eap.md)
    persons.add_parser(sub)  # person erase | export (PIPL)
    users.add_parser(sub)  # user add | passwd | disable | list (console accounts)
    test_login.add_parser(sub)  # test-login (radtest) and trace (radiusd -X of one client)
    trace.add_parser(sub)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    complaint = resolve_config(args)
    if complaint is not None:
        print(complaint, file=sys.stderr)
        return EXIT_USAGE
    if args.command == "check-config":
        return cmd_check_config(args.file)
    if args.command == "issue-login":
        return _redis_errors_in_one_line(
            args.command,
            lambda: logins.cmd_issue_login(args.config, args.phone, args.mac, args.client),
        )
    if args.command in ("report", "audit"):
        return reports.run(args)
    if args.command == "natlog":
        return natlog.run(args)
    if args.command == "admin":
        return admin.run_cli(load_or_exit(args.config), args)
    if args.command == "eap":
        return eap.run_cli(load_or_exit(args.config), args)
    if args.command == "person":
        return persons.run_cli(load_or_exit(args.config), args)
    if args.command == "user":
        return users.run_cli(load_or_exit(args.config), args)
    if args.command == "test-login":
        return test_login.run_cli(load_or_exit(args.config), args)
    if args.command == "trace":
        return trace.run_cli(load_or_exit(args.config), args)
    if args.command == "serve" and args.workers is not None and args.workers < 1:
        print("citywifi serve: --workers must be at least 1", file=sys.stderr)
        return 2
    # imported here for start-up cost: only `serve` needs the RADIUS and HTTP stack
    # (aiohttp, jinja2, every route: about half a second); the other commands never load it
    from controller.cli.serve import cmd_serve

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
