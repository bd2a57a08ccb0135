"""Accounting sends a session's description only when Redis does not have it (issue 16).

A Start carries the session's descriptive fields; an Interim or Stop of a session this
process recorded is sent without them (``AccountingWrite.describe`` False: fewer
arguments for account.lua to take). When the record is not there after all (expired,
or first seen by another worker), account.lua writes nothing and answers
``{'fields'}``; the store repeats the write with them, on both the coroutine path
(``Store.account``) and the callback path (``Store.account_soon``). On a real
redis-server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.domain.state import AccountingWrite, SessionFields
from controller.storage import keys
from controller.storage.store import Store
from radius.attrs import AcctStatus
from tests.support.store_rig import StoreRig, store_rig

NOON = 1_795_579_200  # 2026-11-25 12:00 Asia/Shanghai
DAY = "20261125"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreRig]:
    with store_rig(Path(tmp_path_factory.mktemp("redis"))) as rig:
        yield rig


def write(pid: str, status: AcctStatus, reported: int, *, describe: bool) -> AccountingWrite:
    return AccountingWrite(
        pid=pid,
        sid="nas/f1",
        client_id="nas",
        status=status,
        reported=reported,
        event_time=NOON + reported,
        input_octets=reported,
        output_octets=reported,
        cause="",
        boundaries=[(NOON - 43200, DAY)],
        session=SessionFields(pid=pid, client="nas", acct_session_id="f1", mac="AA-BB", ap="ap1"),
        describe=describe,
    )


async def recorded(store: Store, pid: str) -> dict[str, str]:
    sid = keys.session_generation("nas/f1", 1)
    raw = await store.redis.hgetall(keys.session(pid, sid))
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_an_interim_of_a_recorded_session_leaves_its_description_as_it_was(
    rig: StoreRig,
) -> None:
    store, pid = rig.store, "f" * 20
    rig.run(store.account(write(pid, AcctStatus.START, 0, describe=True)))
    first = rig.run(recorded(store, pid))
    assert first["mac"] == "AA-BB" and first["ap"] == "ap1"
    interim = dataclasses.replace(
        write(pid, AcctStatus.INTERIM_UPDATE, 300, describe=False),
        session=SessionFields(pid=pid, ap="not sent"),
    )
    result = rig.run(store.account(interim))
    assert result.applied == 300
    after = rig.run(recorded(store, pid))
    assert after["ap"] == "ap1" and after["seen"] == "300"


@pytest.mark.parametrize("path", ["account", "account_soon"])
def test_an_undescribed_report_of_an_unknown_session_is_repeated_with_its_fields(
    rig: StoreRig, path: str
) -> None:
    store, pid = rig.store, ("g" if path == "account" else "h") * 20
    interim = write(pid, AcctStatus.INTERIM_UPDATE, 120, describe=False)

    async def once() -> int:
        if path == "account":
            return (await store.account(interim)).applied
        return (await store.account_soon(interim)).applied

    assert rig.run(once()) == 120  # counted once, on the repeat
    fields = rig.run(recorded(store, pid))
    assert fields["mac"] == "AA-BB" and fields["ap"] == "ap1" and fields["seen"] == "120"
    assert rig.run(once()) == 0  # a retransmission adds nothing
