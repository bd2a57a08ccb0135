"""The two things the RADIUS core takes from outside since issue 16/17: the data path
(``radius.fastpath``: the compiled codec or ``radius.packet``) and the ``on_packet``
trace hook. Pure: bytes and a fake time in, no socket (the live exchanges, both data
paths, are in tests/test_data_paths.py and tests/test_trace.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from radius import fastpath
from radius.attrs import Attr, Code
from radius.core import Answer, Dispatch, Drop, ServerCore
from radius.events import AccessReject, AccountingResponse
from radius.packet import attr, attr_int, encode_request

SECRET = b"testing123"
NAS = ("10.0.0.9", 5000)
STRANGER = ("10.0.0.66", 5000)


@dataclass(frozen=True)
class Peer:
    id: str = "nas-local"
    secret: bytes = SECRET
    require_message_authenticator: bool = True


def peers(host: str) -> Peer | None:
    return Peer() if host == NAS[0] else None


Seen = list[tuple[str, bytes, str]]


def traced(role: str = "auth", **kw: object) -> tuple[ServerCore, Seen]:
    seen: Seen = []
    core = ServerCore(
        role,  # type: ignore[arg-type]
        peers,
        on_packet=lambda client, data, direction: seen.append((client, data, direction)),
        **kw,  # type: ignore[arg-type]
    )
    return core, seen


def access(identifier: int = 1) -> bytes:
    return encode_request(
        Code.ACCESS_REQUEST, identifier, SECRET, attr(Attr.USER_NAME, b"u"), authenticator=bytes(16)
    )


def test_every_datagram_of_a_known_client_and_every_reply_to_it_is_seen() -> None:
    core, seen = traced()
    request = access()
    dispatch = core.receive(request, NAS, 0.0)
    assert isinstance(dispatch, Dispatch)
    answer = core.answered(dispatch.ticket, AccessReject(result="bad_password"), 0.1)
    assert isinstance(answer, Answer) and answer.kind == "reply"
    duplicate = core.receive(request, NAS, 0.2)  # RFC 5080 §2.2.2: the cached answer
    assert isinstance(duplicate, Answer) and duplicate.kind == "duplicate"
    status_request = encode_request(Code.STATUS_SERVER, 9, SECRET, b"")
    status = core.receive(status_request, NAS, 0.3)
    assert isinstance(status, Answer) and status.kind == "status"
    assert seen == [
        ("nas-local", request, "in"),
        ("nas-local", answer.data, "out"),
        ("nas-local", request, "in"),
        ("nas-local", answer.data, "out"),
        ("nas-local", status_request, "in"),
        ("nas-local", status.data, "out"),
    ]


def test_a_refused_packet_of_a_known_client_is_seen_a_stranger_is_not() -> None:
    core, seen = traced()
    wrong_secret = encode_request(
        Code.ACCESS_REQUEST, 2, b"not-the-secret", b"", authenticator=bytes(16)
    )
    drop = core.receive(wrong_secret, NAS, 0.0)  # debugging a NAS with the wrong secret
    assert isinstance(drop, Drop) and drop.reason == "bad_message_authenticator"
    assert isinstance(core.receive(access(), STRANGER, 0.0), Drop)
    assert seen == [("nas-local", wrong_secret, "in")]


def test_no_reply_sends_nothing_and_traces_nothing_out() -> None:
    core, seen = traced("acct")
    request = encode_request(Code.ACCOUNTING_REQUEST, 3, SECRET, attr_int(Attr.ACCT_STATUS_TYPE, 1))
    dispatch = core.receive(request, NAS, 0.0)
    assert isinstance(dispatch, Dispatch)
    assert isinstance(core.answered(dispatch.ticket, None, 0.1), Drop)
    assert [d for _, _, d in seen] == ["in"]
    again = core.receive(request, NAS, 0.2)
    assert isinstance(again, Dispatch)
    assert isinstance(core.answered(again.ticket, AccountingResponse(result="start"), 0.3), Answer)
    assert [d for _, _, d in seen] == ["in", "in", "out"]


def test_the_core_runs_the_data_path_fastpath_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fastpath.ENV_PURE_PYTHON, "1")
    pure = ServerCore("auth", peers)
    assert not pure.data_path.compiled and pure.data_path.reason.startswith("pure-Python")
    monkeypatch.delenv(fastpath.ENV_PURE_PYTHON)
    default = ServerCore("auth", peers)
    assert default.data_path.compiled == fastpath.available()
    # both give the same answer, octet for octet (the compiled codec mirrors radius.packet)
    answers = []
    for core in (pure, default):
        dispatch = core.receive(access(4), NAS, 0.0)
        assert isinstance(dispatch, Dispatch)
        answer = core.answered(dispatch.ticket, AccessReject(result="bad_password"), 0.0)
        assert isinstance(answer, Answer)
        answers.append(answer.data)
    assert answers[0] == answers[1]
