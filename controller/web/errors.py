"""The one place where a refused or failed request becomes an answer: the ``errors``
middleware and the JSON error renderer.

Every route raises ``RequestError`` (``controller.services.errors``; the portal's
``PortalError`` and the admin's ``AdminError`` are ones) and never renders an error
itself. The middleware maps, at this one boundary (as httpcore maps a library's
exceptions to its own in ``_exceptions.py``):

- ``RequestError``: as it is;
- ``StoreUnavailable`` (Redis not answering): 503 ``store_unavailable``, logged;
- ``PeriodError`` (a date or range of a report or export the caller must fix): 400 with
  its code;
- a body over ``client_max_size``: 413 ``too_large``; one that does not parse as HTTP
  says: 400 ``bad_request``;
- anything else: 500 ``internal``, logged once with its traceback, and nothing of it in
  the answer.

aiohttp's own answers (redirects, the router's 404 and 405) pass through untouched, and
so does ``BodyTimeout`` (``controller.web.http_edge`` answers it and closes).

Which renderer draws the answer depends on the route's kind: the JSON body documented
in docs/openapi.yaml, ``{"error": code, "message": text}`` (``render_json``), unless the
route was marked with ``renders_errors`` (the portal's pages draw an HTML page in the
visitor's language, its JSON API translates the message).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from controller.domain.periods import PeriodError
from controller.services.errors import RequestError
from controller.storage.store import StoreUnavailable

log = structlog.get_logger("citywifi.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Renderer = Callable[[web.Request, RequestError], web.StreamResponse]
H = TypeVar("H", bound=Callable[..., Any])

STORE_UNAVAILABLE: Final = "store_unavailable"


class BodyTimeout(asyncio.TimeoutError):
    """Raised into a request's body stream when the body did not arrive in time (a
    TimeoutError, so that aiohttp's lingering read after the answer ends quietly);
    ``controller.web.http_edge.body_deadline`` answers it."""


_RENDERER: Final = "__citywifi_error_renderer__"


def render_json(
    request: web.Request | None,
    error: RequestError,
    *,
    message: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> web.Response:
    """The documented JSON error: ``{"error": code, "message": text}`` (and ``extra``
    members), with the error's status and headers (``Retry-After``, ``WWW-Authenticate``)."""
    text = message or error.message or error.code  # never an empty message
    body: dict[str, object] = {"error": error.code, "message": text}
    body.update(extra or {})
    return web.Response(
        status=error.status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=error.response_headers(),
    )


def renders_errors(renderer: Renderer) -> Callable[[H], H]:
    """Mark a handler whose errors ``renderer`` draws instead of ``render_json``."""

    def mark(handler: H) -> H:
        setattr(handler, _RENDERER, renderer)
        return handler

    return mark


def renderer_of(request: web.Request) -> Renderer:
    """The renderer of the route ``request`` matched (``render_json`` by default)."""
    found = getattr(request.match_info.handler, _RENDERER, None)
    return found if callable(found) else render_json


def as_request_error(request: web.Request, exc: Exception) -> RequestError:
    """The ``RequestError`` an exception of a handler is answered with (see above)."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, StoreUnavailable):
        log.warning("http.store_unavailable", path=request.path, error=str(exc))
        return RequestError(STORE_UNAVAILABLE, 503, "Redis is not answering; retry")
    if isinstance(exc, PeriodError):
        return RequestError(exc.code, 400, exc.message)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return RequestError("too_large", 413, "the request body is too large")
    if isinstance(exc, HttpProcessingError):
        return RequestError("bad_request", 400, "the request could not be read", field="body")
    log.exception("http.internal_error", method=request.method, path=request.path)
    return RequestError("internal", 500, "internal error; please try again later")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error of every route, rendered once (see the module docstring)."""
    try:
        return await handler(request)
    except BodyTimeout:
        raise
    except web.HTTPRequestEntityTooLarge as exc:
        error = as_request_error(request, exc)
    except web.HTTPException:
        raise
    except Exception as exc:
        error = as_request_error(request, exc)
    return renderer_of(request)(request, error)
