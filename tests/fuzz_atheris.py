"""Coverage-guided fuzzing of the RADIUS request path with atheris (libFuzzer for Python).

Optional and not collected by pytest (the file name does not start with ``test_``); the
bounded, deterministic fuzz pass of CI is ``tests/test_fuzz_packet.py`` and
``tests/test_fuzz_server.py``. A longer run, from the repository root::

    .venv/bin/pip install atheris   # optional; a manylinux wheel exists for CPython 3.11
    .venv/bin/python tests/fuzz_atheris.py -max_total_time=300 -artifact_prefix=/tmp/ \
        /tmp/citywifi-fuzz-corpus tests/fuzz_corpus/seeds tests/fuzz_corpus/crashers

(the first directory is where libFuzzer keeps the inputs it finds interesting).

Each input is used twice: as sent, and with its Length fixed and re-signed with the seeds'
secret (``tests.support.fuzz_kit.resign``), because the fuzzer cannot compute MD5/HMAC-MD5 and
would otherwise never get past the authenticators. The contract checked: the decoder
returns a ``Request`` consistent with the bytes or raises ``PacketError`` with a known
reason, and what the handlers read from a request (text, integers, User-Password, CHAP,
MAC, Class, octet counters) never raises. A crash leaves ``/tmp/crash-<sha1>``: copy it
to ``tests/fuzz_corpus/crashers/<port>-<what>.bin`` so CI replays it from then on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    import atheris
except ImportError:  # pragma: no cover - optional tool
    sys.exit("atheris is not installed: .venv/bin/pip install atheris (optional)")

with atheris.instrument_imports():
    from controller.domain.identity import person_of_username, verify_class
    from controller.domain.mac import called_station_mac, normalize_mac
    from radius import events, packet
    from radius.attrs import Attr

from tests.support.fuzz_kit import AUTH, SECRET, fix_length, resign  # noqa: E402 (after sys.path)

REASONS = frozenset(get_args(packet.Reason))
REPLY_FOR = {1: 2, 4: 5, 12: 2, 40: 41, 43: 44}


def handlers_read(req: packet.Request) -> None:
    """What radius_service reads from a request; none of it may raise."""
    for atype in req.attrs:
        req.text(atype)
        req.integer(atype)
        req.all(atype)
    person_of_username(req.text(Attr.USER_NAME) or "")
    normalize_mac(req.text(Attr.USER_NAME) or "")
    normalize_mac(req.text(Attr.CALLING_STATION_ID) or "")
    called_station_mac(req.text(Attr.CALLED_STATION_ID) or "")
    verify_class(b"k" * 32, req.get(Attr.CLASS), "nas-local")
    # the typed events the service reads (radius.events): decoding never raises
    events.access_request(req, "nas-local", SECRET, events.Source("", 0))
    events.accounting_request(req, "nas-local", events.Source("", 0))
    hidden = req.get(Attr.USER_PASSWORD)
    if hidden is not None:
        try:
            packet.decrypt_user_password(hidden, SECRET, req.authenticator)
        except packet.PacketError as exc:
            assert exc.reason == "malformed"
    chap = req.get(Attr.CHAP_PASSWORD)
    if chap is not None:
        packet.chap_matches(chap, packet.chap_challenge(req), b"password")


def check(datagram: bytes) -> None:
    for require in (True, False):
        try:
            req = packet.decode_request(datagram, SECRET, require_message_authenticator=require)
        except packet.PacketError as exc:
            assert exc.reason in REASONS and str(exc), exc
            continue
        length = (datagram[2] << 8) | datagram[3]
        assert req.raw == datagram[:length] and req.code == datagram[0]
        handlers_read(req)
        try:
            reply = packet.encode_reply(REPLY_FOR[req.code], req, SECRET)
        except ValueError:  # the echoed Proxy-States do not fit 4096 octets
            continue
        assert packet.decode_reply(reply, SECRET, req.authenticator).code == REPLY_FOR[req.code]
    try:
        packet.decode_reply(datagram, SECRET, AUTH)
    except packet.PacketError as exc:
        assert exc.reason in REASONS, exc


def one_input(data: bytes) -> None:
    check(data)
    signed = resign(fix_length(data))
    if signed != data:
        check(signed)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
