"""One worker of ``citywifi serve --workers N``: a whole controller on the shared ports,
started by the supervisor (``controller.cli.supervisor``) as ``python -m
controller.cli.worker``; it tells the supervisor on its ready pipe that it serves, or why
it could not start."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import os
import signal
import sys
from pathlib import Path

import structlog

from controller.cli import logs
from controller.cli.runtime import run
from controller.cli.serve import run_forever
from controller.cli.startup import EXIT_CONFIG, EXIT_SOFTWARE, explain
from controller.cli.supervisor import PR_SET_PDEATHSIG, READY_FD_ENV, SUPERVISOR_ENV, WORKER_ENV
from controller.config import ConfigError, load_config

log = structlog.get_logger("citywifi.supervisor")


def _die_with_supervisor(supervisor: int) -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if supervisor and os.getppid() != supervisor:  # it died before prctl took effect
        raise SystemExit(1)


def worker_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citywifi-worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--auth-port", required=True, type=int)
    parser.add_argument("--acct-port", required=True, type=int)
    parser.add_argument("--http-port", required=True, type=int)
    args = parser.parse_args(argv)

    _die_with_supervisor(int(os.environ.get(SUPERVISOR_ENV, "0")))
    ready_fd = int(os.environ.get(READY_FD_ENV, "-1"))

    def tell(line: str) -> None:
        """One line to the supervisor on the ready pipe (written once, then closed)."""
        nonlocal ready_fd
        if ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(ready_fd, (line.replace("\n", " ")[:3000] + "\n").encode())
                os.close(ready_fd)
            ready_fd = -1

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        tell(f"F{EXIT_CONFIG} " + "; ".join(str(p) for p in exc.problems))
        return EXIT_CONFIG
    config = dataclasses.replace(
        config,
        radius=dataclasses.replace(
            config.radius, auth_port=args.auth_port, acct_port=args.acct_port
        ),
        http=dataclasses.replace(config.http, port=args.http_port),
    )
    logs.configure_logging(config.log)
    structlog.contextvars.bind_contextvars(worker=int(os.environ.get(WORKER_ENV, "0")))
    try:
        first = os.environ.get(WORKER_ENV, "0") == "0"  # owns the NAT-log listener's ports
        run(run_forever(config, reuse_port=True, on_ready=lambda _: tell("R"), natlog_owner=first))
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        error = explain(exc, config)
        if error is None:
            tell(f"F{EXIT_SOFTWARE} {type(exc).__name__}: {exc}")
            raise
        log.error("serve.start_failed", error=str(error), exit_code=error.exit_code)
        tell(f"F{error.exit_code} {error}")
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
