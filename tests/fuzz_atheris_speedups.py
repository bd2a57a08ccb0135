"""Differential, coverage-guided fuzzing of the compiled codec (``radius._speedups``)
against the reference model ``radius.packet``, with atheris (libFuzzer for Python).

Not collected by pytest (the name does not start with ``test_``); CI runs it bounded
through ``tests/test_fuzz_atheris_speedups_ci.py`` when atheris is installed (it is a test
dependency: a manylinux wheel exists for CPython 3.11). A longer run, by hand, from the
repository root::

    .venv/bin/python tests/fuzz_atheris_speedups.py -max_total_time=300 \\
        -artifact_prefix=/tmp/ /tmp/citywifi-speedups-corpus tests/fuzz_corpus/seeds

Coverage comes from the instrumented Python reference (the C side is not instrumented,
so the fuzzer steers by the Python decoder's branches, which mirror the C's). Each input
is tried as sent and re-signed (``tests.support.fuzz_kit.resign``: the fuzzer cannot
compute MD5), with both Message-Authenticator settings and three secrets (empty, short,
longer than an HMAC block); every decoded request is answered with each reply code by
both encoders. Any difference (result, ``PacketError`` reason or message, reply octets,
``ValueError``) is a crash; the input is left in ``<artifact_prefix>crash-<sha1>``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    import atheris
except ImportError:  # pragma: no cover - optional tool
    sys.exit("atheris is not installed: .venv/bin/pip install atheris")

with atheris.instrument_imports():
    from radius import packet

try:
    from radius import _speedups as compiled
    from radius import fastpath  # binds the Request and PacketError types
except ImportError:  # pragma: no cover
    sys.exit("radius._speedups is not built: nothing to compare (pip install .)")

from tests.support.fuzz_kit import SECRET, fix_length, resign  # noqa: E402 (after sys.path)

assert fastpath.available() or fastpath.reason().endswith("=1")
SECRETS = (SECRET, b"", b"a much longer shared secret than one HMAC-MD5 block of 64 octets")
REPLIES = {1: (2, 3, 11), 4: (5,), 12: (2, 5), 40: (41, 42), 43: (44, 45)}


def decoded(fn: Any, data: bytes, secret: bytes, require: bool) -> tuple[Any, ...]:
    try:
        r = fn(data, secret, require_message_authenticator=require)
    except packet.PacketError as exc:
        return ("drop", exc.reason, str(exc))
    return (
        "ok",
        r.code,
        r.identifier,
        r.authenticator,
        list(r.attrs.items()),
        list(r.vsas.items()),
        r.raw,
    )


def encoded(fn: Any, *args: Any, **kw: Any) -> tuple[Any, ...]:
    try:
        return ("ok", fn(*args, **kw))
    except ValueError as exc:
        return ("error", str(exc))


def check(data: bytes, secret: bytes) -> None:
    for require in (True, False):
        want = decoded(packet.decode_request, data, secret, require)
        got = decoded(compiled.decode_request, data, secret, require)
        if got != want:
            raise AssertionError(f"decode differs on {data.hex()}: {got} != {want}")
    try:
        req = packet.decode_request(data, secret, require_message_authenticator=False)
    except packet.PacketError:
        return
    for code in (*REPLIES[req.code], 0):
        for ma in (None, True, False):
            args = (code, req, secret, b"\x12\x07hello")
            want = encoded(packet.encode_reply, *args, message_authenticator=ma)
            got = encoded(compiled.encode_reply, *args, message_authenticator=ma)
            if got != want:
                raise AssertionError(f"encode differs on {data.hex()} code {code}: {got} != {want}")


def one_input(data: bytes) -> None:
    for secret in SECRETS:
        check(data, secret)
        signed = resign(fix_length(data), secret)
        if signed != data:
            check(signed, secret)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
