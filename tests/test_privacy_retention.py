"""PIPL Art. 19 retention, on a simulated clock: a person not seen for
[audit] phone_retention_days loses their phone profile cw:{pid}:p (it never expired
before), a person seen since keeps theirs; nothing of the expired person stays in Redis
without an expiry, and the audit log's day files past audit.retention_days are gone."""

from __future__ import annotations

from datetime import datetime

from controller.cli.serve import Controller
from controller.storage import keys
from tests.test_reports_helpers import SH, Clock, drain, use

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: city, clock, ctl


async def person_keys(ctl: Controller, pid: str) -> dict[str, int]:
    """Every Redis key naming the person, with its TTL (-1: never expires)."""
    assert ctl.store is not None
    redis = ctl.store.redis
    found = {}
    async for key in redis.scan_iter(match=f"*{pid}*"):
        name = key.decode() if isinstance(key, bytes) else key
        found[name] = await redis.ttl(name)
    return found


async def test_profiles_are_purged_at_the_end_of_their_retention(
    ctl: Controller, clock: Clock
) -> None:
    assert ctl.config.audit.phone_retention_days == 180
    clock.set(datetime(2025, 11, 10, 12, 0, tzinfo=SH))
    gone = await use(ctl, "A", "station", 600, "a1")
    kept = await use(ctl, "B", "hospital", 600, "b1", mac="AA-BB-CC-00-00-02")
    await drain(ctl)
    clock.set(datetime(2026, 3, 1, 12, 0, tzinfo=SH))  # B comes back
    assert kept == await use(ctl, "B", "hospital", 300, "b2", mac="AA-BB-CC-00-00-02")
    await drain(ctl)
    assert keys.profile(gone) in await person_keys(ctl, gone)
    assert (await person_keys(ctl, gone))[keys.profile(gone)] == -1  # kept for ever, so far
    assert ctl.archiver is not None and ctl.store is not None

    clock.set(datetime(2026, 5, 9, 11, 0, tzinfo=SH))  # 180 days minus an hour: not yet
    ctl.archiver._last_purge = float("-inf")
    await ctl.archiver.purge_if_due()
    assert keys.profile(gone) in await person_keys(ctl, gone)

    clock.set(datetime(2026, 5, 9, 12, 0, 1, tzinfo=SH))  # 180 days and a second
    ctl.archiver._last_purge = float("-inf")
    await ctl.archiver.purge_if_due()
    left = await person_keys(ctl, gone)
    assert keys.profile(gone) not in left
    assert all(ttl > 0 for ttl in left.values()), left  # the rest expires by itself
    assert await ctl.store.person_phone(gone) is None
    assert await ctl.store.person_phone(kept) == "+8613800138002"
    index = await ctl.store.redis.zrange(keys.PROFILE_INDEX, 0, -1)
    assert [m.decode() for m in index] == [kept]

    # the audit log's files of those days are past audit.retention_days (60) as well
    ctl.archiver.trim(clock())
    audit_days = sorted(p.name for p in (ctl.archive.root / "audit").iterdir())
    assert audit_days == []  # 2025-11-10 and 2026-03-01 are both older than 60 days
