"""systemd's service notifications (sd_notify(3)): readiness, watchdog, stopping, status.

Under ``Type=notify`` systemd counts the service as started only when it says
``READY=1``: ``serve`` says it once the RADIUS and HTTP sockets are bound and Redis
answers (with workers: once every worker does), so ``systemctl start`` waits for a
working service, and fails with the reason when it cannot start. With ``WatchdogSec=``
the event loop sends ``WATCHDOG=1`` every third of the period; a loop that stops
turning (a hang) stops the pings, and systemd kills and restarts the service.

The protocol is one datagram of ``KEY=value`` lines to the unix socket named by
``$NOTIFY_SOCKET`` (``@`` for the abstract namespace): a few lines of our own rather
than a dependency. Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
The variables are removed from the environment once read, as ``sd_notify`` does with
``unset_environment``, so that the workers and the embedded redis-server, which
systemd would not accept messages from (``NotifyAccess=main``), never try.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import MutableMapping

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    def __init__(self, address: str = "", watchdog_usec: int = 0) -> None:
        self.address = address
        self.watchdog_interval = watchdog_usec / 3e6 if watchdog_usec > 0 else 0.0
        self._sock: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read (and remove) ``$NOTIFY_SOCKET`` and the watchdog period meant for us."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        for name in NOTIFY_VARIABLES:
            env.pop(name, None)
        watchdog = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0
        return cls(address if address.startswith(("/", "@")) else "", watchdog)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """One notification (``READY=1``, ``STATUS=…``); False when it could not be sent."""
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # a full queue drops a ping, never stalls the loop
            self._sock.sendto("\n".join(fields).encode(), target)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: finishing in-flight requests")

    def start_watchdog(self) -> asyncio.Task[None] | None:
        """Ping from the running loop for as long as it turns (None: no watchdog asked)."""
        if not self.address or not self.watchdog_interval:
            return None
        return asyncio.get_running_loop().create_task(self._watchdog(), name="sd-watchdog")

    async def _watchdog(self) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
