"""The one error family of the requests citywifi refuses: a stable ``code`` (the
``error`` member of every JSON error body and the key of the portal's message
catalogues), the HTTP status to answer with (a hint, as h11's ``ProtocolError`` carries
its ``error_status_hint``: the services know no HTTP, the web layer renders it), a
message for people, an optional ``Retry-After`` (RFC 9110 §10.2.3) and the values a
message needs.

The portal (``PortalError``), the admin actions (``AdminError``) and the web routes of
reports and audit raise it; ``controller.web.errors`` renders every one of them, and
maps the errors of the layers below (``StoreUnavailable``, ``PeriodError``) to it at
that one boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RequestError(Exception):
    """A request refused: ``code``, ``status``, ``message``, ``retry_after`` (seconds),
    extra response ``headers`` (``WWW-Authenticate``) and ``values`` for the message."""

    def __init__(
        self,
        code: str,
        status: int = 400,
        message: str = "",
        *,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
        **values: Any,
    ) -> None:
        super().__init__(message or code)
        self.code = code
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.headers: dict[str, str] = dict(headers or {})
        self.values = values

    def response_headers(self) -> dict[str, str]:
        """``headers`` and, when there is one, ``Retry-After``."""
        if self.retry_after is None:
            return dict(self.headers)
        return {**self.headers, "Retry-After": str(self.retry_after)}
