"""Key files under the data directory: the person-id key and the portal's cookie key.

Each is the configured value when there is one, else a random key generated once into a
0600 file by ``load_key``, the one loader. Several processes (``serve --workers N``, a
CLI command next to the server) may start at once and must end up with the same key, so:

- the new key is written to a temporary file with a name no other process or thread can
  pick (``tempfile.mkstemp``: ``O_CREAT | O_EXCL``, mode 0600 from the start, whatever
  the umask);
- it is published with ``os.link``, which is atomic and, unlike ``rename``, never
  replaces a file that exists: the first process to link wins, every later one finds the
  winner's key and reads that. (A ``rename`` would let the second writer overwrite a key
  the first had already started to use.)
- the temporary file is removed either way, so a crash leaves at most a stray temporary
  file, never a half-written key under the real name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Final

from controller.storage.datafiles import private_dir

KEY_HEX_BYTES: Final = 32  # 256-bit keys, stored as 64 hex characters


def load_key(configured: str, path: Path) -> bytes:
    """``configured`` when it is set, else the key in ``path``, generated the first time.

    Safe when several processes create it at once: they all return the same key."""
    if configured:
        return configured.encode()
    if not path.exists():
        _create(path)
    return path.read_text().strip().encode()


def _create(path: Path) -> None:
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp: 0600, a name nobody else has
            f.write(secrets.token_hex(KEY_HEX_BYTES).encode())
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process linked first: theirs
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def load_person_key(configured: str, data_dir: Path) -> bytes:
    """``[security] person_key``, else ``data_dir/person.key`` (``load_key``)."""
    return load_key(configured, data_dir / "person.key")


def load_portal_key(configured: str, data_dir: Path) -> bytes:
    """``[portal] cookie_key``, else ``data_dir/portal.key`` (``load_key``). Machines
    sharing a Redis behind one load balancer must be given the same ``cookie_key``."""
    return load_key(configured, data_dir / "portal.key")
