"""Both RADIUS data paths in a real ``citywifi serve``: the compiled codec
(``radius._speedups``, issue 16) and the pure-Python fallback (``CITYWIFI_PURE_PYTHON=1``).

The key cases of tests/test_radius_integration.py, on the README's example config with
its embedded Redis, against a subprocess per path, so that CI runs the server both ways
whatever the rest of the suite's process uses: an Access-Accept, an Accounting-Response,
the cached answer to a retransmission (RFC 5080 §2.2.2: the same octets, counted once),
and an Accounting-Request with a forged Request Authenticator dropped (RFC 2866 §3).
Packets are built and signed by pyrad, an independent implementation; the server's
start line ``radius.data_path`` says which path ran.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyrad.packet import AccessRequest, AccountingRequest, AcctPacket, AuthPacket

from radius import fastpath
from radius.attrs import Attr, Code
from radius.packet import decode_reply
from tests.support.pyrad_client import load_dictionary, set_pap
from tests.support.redis_proc import wait_until
from tests.test_serve_cli import CITYWIFI, ROOT, SECRET, example_copy, issue_login

MAC = "AA-BB-CC-DD-EE-16"


class Served:
    """``citywifi serve`` in a subprocess with ``env``; its JSON log lines as they come."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*CITYWIFI, "serve", "--config", str(config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.events: list[dict[str, object]] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "text", "line": line}
            self.events.append(event)
            if event.get("event") == "serve.ready":
                self.ready.set()
        self.done.set()

    def named(self, name: str) -> list[dict[str, object]]:
        return [e for e in self.events if e.get("event") == name]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


@pytest.fixture(params=["compiled", "pure"])
def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Path, dict[str, int], Served]]:
    mode: str = request.param
    env = {k: v for k, v in os.environ.items() if k != fastpath.ENV_PURE_PYTHON}
    if mode == "pure":
        env[fastpath.ENV_PURE_PYTHON] = "1"
    elif not fastpath.available() and fastpath.ENV_PURE_PYTHON not in os.environ:
        pytest.skip(fastpath.reason())  # the optional extension is not built here
    config, ports = example_copy(tmp_path)
    serve = Served(config, env)
    try:
        assert serve.ready.wait(30), f"serve did not get ready: {serve.events}"
        yield mode, config, ports, serve
    finally:
        assert serve.stop() == 0


def exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes | None:
    """Send ``data`` to 127.0.0.1:``port`` and return the answer (None: none came)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, ("127.0.0.1", port))
        try:
            return sock.recv(4096)
        except TimeoutError:
            return None


def test_key_cases_on_both_data_paths(
    served: tuple[str, Path, dict[str, int], Served],
) -> None:
    mode, config, ports, serve = served
    starts = serve.named("radius.data_path")  # one per worker that has started by now
    assert starts, serve.events
    # the start-up heap is out of the collector's way (runtime.freeze_startup_objects)
    assert all(int(str(e["gc_frozen"])) > 10_000 for e in serve.named("serve.ready")), serve.events
    for start in starts:
        assert start["compiled"] is (mode == "compiled"), start
        assert start["reason"] == (
            fastpath.COMPILED
            if mode == "compiled"
            else "pure-Python fallback: CITYWIFI_PURE_PYTHON=1"
        )

    login = issue_login(config, mac=MAC)
    auth = AuthPacket(code=AccessRequest, secret=SECRET.encode(), dict=load_dictionary(), id=16)
    auth["User-Name"] = str(login["username"])
    auth["Calling-Station-Id"] = MAC
    auth["NAS-Identifier"] = "sjz-local"
    set_pap(auth, str(login["password"]))
    auth.add_message_authenticator()
    raw = auth.RequestPacket()
    answer = exchange(ports["auth"], raw)
    assert answer is not None, "no answer to the Access-Request"
    accept = decode_reply(answer, SECRET.encode(), raw[4:20], require_message_authenticator=True)
    assert accept.code == Code.ACCESS_ACCEPT and accept.identifier == 16
    (cls,) = accept.attrs[Attr.CLASS]

    acct = AcctPacket(code=AccountingRequest, secret=SECRET.encode(), dict=load_dictionary(), id=17)
    acct["Acct-Status-Type"] = "Start"
    acct["Acct-Session-Id"] = f"paths-{mode}"
    acct["User-Name"] = str(login["username"])
    acct["Calling-Station-Id"] = MAC
    acct[int(Attr.CLASS)] = [cls]
    raw = acct.RequestPacket()
    first = exchange(ports["acct"], raw)
    assert first is not None, "no Accounting-Response"
    response = decode_reply(first, SECRET.encode(), raw[4:20])
    assert response.code == Code.ACCOUNTING_RESPONSE and response.identifier == 17
    again = exchange(ports["acct"], raw)  # a retransmission: the cached answer
    assert again == first

    forged = bytearray(raw)
    forged[1] = 18  # a new identifier, the old authenticator: it no longer verifies
    assert exchange(ports["acct"], bytes(forged), timeout=0.5) is None
    wait_until(
        lambda: any(
            e.get("reason") == "bad_request_authenticator" for e in serve.named("radius.dropped")
        ),
        what="the drop logged",
    )
    assert serve.stop() == 0
    assert serve.done.wait(10)
    assert not serve.named("radius.handler_failed")
