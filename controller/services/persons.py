"""A person's rights over their personal information (PIPL Art. 45 access and copy,
Art. 47 deletion; docs/audit.md, "Personal data and retention").

- ``erase``: the admin deletes a person's personal records in Redis (the phone profile
  that binds the number to the person id, remembered devices and the MAC memory,
  unused credentials, EAP credentials, pending SMS codes and rate-limit logs, the
  portal's memory of them). Open sessions are not disconnected and are accounted to the
  end, but nothing lets the person back in without a new SMS check. The anonymous usage
  stays for the settlement (day counters and session records keyed by the pseudonymous
  person id until they expire, the ledger rows of the archive), and so do the audit
  rows the law makes the operator keep (MPS Order 82 Art. 13), until
  ``audit.retention_days`` deletes them (PIPL Art. 47 §2). The erasure is itself
  recorded in the audit-export log, by person id, never the number.
- ``export``: the person's own records as one JSON document (their number in clear:
  it is their copy), EAP credentials by metadata only (never the hash).

One set of functions serves the command line (``citywifi person``) and the admin API
(``POST /api/v1/admin/erase``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import structlog

from controller.config import Config
from controller.domain import quota
from controller.domain.audit import oldest_kept_day
from controller.services import audit
from controller.storage.archive import Archive
from controller.storage.eap_credentials import EapCredentialStore
from controller.storage.store import Store

log = structlog.get_logger("citywifi.persons")

EXPORT_FORMAT = "citywifi-person-export/1"


def _iso(epoch: int | None, config: Config) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, config.quota.timezone).isoformat()


async def erase(
    store: Store, archive: Archive, config: Config, pid: str, *, who: str, now: float
) -> dict[str, Any]:
    """Delete the person's personal records (module docstring); record the erasure."""
    removed = await store.erase_person(pid)
    entry = {
        "query": "erase",
        "who": who,
        "at": datetime.fromtimestamp(now, config.quota.timezone).isoformat(),
        "person_ids": [pid],
        "removed": dict(sorted(removed.items())),
    }
    await asyncio.to_thread(archive.append_export_log, entry)
    log.info("privacy.erased", person=pid, who=who, removed=entry["removed"])
    return {
        "person": pid,
        "erased": entry["removed"],
        "kept": {
            "usage": "day counters and session records keyed by the person id, until they"
            " expire (3 days); ledger rows of the archive (no number)",
            "audit_log_days": config.audit.retention_days,
        },
    }


async def export(
    store: Store,
    archive: Archive,
    config: Config,
    phone: str,
    pid: str,
    *,
    who: str,
    now: float,
) -> dict[str, Any]:
    """The person's own records: profile, remembered devices, today's usage, open
    sessions, archived sessions and logins within the audit retention, EAP credential
    metadata."""
    tz = config.quota.timezone
    day = quota.local_day(int(now), tz)
    records = await store.person_records(pid)
    used = await store.used_on(pid, quota.day_key(day))
    open_sessions = await store.open_sessions(pid)
    credentials = await EapCredentialStore(store.redis).for_person(pid)
    since = quota.day_start(oldest_kept_day(now, tz, config.audit.retention_days), tz)
    q = audit.AuditQuery(since=since, until=int(now) + 1, pid=pid, format="json")
    rows = await asyncio.to_thread(audit.query_records, archive, config, q, now)
    history = audit.export_rows(rows, tz)
    await asyncio.to_thread(
        archive.append_export_log,
        {
            "query": "person-export",
            "who": who,
            "at": datetime.fromtimestamp(now, tz).isoformat(),
            "person_ids": [pid],
            "records": len(history),
        },
    )
    log.info("privacy.exported", person=pid, who=who, records=len(history))
    return {
        "format": EXPORT_FORMAT,
        "generated": datetime.fromtimestamp(now, tz).isoformat(),
        "phone": phone,
        "person_id": pid,
        "profile": (
            {"phone": records.phone, "last_login": _iso(records.seen, config)}
            if records.phone
            else None
        ),
        "remembered_devices": {
            "cookies": [{"expires": _iso(e, config)} for _, e in records.device_tokens],
            "macs": [
                {"mac": mac, "expires": _iso(int(now) + ttl, config) if ttl > 0 else None}
                for mac, ttl in records.macs
            ],
        },
        "today": {
            "day": day.isoformat(),
            "used_seconds": used,
            "daily_seconds": config.quota.daily_seconds,
        },
        "open_sessions": [
            {
                "session": sid,
                "mac": r.get("mac", ""),
                "ip": r.get("ip", ""),
                "venue": r.get("venue", ""),
                "start": _iso(int(r.get("start") or 0), config),
                "session_time": int(r.get("seen") or 0),
            }
            for sid, r in sorted(open_sessions.items())
        ],
        "eap_credentials": [
            {
                "username": c.username,
                "label": c.label,
                "issued": _iso(c.issued_at, config),
                "expires": _iso(c.expires_at, config),
            }
            for c in credentials
        ],
        "records": history,
        "retention_days": {
            "audit_log": config.audit.retention_days,
            "phone_profile": config.audit.phone_retention_days,
            "nat_log": config.natlog.retention_days,
        },
    }
