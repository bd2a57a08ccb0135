"""Personal-data retention (PIPL Art. 19: a handler deletes personal information once its
retention period ends).

The phone profile ``cw:{pid}:p`` (the verified number, for the audit duty and remembered
devices) used to live for ever. Every login now records the person in an index with the
time (the injected clock), and the archiver's upkeep deletes the profiles of persons not
seen for ``[audit] phone_retention_days``; a person who logs in again is a fresh profile.
What else a person leaves in Redis expires by itself (credentials, day counters,
sessions, remembered devices: their TTLs), and the audit log in the archive is trimmed
by ``[audit] retention_days`` (``services.audit.trim``). The usage ledger's rows (person
ids, no number) go after ``[privacy] usage_retention_days`` (``forget_usage``), their
per-venue figures staying for the settlement.
"""

from __future__ import annotations

from datetime import date

import structlog

from controller.config import Config
from controller.domain.audit import oldest_kept_day
from controller.storage.archive import QUARANTINE, Archive
from controller.storage.store import Store

log = structlog.get_logger("citywifi.privacy")

DAY = 86400


def profile_cutoff(config: Config, now: float) -> int:
    """Profiles last seen at or before this epoch are past their retention."""
    return int(now) - config.audit.phone_retention_days * DAY


async def purge_profiles(store: Store, config: Config, now: float) -> list[str]:
    """Delete the phone profiles past their retention; the person ids deleted."""
    gone = await store.purge_profiles(profile_cutoff(config, now))
    if gone:
        log.info(
            "privacy.profiles_purged",
            count=len(gone),
            retention_days=config.audit.phone_retention_days,
        )
    return gone


def forget_usage(archive: Archive, config: Config, now: float) -> list[date]:
    """Empty the ledger rows of sealed days past ``privacy.usage_retention_days``
    (blocking: DuckDB writes); the days done."""
    keep_from = oldest_kept_day(now, config.quota.timezone, config.privacy.usage_retention_days)
    done = [d for d in archive.days("sessions") if d < keep_from and archive.forget_ledger_rows(d)]
    if done:
        log.info(
            "privacy.usage_rows_forgotten",
            days=len(done),
            through=done[-1].isoformat(),
            retention_days=config.privacy.usage_retention_days,
        )
    return done


def trim_quarantine(archive: Archive, config: Config, now: float) -> list[str]:
    """Quarantined files (``<archive>/quarantine/<kind>/<day>/``: files DuckDB could not
    read, kept for an operator) hold the same personal data as their kind: deleted with
    the same retention, whole days. Returns ``kind/day`` of each day removed."""
    tz = config.quota.timezone
    retention = {
        "audit": config.audit.retention_days,
        "nat": config.natlog.retention_days,
        "sessions": config.privacy.usage_retention_days,
    }
    removed: list[str] = []
    for kind, days in retention.items():
        keep_from = oldest_kept_day(now, tz, days)
        gone = archive.trim(f"{QUARANTINE}/{kind}", keep_from)
        removed.extend(f"{kind}/{d.isoformat()}" for d in gone)
    if removed:
        log.info("privacy.quarantine_trimmed", days=len(removed))
    return removed
