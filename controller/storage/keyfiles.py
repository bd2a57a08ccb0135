"""Key files under the data directory: the person-id key and the portal's cookie key.

Each is the configured value when there is one, else a random key generated once into a
0600 file; the first process to link the file wins, so the processes of one machine
agree. (The two loaders are kept as they were; issue 15 phase 2 makes them one.)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from controller.storage.datafiles import private_dir, write_private


def load_person_key(configured: str, data_dir: Path) -> bytes:
    """The person-id key: from config, else generated once into ``data_dir/person.key``."""
    if configured:
        return configured.encode()
    path = data_dir / "person.key"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        write_private(tmp, secrets.token_hex(32).encode())  # 0600 from the start
        try:
            os.link(tmp, path)  # atomic: the first process to create it wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def load_portal_key(configured: str, data_dir: Path) -> bytes:
    """``[portal] cookie_key``, else a key generated once into ``data_dir/portal.key``.

    Same scheme as ``load_person_key``: the first process to link the
    file wins, so several processes on one machine agree. Machines sharing a Redis behind
    one load balancer must be given the same ``cookie_key``.
    """
    if configured:
        return configured.encode()
    path = data_dir / "portal.key"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        write_private(tmp, secrets.token_hex(32).encode())  # 0600 from the start
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def load_key_file(path: Path) -> bytes:
    """A key kept only in a file (the report signing key): generated once into ``path``
    (0600, 32 random bytes as hex, the first process to link it wins), then read."""
    if not path.exists():
        private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        write_private(tmp, secrets.token_hex(32).encode())  # 0600 from the start
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()
