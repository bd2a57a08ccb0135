"""The portal's refusals: ``PortalError``, a ``RequestError`` whose message comes from the
catalogues (``error.<code>``, filled with its values), and the codes that get a page of
their own."""

from __future__ import annotations

from typing import Any

from controller.services.errors import RequestError


class PortalError(RequestError):
    """A request the portal refuses; ``code`` names the message in the catalogues."""

    def __init__(
        self,
        code: str,
        status: int = 400,
        *,
        retry_after: int | None = None,
        **values: Any,
    ) -> None:
        super().__init__(code, status, retry_after=retry_after, **values)


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
