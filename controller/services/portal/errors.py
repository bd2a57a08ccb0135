"""The portal's one error family: a stable code for JSON bodies and message catalogues,
the HTTP status to answer with and the values the message needs (as h11's
``ProtocolError`` carries its ``error_status_hint``)."""

from __future__ import annotations

from typing import Any


class PortalError(Exception):
    """A request the portal refuses; ``code`` names the message in the catalogues."""

    def __init__(
        self,
        code: str,
        status: int = 400,
        *,
        retry_after: int | None = None,
        **values: Any,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.retry_after = retry_after
        self.values = values


# Failures that get a page of their own (the others re-show the login form with a note).
PAGE_ERRORS = frozenset(
    {
        "allowance_used_up",
        "device_limit",
        "blocked",
        "nas_required",
        "unknown_venue",
        "handoff_not_allowed",
        "bad_redirect",
        "unavailable",
    }
)
