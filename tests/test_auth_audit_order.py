"""The audit record of an Access-Request is in Redis before its answer leaves (issue 6,
kept by issue 16's callback path and its commit that queues the record in the same call).

Real redis-server, real UDP, the in-process server. The auth endpoint's send is wrapped
so that, at the moment each answer is handed to the socket, a separate (blocking)
connection reads the outbox stream: the record of that very request must be there
already. Answering first and queueing after (or in the same tick, before the batch
left) fails this test deterministically: the batch is written only after the send.
A record that cannot be queued (the stream key of the wrong type) means no answer at
all, and the NAS's retransmission is answered once it can be.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from controller.cli.serve import Controller
from controller.storage import keys
from radius.attrs import Code
from tests.support.pyrad_client import set_pap
from tests.test_radius_integration import MAC, auth, client, login


def _blocking(ctl: Controller) -> Any:
    """A second, blocking client of the same Redis (or Cluster) as the server's store."""
    assert ctl.store is not None
    r = ctl.store.redis
    if isinstance(r, RedisCluster):
        node = r.get_default_node()
        return redis.RedisCluster(host=node.host, port=node.port)
    kw = r.connection_pool.connection_kwargs
    return redis.Redis(host=kw["host"], port=kw["port"], db=kw.get("db", 0))


def _text(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in fields.items()}


@pytest.fixture
async def outbox_at_send(controller: Controller) -> Any:
    """Per answer sent on the auth port: (its code, the outbox records in Redis then)."""
    assert controller.archiver is not None
    await controller.archiver.stop()  # the outbox keeps every record for the test to read
    sync = _blocking(controller)
    endpoint = controller.endpoints[0]
    assert endpoint.role == "auth"
    seen: list[tuple[int, list[dict[str, str]]]] = []
    send = endpoint._send

    def reading_first(data: bytes, addr: Any) -> None:
        records = [_text(f) for _, f in sync.xrange(keys.OUTBOX)]
        seen.append((data[0], [r for r in records if r.get("k") == "login"]))
        send(data, addr)

    endpoint._send = reading_first  # type: ignore[method-assign]
    yield seen
    endpoint._send = send  # type: ignore[method-assign]
    sync.close()


async def test_each_answer_leaves_after_its_audit_record(
    controller: Controller, outbox_at_send: list[tuple[int, list[dict[str, str]]]]
) -> None:
    seen = outbox_at_send
    unknown = await auth(controller, MAC, MAC)  # reject before the commit: record alone
    assert unknown.code == Code.ACCESS_REJECT
    issued = await login(controller)
    accepted = await auth(controller, issued.username, issued.password)  # the commit's record
    assert accepted.code == Code.ACCESS_ACCEPT
    again = await auth(controller, MAC, "")  # MAC re-authentication: owner, state, commit
    assert again.code == Code.ACCESS_ACCEPT
    used = await auth(controller, issued.username, issued.password, mac="AA-BB-CC-00-00-09")
    assert used.code == Code.ACCESS_REJECT  # decided on the state: record alone
    expected = [
        (Code.ACCESS_REJECT, "reject:unknown_device", ""),
        (Code.ACCESS_ACCEPT, "accept", issued.person),
        (Code.ACCESS_ACCEPT, "accept", issued.person),
        (Code.ACCESS_REJECT, "reject:credential_used", issued.person),
    ]
    assert len(seen) == len(expected)
    for n, ((code, records), (want_code, result, pid)) in enumerate(
        zip(seen, expected, strict=True)
    ):
        assert code == want_code
        assert len(records) == n + 1, f"answer {n} left before its audit record was queued"
        assert (records[-1]["result"], records[-1]["pid"]) == (result, pid)


async def test_concurrent_logins_over_the_device_limit_each_recorded_before_answered(
    controller: Controller, outbox_at_send: list[tuple[int, list[dict[str, str]]]]
) -> None:
    """Three devices of one person at once, max 2: the state reads may all see room (the
    commit then refuses the last, and its record is queued by that same call) or the last
    may see the others' holds; either way every answer leaves after its own record."""
    issued = await login(controller)
    first = await auth(controller, issued.username, issued.password)
    assert first.code == Code.ACCESS_ACCEPT
    macs = ("AA-BB-CC-00-02-01", "AA-BB-CC-00-02-02", "AA-BB-CC-00-02-03")
    assert controller.store is not None
    for mac in macs:  # remembered for the person, as a portal login on each would
        await controller.store.redis.set(keys.mac_owner(mac), issued.person)
    outbox_at_send.clear()
    replies = await asyncio.gather(*(auth(controller, mac, "", mac=mac) for mac in macs))
    codes = sorted(r.code for r in replies)
    assert codes == [Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_REJECT]  # 1 + 1 = 2
    assert len(outbox_at_send) == 3
    for code, records in outbox_at_send:
        mine = [r for r in records if r["mac"] in macs]
        results = sorted(r["result"] for r in mine)
        # this answer's record, and those of the answers sent before it, are queued
        assert len(mine) >= 1 + outbox_at_send.index((code, records))
        assert set(results) <= {"accept", "reject:device_limit"}
    final = outbox_at_send[-1][1]
    assert sorted(r["result"] for r in final if r["mac"] in macs) == [
        "accept",
        "reject:device_limit",
        "reject:device_limit",
    ]


@pytest.fixture
def outbox_unwritable(controller: Controller) -> Iterator[Any]:
    sync = _blocking(controller)
    sync.delete(keys.OUTBOX)
    sync.set(keys.OUTBOX, "not a stream")  # every XADD fails: WRONGTYPE
    yield sync
    sync.delete(keys.OUTBOX)
    sync.close()


async def test_no_answer_while_the_audit_record_cannot_be_queued(
    controller: Controller, outbox_unwritable: Any
) -> None:
    assert controller.archiver is not None
    await controller.archiver.stop()
    issued = await login(controller)
    async with client(controller) as c:
        req = c.auth_request(User_Name=issued.username, Calling_Station_Id=MAC)
        set_pap(req, issued.password)
        assert await c.request(req, timeout=1.0) is None  # the commit's call failed: no Accept
        assert await c.request(c.auth_request(User_Name=MAC), timeout=1.0) is None  # reject
        outbox_unwritable.delete(keys.OUTBOX)
        deadline = time.monotonic() + 10
        reply = None
        while reply is None and time.monotonic() < deadline:
            reply = await c.request(req, timeout=1.0)  # the NAS retransmits: a retry
        assert reply is not None and reply.code == Code.ACCESS_ACCEPT
    records = [_text(f) for _, f in outbox_unwritable.xrange(keys.OUTBOX)]
    assert [(r["result"], r["pid"]) for r in records] == [("accept", issued.person)]
