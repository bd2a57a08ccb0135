"""``radius.batch_socket``: a RADIUS port on recvmmsg/sendmmsg (issue 16).

A real ``RadiusEndpoint`` on a real UDP socket, with a service that answers every
Accounting-Request (at once, or when the test releases it, as a Redis reply would):
a burst read in batches gets every answer, each verified; a retransmission gets the
cached octets; answers released later leave in the next loop iteration; a datagram
that cannot be sent loses only itself; closing sends what was answered. The
suite's RADIUS tests (tests/test_data_paths.py and the rest) run the whole server on
this path, and with ``CITYWIFI_PURE_PYTHON=1`` on the loop's transport.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from radius import fastpath
from radius.attrs import Attr, Code
from radius.batch_socket import ROUNDS, BatchSocket, open_batch_socket
from radius.events import AccessReply, AccessRequest, AccountingRequest, AccountingResponse
from radius.packet import attr, attr_int, decode_reply, encode_request
from radius.server import RadiusEndpoint, open_endpoint
from tests.support.redis_proc import until

pytestmark = pytest.mark.skipif(
    fastpath.load().batch_io is None, reason=f"no batched I/O: {fastpath.load().reason}"
)

SECRET = b"batch-secret"


@dataclass(frozen=True)
class Nas:
    id: str = "nas-batch"
    secret: bytes = SECRET
    require_message_authenticator: bool = False


@dataclass
class Service:
    log_requests: bool = False
    hold: bool = False  # answer only when released (as after a Redis reply)
    held: list[asyncio.Future[None]] = field(default_factory=list)
    seen: int = 0

    def peer_for(self, host: str) -> Nas | None:
        return Nas() if host == "127.0.0.1" else None

    async def access(self, event: AccessRequest) -> AccessReply | None:
        return None

    async def accounting(self, event: AccountingRequest) -> AccountingResponse | None:
        self.seen += 1
        if self.hold:
            gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.held.append(gate)
            await gate
        return AccountingResponse(result="ok")


def request(identifier: int, session: str) -> bytes:
    attrs = attr(Attr.ACCT_SESSION_ID, session.encode()) + attr_int(Attr.ACCT_STATUS_TYPE, 3)
    return encode_request(
        int(Code.ACCOUNTING_REQUEST), identifier, SECRET, attrs, message_authenticator=False
    )


@pytest.fixture
async def nas() -> AsyncIterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[bytes]:
    out: list[bytes] = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


async def served(service: Service) -> RadiusEndpoint:
    endpoint = await open_endpoint(
        "acct", service, "127.0.0.1", 0, dedup_window=30.0, max_in_flight=4096
    )
    assert isinstance(endpoint.transport, BatchSocket)
    return endpoint


async def test_a_burst_is_answered_in_batches_and_a_retransmission_from_the_cache(
    nas: socket.socket,
) -> None:
    service = Service()
    endpoint = await served(service)
    sent = [request(i, f"s{i}") for i in range(250)]
    for data in sent:
        nas.sendto(data, ("127.0.0.1", endpoint.port))
    answers: list[bytes] = []

    def all_in() -> bool:
        answers.extend(received(nas))
        return len(answers) >= len(sent)

    await until(all_in, 10.0, "every answer of the burst")
    assert service.seen == len(sent) and len(answers) == len(sent)
    for answer in answers:  # each signed for its own request (RFC 2866 §4)
        assert answer[0] == Code.ACCOUNTING_RESPONSE
        decode_reply(answer, SECRET, sent[answer[1]][4:20])
    nas.sendto(sent[7], ("127.0.0.1", endpoint.port))  # a retransmission: the cached octets
    again: list[bytes] = []

    def cached() -> bool:
        again.extend(received(nas))
        return bool(again)

    await until(cached, 5.0, "the cached answer")
    assert again == [a for a in answers if a[1] == 7] and service.seen == len(sent)
    assert endpoint.transport is not None
    endpoint.transport.close()


async def test_answers_released_later_leave_in_the_next_loop_iteration(
    nas: socket.socket,
) -> None:
    service = Service(hold=True)
    endpoint = await served(service)
    for i in range(5):
        nas.sendto(request(i, f"h{i}"), ("127.0.0.1", endpoint.port))
    await until(lambda: len(service.held) == 5, 5.0, "the requests to reach the service")
    assert received(nas) == [] and len(endpoint.tasks) == 5
    for gate in service.held:
        gate.set_result(None)
    answers: list[bytes] = []

    def all_in() -> bool:
        answers.extend(received(nas))
        return len(answers) == 5

    await until(all_in, 5.0, "the released answers")
    await endpoint.drain(1.0)
    assert not endpoint.tasks and endpoint.core.in_flight == 0
    assert endpoint.transport is not None
    endpoint.transport.close()


async def test_a_datagram_that_cannot_be_sent_loses_only_itself(nas: socket.socket) -> None:
    endpoint = await served(Service())
    transport = endpoint.transport
    assert isinstance(transport, BatchSocket)
    here = nas.getsockname()
    transport.sendto(b"first", ("::1", 1812))  # not an IPv4 address: this socket cannot
    transport.sendto(b"second", here)
    got: list[bytes] = []

    def arrived() -> bool:
        got.extend(received(nas))
        return bool(got)

    await until(arrived, 5.0, "the datagram after the bad one")
    assert got == [b"second"] and transport.send_errors == 1
    transport.sendto(b"last", here)  # queued for the next iteration, sent by close()
    transport.close()
    assert transport.is_closing()
    transport.sendto(b"after", here)  # a closed port sends nothing

    def last() -> bool:
        got.extend(received(nas))
        return len(got) >= 2

    await until(last, 5.0, "the datagram queued before close")
    assert got == [b"second", b"last"]


async def test_the_port_is_the_bound_one_and_reuse_port_binds_twice() -> None:
    first = await open_endpoint(
        "auth", Service(), "127.0.0.1", 0, dedup_window=1.0, max_in_flight=8, reuse_port=True
    )
    second = await open_endpoint(
        "auth",
        Service(),
        "127.0.0.1",
        first.port,
        dedup_window=1.0,
        max_in_flight=8,
        reuse_port=True,
    )
    assert second.port == first.port != 0
    for endpoint in (first, second):
        assert endpoint.transport is not None
        endpoint.transport.close()


class Collector:
    """A bare receiver: keeps each datagram; raises on b"bad" (a bug in one datagram)."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.marks: list[int] = []

    def connection_made(self, transport: object) -> None:
        pass

    def datagram_received(self, data: bytes, addr: object) -> None:
        if data == b"bad":
            raise RuntimeError("a bug in one datagram's handling")
        if not self.got:  # runs when the loop next gets control
            asyncio.get_running_loop().call_soon(lambda: self.marks.append(len(self.got)))
        self.got.append(data)


async def test_a_flood_yields_to_the_loop_and_a_failing_datagram_loses_only_itself(
    nas: socket.socket,
) -> None:
    loop = asyncio.get_running_loop()
    io = fastpath.load().batch_io
    assert io is not None
    collector = Collector()
    transport = open_batch_socket(loop, collector, io, "127.0.0.1", 0)
    port = transport.get_extra_info("sockname")[1]
    flood = [b"bad" if i == 5 else b"d%d" % i for i in range(300)]
    for data in flood:  # all queued before the loop reads any
        nas.sendto(data, ("127.0.0.1", port))
    await until(lambda: len(collector.got) == 299, 10.0, "every datagram but the bad one")
    assert collector.got == [d for d in flood if d != b"bad"]
    # the loop ran other callbacks before the flood was read through
    assert collector.marks and collector.marks[0] <= ROUNDS * 64 < 299
    transport.close()
