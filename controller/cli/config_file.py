"""Where a command finds its config file and how it reads it: ``--config FILE``, else
``$CITYWIFI_CONFIG``, else ``/etc/citywifi/citywifi.toml``; an invalid file ends the
command with every problem printed, one per line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from controller.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    config_path,
    load_config,
)

CONFIG_HELP = f"the config file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH} if it exists)"


def resolve_config(args: argparse.Namespace) -> str | None:
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


def load_or_none(path: Path) -> Config | None:
    """The config, or None once every problem is printed (one per line, on stderr)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def load_or_exit(path: Path, exit_code: int = 1) -> Config:
    config = load_or_none(path)
    if config is None:
        raise SystemExit(exit_code)
    return config


def add_no_drain(parser: argparse.ArgumentParser) -> None:
    """``--no-drain``, for the commands that read the archive (reports, audit)."""
    parser.add_argument(
        "--no-drain",
        action="store_true",
        help="do not drain the Redis outbox first (read the archive as it is)",
    )
