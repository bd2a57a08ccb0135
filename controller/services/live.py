"""The config in force now, and the registry derived from it.

A SIGHUP reload (``controller.cli.serve.Controller.reload``) swaps both at once; the
portal, the HTTP routes and the archiver read them from here at each use, so they follow
a reload without holding the composition root. Built once per process.
"""

from __future__ import annotations

from controller.config import Config
from controller.domain.registry import Registry


class LiveConfig:
    """``config`` and ``registry``, swapped together by ``swap``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = Registry(config)

    def swap(self, config: Config) -> None:
        self.config, self.registry = config, Registry(config)
