"""The ``citywifi`` command and the processes it runs: ``main`` (parser and dispatch),
``serve`` (the composition root: it builds every resource and passes them down),
``supervisor`` and ``worker`` (``serve --workers N``), ``runtime`` (the event loop),
``startup`` (why serving could not begin, as an exit code), ``systemd`` (notify and
watchdog), ``logs``, and the commands ``logins``, ``reports``, ``admin``."""

from controller.cli.main import main

__all__ = ["main"]
