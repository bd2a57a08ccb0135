"""Personal-data retention (PIPL Art. 19: a handler deletes personal information once its
retention period ends).

The phone profile ``cw:{pid}:p`` (the verified number, for the audit duty and remembered
devices) used to live for ever. Every login now records the person in an index with the
time (the injected clock), and the archiver's upkeep deletes the profiles of persons not
seen for ``[audit] phone_retention_days``; a person who logs in again is a fresh profile.
What else a person leaves in Redis expires by itself (credentials, day counters,
sessions, remembered devices: their TTLs), and the audit log in the archive is trimmed
by ``[audit] retention_days`` (``services.audit.trim``).
"""

from __future__ import annotations

import structlog

from controller.config import Config
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
