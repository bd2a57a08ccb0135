"""Sending SMS codes: ``file`` (development: one JSON line per message) and ``webhook``
(HTTPS POST of JSON to an SMS gateway, with configured headers, timeout and retries).

Both write the same message object ``{"to": E.164, "text": …, "sent_at": ISO-8601}``.
A delivery that fails after all retries raises ``PortalError("sms_failed", 503)`` (the
person is asked to try again) and is counted in ``citywifi_portal_sms_total``. Numbers
and texts are never logged.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Protocol

import aiohttp
import structlog
from prometheus_client import Counter

from controller.config import SmsSettings
from controller.services.portal.errors import PortalError
from controller.storage.datafiles import append_private
from radius.tally import TALLY

log = structlog.get_logger("citywifi.portal")

SMS_SENT = Counter(
    "citywifi_portal_sms_total",
    "SMS codes handed to the SMS backend, by backend and result (ok, failed, retried)",
    ["backend", "result"],
)


def message(to: str, text: str, sent_at: datetime) -> dict[str, str]:
    return {"to": to, "text": text, "sent_at": sent_at.isoformat(timespec="seconds")}


class SmsSender(Protocol):
    backend: str

    async def send(self, to: str, text: str, sent_at: datetime) -> None: ...

    async def close(self) -> None: ...


class FileSms:
    """Appends ``message`` JSON lines to ``path`` (created with its directory).

    Messages sent while a write is under way are written together by the next one (one
    thread hop and one ``write`` for the lot), so a burst of logins does not queue up
    behind one file append each."""

    backend = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: list[tuple[str, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    def _append(self, lines: list[str]) -> None:
        append_private(self.path, "".join(lines).encode())  # phone numbers: 0600

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._append, [line for line, _ in batch])
            except OSError as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def send(self, to: str, text: str, sent_at: datetime) -> None:
        line = json.dumps(message(to, text, sent_at), ensure_ascii=False) + "\n"
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((line, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_pending())
        try:
            await done
        except OSError as exc:
            SMS_SENT.labels(self.backend, "failed").inc()
            TALLY.city("sms:failed")  # to Redis, for the console
            log.error("portal.sms_failed", backend=self.backend, error=exc.strerror)
            raise PortalError("sms_failed", 503) from exc
        SMS_SENT.labels(self.backend, "ok").inc()
        TALLY.city("sms:ok")  # to Redis, for the console

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.wait([self._writer], timeout=5)


class WebhookSms:
    """POSTs ``message`` as JSON to ``url``; a 2xx answer is delivery, anything else
    (status, timeout, connection error) is retried ``retries`` times with backoff."""

    backend = "webhook"

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        timeout: float,
        retries: int,
        *,
        backoff: float = 0.5,
    ) -> None:
        self.url = url
        self.headers = headers
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.retries = retries
        self.backoff = backoff
        self._session: aiohttp.ClientSession | None = None

    async def send(self, to: str, text: str, sent_at: datetime) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        body = message(to, text, sent_at)
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                SMS_SENT.labels(self.backend, "retried").inc()
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                async with self._session.post(self.url, json=body, headers=self.headers) as r:
                    await r.read()
                    if 200 <= r.status < 300:
                        SMS_SENT.labels(self.backend, "ok").inc()
                        TALLY.city("sms:ok")  # to Redis, for the console
                        return
                    error = f"HTTP {r.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = type(exc).__name__
        SMS_SENT.labels(self.backend, "failed").inc()
        TALLY.city("sms:failed")  # to Redis, for the console
        log.error("portal.sms_failed", backend=self.backend, error=error, attempts=attempt + 1)
        raise PortalError("sms_failed", 503)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def make_sender(settings: SmsSettings) -> SmsSender:
    if settings.backend == "webhook":
        return WebhookSms(
            settings.webhook_url,
            dict(settings.webhook_headers),
            settings.webhook_timeout,
            settings.webhook_retries,
        )
    return FileSms(settings.path)
