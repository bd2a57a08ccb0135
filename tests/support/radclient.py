"""Drive FreeRADIUS's ``radclient`` (Debian freeradius-utils) against our server."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

RADCLIENT = shutil.which("radclient") or "/usr/bin/radclient"


@dataclass
class RadReply:
    code: str | None  # "Access-Accept", ... or None when nothing came back
    attrs: dict[str, list[str]] = field(default_factory=dict)
    output: str = ""

    def first(self, name: str) -> str | None:
        values = self.attrs.get(name)
        return values[0] if values else None


def radclient(
    port: int,
    kind: str,
    secret: str,
    attrs: dict[str, str | int],
    *,
    timeout: float = 1.0,
    retries: int = 1,
    message_authenticator: bool = True,
) -> RadReply:
    """Send one request (``kind`` = auth | acct | status); return what came back."""
    lines = [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in attrs.items()]
    if message_authenticator and kind in ("auth", "status"):
        lines.append("Message-Authenticator = 0x00")
    proc = subprocess.run(
        [
            RADCLIENT,
            "-x",
            "-r",
            str(retries),
            "-t",
            str(timeout),
            f"127.0.0.1:{port}",
            kind,
            secret,
        ],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = proc.stdout + proc.stderr
    reply = RadReply(None, {}, out)
    in_reply = False
    for line in out.splitlines():
        m = re.match(r"Received (\S+) Id", line)
        if m:
            reply.code, in_reply = m.group(1), True
            continue
        if in_reply and line.startswith(("\t", " ")) and " = " in line:
            name, _, value = line.strip().partition(" = ")
            reply.attrs.setdefault(name, []).append(value.strip('"'))
        elif in_reply and not line.startswith(("\t", " ")):
            in_reply = False
    return reply
