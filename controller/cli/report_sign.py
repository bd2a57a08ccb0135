"""``citywifi report public-key`` and ``citywifi report verify``: publish the city's
report signing key, and check a report file against it (docs/reports.md, Signatures).

``verify`` needs no config when given the published key (``--public-key``), so anyone the
city handed a report and its public key can check it; with ``--config`` it uses the
local key file's public half. Exit 0: valid; 1: invalid (edited, another key, unsigned);
2: unreadable file or key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.config import ConfigError, load_config
from controller.services.reports.signature import (
    SigningKeyError,
    UnreadableReport,
    Verdict,
    key_id,
    load_public_pem,
    public_pem,
    signing_key,
    verify,
)


def add_commands(rsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pub = rsub.add_parser("public-key", help="print the public key reports are signed with")
    pub.add_argument("--config", required=True, type=Path)
    pub.add_argument("--out", default="-", help="file to write (default: standard output)")
    check = rsub.add_parser("verify", help="check a report file's signature (json, csv, xlsx)")
    check.add_argument("file", type=Path)
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument("--public-key", type=Path, help="the published public key (PEM)")
    # dest is not "config": with --public-key no config is looked for (cli/config_file)
    source.add_argument("--config", dest="own_config", type=Path, help="this controller's key")


def _describe(v: Verdict) -> str:
    p = v.parameters
    what = (
        f"{p.get('report', '?')} report {p.get('from', '?')}..{p.get('to', '?')}, "
        f"group {p.get('group', '?')}, {p.get('timezone', '?')}"
    )
    head = "valid" if v.valid else "INVALID"
    key = f"key {v.key_id}" if v.key_id else "no key"
    lines = [f"{head}: {v.reason} ({v.format}, {key})", f"  {what}"]
    for name in (
        "method",
        "rates_yuan_per_hour",  # reports made before rate_versions
        "venue_caps_yuan_per_month",
        "operator_factors",
        "daily_allowance_seconds",
        "bill_beyond_allowance",
        "open_days",
    ):
        if name in p:
            lines.append(f"  {name}: {p[name]}")
    versions = p.get("rate_versions")
    for v in versions if isinstance(versions, list) else ():
        if isinstance(v, dict):
            since = v.get("effective") or "always"
            lines.append(
                f"  rates {v.get('version', '?')} (effective {since}) for "
                f"{v.get('from', '?')}..{v.get('to', '?')}: {v.get('rates_yuan_per_hour')}, "
                f"caps {v.get('venue_caps_yuan_per_month')}, "
                f"factors {v.get('operator_factors')}"
            )
    return "\n".join(lines)


def cmd_public_key(args: argparse.Namespace) -> int:
    try:
        key = signing_key(load_config(args.config))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except (SigningKeyError, OSError) as exc:
        print(f"citywifi report public-key: {exc}", file=sys.stderr)
        return 2
    pem = public_pem(key.public_key())
    if args.out == "-":
        sys.stdout.buffer.write(pem)
    else:
        Path(args.out).write_bytes(pem)
    print(f"key id {key_id(key.public_key())}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        if args.public_key is not None:
            public = load_public_pem(args.public_key.read_bytes())
        else:
            public = signing_key(load_config(args.own_config)).public_key()
        verdict = verify(args.file.read_bytes(), public)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (SigningKeyError, UnreadableReport, OSError, ValueError) as exc:
        print(f"citywifi report verify: {exc}", file=sys.stderr)
        return 2
    print(_describe(verdict))
    return 0 if verdict.valid else 1


def run(args: argparse.Namespace) -> int:
    if args.report_command == "public-key":
        return cmd_public_key(args)
    return cmd_verify(args)
