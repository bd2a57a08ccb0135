"""When the archiver writes (issue 16 item 3, "records written in large batches"): a
drain ends with the first round that was not full, even while entries keep arriving,
and the background loop gathers entries for ``[reports] archive_gather`` seconds unless a full round
waits, and drains whatever waits when it stops. Real redis-server, real archive files.

Before, a drain went on while its last round found anything: under steady traffic it
wrote a file every few dozen ms of a few dozen rows, ~15 times the CPU per record of
full rounds (``bench.archive_bench --steady``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.config import load_config
from controller.services import archiver as archiver_mod
from controller.services.archiver import Archiver
from controller.storage.archive import Archive
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from tests.support.redis_proc import RedisProcess, until

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_795_579_200  # 2026-11-25 12:00 Asia/Shanghai


def login(i: int) -> dict[str, str]:
    return {
        "k": "login",
        "t": str(NOW + i),
        "pid": f"{i:020x}",
        "mac": "AA-BB-CC-DD-EE-01",
        "client": "nas",
        "nas_id": "ap-1",
        "nas_ip": "10.0.0.1",
        "ap": "AA-BB-CC-00-00-01:CityWiFi",
        "venue": "v1",
        "result": "accept",
    }


async def add(store: Store, first: int, count: int) -> None:
    for i in range(first, first + count):
        await store.outbox_add(login(i))


def archived(archive: Archive) -> list[str]:
    """The record times of every archived login row, sorted."""
    if not list(archive.root.glob("audit/*/*.parquet")):
        return []
    pattern = str(archive.root / "audit" / "*" / "*.parquet")
    rows = archive.query("SELECT time FROM read_parquet(?) ORDER BY 1", [pattern])
    return [str(t) for (t,) in rows]


@pytest.fixture
def parts(redis_proc: RedisProcess, tmp_path: Path) -> Iterator[tuple[Store, Archive, Any]]:
    config = load_config(ROOT / "deploy" / "citywifi.example.toml")
    config = replace(config, quota=replace(config.quota))
    yield Store(client_from_url(redis_proc.url)), Archive(tmp_path / "archive"), config


async def test_a_drain_ends_with_its_first_round_that_was_not_full(
    parts: tuple[Store, Archive, Any],
) -> None:
    store, archive, config = parts
    await store.load_scripts()
    archiver = Archiver(store, archive, lambda: config, clock=lambda: NOW + 60.0)
    await add(store, 0, 5)
    done = store.outbox_done
    arrivals = 0

    async def arriving(ids: Any, marks: Any) -> None:
        """Entries keep arriving while rounds are written (steady traffic)."""
        nonlocal arrivals
        await done(ids, marks)
        if arrivals < 20:
            arrivals += 1
            await add(store, 100 + 3 * arrivals, 3)

    store.outbox_done = arriving  # type: ignore[method-assign]
    try:
        assert await archiver.drain() == 5  # the 3 that came meanwhile wait for the next
        assert await store.outbox_backlog() == 3
        assert len(archived(archive)) == 5
    finally:
        store.outbox_done = done  # type: ignore[method-assign]
        await store.close()


async def test_the_loop_gathers_until_a_full_round_waits_and_drains_at_stop(
    parts: tuple[Store, Archive, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, archive, config = parts
    await store.load_scripts()
    monkeypatch.setattr(archiver_mod, "ROUND", 10)
    config = replace(config, reports=replace(config.reports, archive_gather=60.0))
    archiver = Archiver(store, archive, lambda: config, clock=lambda: NOW + 60.0, interval=0.01)
    looks = 0
    backlog = store.outbox_backlog

    async def counted() -> int:
        nonlocal looks
        looks += 1
        return await backlog()

    store.outbox_backlog = counted  # type: ignore[method-assign]
    try:
        archiver.start()  # its first pass drains (nothing there yet)
        await until(lambda: looks >= 2, what="the loop's first pass")
        await add(store, 0, 3)
        seen = looks
        await until(lambda: looks >= seen + 6, what="three more passes of the loop")
        assert archived(archive) == []  # fewer than a round, gather not over: still in Redis
        assert await backlog() == 3
        await add(store, 3, 7)  # now a full round waits
        await until(lambda: len(archived(archive)) == 10, what="the full round archived")
        await add(store, 10, 2)
        await archiver.stop()  # the last drain takes what waits, gathered or not
        assert len(archived(archive)) == 12
        assert await backlog() == 0
    finally:
        store.outbox_backlog = backlog  # type: ignore[method-assign]
        await archiver.stop()
        await store.close()
