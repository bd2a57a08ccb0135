"""Why ``citywifi`` could not start: one line for the operator and an exit code for systemd.

A start-up failure is an operator's problem (a port taken, Redis down, a config with
placeholder secrets), not a bug: it gets one sentence naming what to fix, never a
traceback, and an exit code from ``sysexits.h``, which ``systemctl status`` spells out
(``status=71/OSERR``), so the unit's status says why it failed without the journal.
With ``--workers N`` a worker hands its reason to the supervisor over its ready pipe,
and the supervisor exits with that code and says which worker failed and why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from typing import Final

from controller.config import Config, ConfigError
from controller.config.redis_url import redact
from controller.storage.redis_embedded import EmbeddedRedisError
from controller.storage.store import StoreUnavailable

# sysexits.h; systemd names them in `systemctl status`
EXIT_USAGE: Final = 2  # argparse's own: a wrong command line
EXIT_UNAVAILABLE: Final = 69  # EX_UNAVAILABLE: Redis cannot be reached
EXIT_SOFTWARE: Final = 70  # EX_SOFTWARE: anything unforeseen (logged with its traceback)
EXIT_OSERR: Final = 71  # EX_OSERR: a socket could not be bound
EXIT_CONFIG: Final = 78  # EX_CONFIG: the config is invalid (check-config names each problem)


class StartupError(Exception):
    """Serving could not begin; ``str()`` is the one line to show, ``exit_code`` the status."""

    exit_code: int = EXIT_SOFTWARE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BindError(StartupError):
    """A listening socket could not be bound: which one, where, and the kernel's reason."""

    exit_code = EXIT_OSERR

    def __init__(self, what: str, host: str, port: int, kind: str, reason: str) -> None:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"cannot bind {what} to {where}/{kind}: {reason}")
        self.what, self.host, self.port, self.kind = what, host, port, kind


class RedisUnreachable(StartupError):
    exit_code = EXIT_UNAVAILABLE


def bind_reason(exc: OSError, host: str, port: int, kind: str) -> str:
    """The kernel's reason for a failed bind. uvloop raises "could not bind to local_addr"
    without an errno: the same bind is tried once with a plain socket to learn it."""
    code = exc.errno
    if code is None and port:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
        try:
            with socket.socket(family, sock_type) as probe:
                probe.bind((host, port))
        except OSError as again:
            code = again.errno
    if code is None:
        return str(exc) or type(exc).__name__
    hint = {
        errno.EADDRINUSE: f" (another process has it: `ss -l{kind[0]}np`)",
        errno.EACCES: " (a port below 1024 needs CAP_NET_BIND_SERVICE)",
        errno.EADDRNOTAVAIL: " (no interface of this machine has that address)",
    }.get(code, "")
    return f"{os.strerror(code).lower()}{hint}"


@contextlib.contextmanager
def binding(what: str, host: str, port: int, kind: str) -> Iterator[None]:
    """Turn the ``OSError`` of a bind inside the block into a ``BindError`` naming it."""
    try:
        yield
    except OSError as exc:
        raise BindError(what, host, port, kind, bind_reason(exc, host, port, kind)) from exc


def explain(exc: BaseException, config: Config | None = None) -> StartupError | None:
    """The operator's version of a start-up failure; None for a bug (keep its traceback)."""
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, ConfigError):
        return StartupError("; ".join(str(p) for p in exc.problems), EXIT_CONFIG)
    if isinstance(exc, StoreUnavailable | EmbeddedRedisError):
        where = "Redis"
        if config is not None and config.redis.url:
            where = f"Redis at {redact(config.redis.url)}"
        elif config is not None:
            where = f"the embedded Redis under {config.redis.data_dir / 'redis'}"
        fix = ""
        if isinstance(exc, StoreUnavailable) and config is not None:
            fix = f" (for {config.redis.startup_wait:g} s; is it running? redis.url)"
        return RedisUnreachable(f"{where} is unavailable: {exc}{fix}")
    if isinstance(exc, OSError):  # a data directory it may not write, a key file, …
        return StartupError(f"{type(exc).__name__}: {exc}", EXIT_OSERR)
    return None
