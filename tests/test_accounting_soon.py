"""The shell's callback path for accounting (issue 16): no Task per request.

``RadiusEndpoint`` hands an Accounting-Request to the service's ``accounting_soon``,
which answers now or returns a future resolved from the Redis reply's callback. On a
real UDP socket (batched or the loop's transport, whichever this process runs): the
answer goes out only when the future is resolved; ``drain`` waits for it; a future
that fails, or a service that raises, is a logged ``not_recorded`` drop, nothing sent,
its in-flight slot released, and the next request is served.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from radius.events import AccessReply, AccessRequest, AccountingRequest, AccountingResponse
from radius.server import RadiusEndpoint, open_endpoint
from tests.support.redis_proc import until
from tests.test_batch_socket import Nas, received, request


@dataclass
class SoonService:
    log_requests: bool = False
    mode: str = "future"  # future | raise
    pending: list[asyncio.Future[AccountingResponse | None]] = field(default_factory=list)

    def peer_for(self, host: str) -> Nas | None:
        return Nas() if host == "127.0.0.1" else None

    async def access(self, event: AccessRequest) -> AccessReply | None:
        return None

    async def accounting(self, event: AccountingRequest) -> AccountingResponse | None:
        raise AssertionError("the callback path must not run the coroutine")

    def accounting_soon(
        self, event: AccountingRequest
    ) -> AccountingResponse | asyncio.Future[AccountingResponse | None] | None:
        if self.mode == "raise":
            raise RuntimeError("a bug in the service")
        future: asyncio.Future[AccountingResponse | None] = (
            asyncio.get_running_loop().create_future()
        )
        self.pending.append(future)
        return future


@pytest.fixture
async def nas() -> AsyncIterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


async def served(service: SoonService) -> RadiusEndpoint:
    return await open_endpoint("acct", service, "127.0.0.1", 0, dedup_window=30.0, max_in_flight=64)


async def test_the_answer_leaves_when_the_future_is_resolved_and_drain_waits_for_it(
    nas: socket.socket,
) -> None:
    service = SoonService()
    endpoint = await served(service)
    nas.sendto(request(1, "soon-1"), ("127.0.0.1", endpoint.port))
    await until(lambda: service.pending, 5.0, "the request to reach the service")
    assert endpoint.core.in_flight == 1 and len(endpoint.tasks) == 1
    drained = asyncio.ensure_future(endpoint.drain(5.0))
    await asyncio.sleep(0)
    assert not drained.done()  # in flight: the drain waits
    service.pending[0].set_result(AccountingResponse(result="ok"))
    await drained
    got: list[bytes] = []

    def answered() -> bool:
        got.extend(received(nas))
        return bool(got)

    await until(answered, 5.0, "the answer")
    assert got[0][1] == 1 and not endpoint.tasks and endpoint.core.in_flight == 0
    assert endpoint.transport is not None
    endpoint.transport.close()


async def test_a_failed_future_or_a_raising_service_is_not_recorded(
    nas: socket.socket,
) -> None:
    service = SoonService()
    endpoint = await served(service)
    dropped: list[str] = []
    counted = endpoint._dropped

    def dropped_too(drop):  # type: ignore[no-untyped-def]
        dropped.append(drop.reason)
        counted(drop)

    endpoint._dropped = dropped_too  # type: ignore[method-assign]
    nas.sendto(request(2, "soon-2"), ("127.0.0.1", endpoint.port))
    await until(lambda: service.pending, 5.0, "the request to reach the service")
    service.pending[0].set_exception(RuntimeError("a reply of the wrong shape"))
    await until(lambda: dropped == ["not_recorded"], 5.0, "the drop")
    service.pending.clear()
    service.mode = "raise"
    nas.sendto(request(3, "soon-3"), ("127.0.0.1", endpoint.port))
    await until(lambda: dropped == ["not_recorded"] * 2, 5.0, "the second drop")
    assert endpoint.core.in_flight == 0 and not endpoint.tasks
    service.mode = "future"  # the next request is served as usual
    nas.sendto(request(4, "soon-4"), ("127.0.0.1", endpoint.port))
    await until(lambda: service.pending, 5.0, "the next request")
    service.pending[0].set_result(AccountingResponse(result="ok"))
    got: list[bytes] = []

    def answered() -> bool:
        got.extend(received(nas))
        return bool(got)

    await until(answered, 5.0, "the answer to the next request")
    assert [a[1] for a in got] == [4] and received(nas) == []
    assert endpoint.transport is not None
    endpoint.transport.close()
