"""Files and directories that hold citywifi's data, created owner-only whatever the umask.

The data directory holds phone numbers (the audit archive, the SMS file sink), the
keys that make person ids and sign cookies, and Redis's append-only file. Under systemd
``UMask=0077`` already keeps them private; run any other way (a shell with umask 022, a
container) they came out 0644 and 0755. Everything that creates such a file or directory
goes through here: files are created 0600 and directories 0700 (``open``/``mkdir`` can
only clear bits of the mode they are given, so no umask widens these), and the child
processes we start (the embedded redis-server writes its AOF itself) get ``PRIVATE_UMASK``.

A file or directory that exists already keeps its mode: an operator who loosened one on
purpose (a log shipper's group) is not overruled, and directories such as ``/var/lib``
above the data directory are never touched.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

PRIVATE_FILE: Final = 0o600
PRIVATE_DIR: Final = 0o700
PRIVATE_UMASK: Final = 0o077  # for child processes that create data files themselves


def private_dir(path: Path) -> Path:
    """``path`` as a directory; the components it creates (parents too) are 0700."""
    missing: list[Path] = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            os.mkdir(d, PRIVATE_DIR)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` creating the file 0600 (and its directory 0700) if it does not exist."""
    private_dir(path.parent)
    return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def append_private(path: Path, data: bytes) -> None:
    """Append ``data`` (``O_APPEND``: lines of concurrent writers don't interleave)."""
    fd = open_private(path, os.O_WRONLY | os.O_APPEND)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Replace the contents of ``path`` (created 0600)."""
    fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
