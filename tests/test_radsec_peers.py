"""citywifi's own RadSec listener with Debian's radsecproxy (issue 19 item 3).

NAS (FreeRADIUS's ``radclient``) -UDP-> radsecproxy -TLS, both certificates checked->
citywifi's RadSec port. The certificates are made here with ``cryptography``
(tests/support/radsec_kit.py): a city CA, citywifi's server certificate, the
radsecproxy's client certificate (configured by fingerprint), a certificate of the same
CA that no client names, and one of an unrelated CA. radsecproxy runs in the foreground
on a generated config (tests/support/peers.py), ``StatusServer On``.

radsecproxy 1.9 does not forward Disconnect/CoA-Requests from a server to its clients
(it takes Access-Request, Accounting-Request and Status-Server only), so Disconnect over
the connection is tested with our own TLS client in tests/test_radsec.py.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from controller.config import Config, load_config
from controller.services.radius_service import anonymous_person
from tests.conftest import service_sections
from tests.support.peer_city import STATION, PeerCity, start_served
from tests.support.peers import (
    RADSECPROXY,
    RadSecProxy,
    installed,
    udp_bound,
    udp_port,
    wait_log,
)
from tests.support.radclient import RADCLIENT, RadReply, radclient
from tests.support.radsec_kit import Identity, Pki, make_pki
from tests.support.redis_proc import wait_until

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(not installed(RADSECPROXY, RADCLIENT), reason="radsecproxy/radclient"),
]

NAS_SECRET = "nas-to-radsecproxy-secret"
CLIENT_SECRET = "udp-Rt5mQ8wZ2kLp9vQ"  # the client's UDP secret: never used over TLS
MAC = "AA-BB-CC-00-19-31"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclasses.dataclass
class City(PeerCity):
    pki: Pki = dataclasses.field(kw_only=True)

    @property
    def radsec_port(self) -> int:
        radsec = self.serve.ctl.radsec
        assert radsec is not None
        return radsec.port


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("radsec-peers")


@pytest.fixture(scope="module")
def city(workdir: Path) -> Iterator[City]:
    pki = make_pki(workdir / "pki")

    def config(redis_url: str) -> Config:
        text = (
            service_sections(redis_url)
            + STATION
            + textwrap.dedent(
                f"""
                [[clients]]
                id = "nas-radsec"
                address = "192.0.2.19"
                secret = "{CLIENT_SECRET}"
                venue = "station"
                radsec_fingerprint = ["{pki.client.fingerprint}"]

                [radsec]
                enabled = true
                bind = "127.0.0.1"
                port = 0
                certificate = "{pki.server.cert}"
                private_key = "{pki.server.key}"
                ca_certificates = "{pki.ca}"
                idle_timeout = 120
                """
            )
        )
        path = workdir / "citywifi.toml"
        path.write_text(text)
        return load_config(path)

    redis_proc, serve = start_served(workdir, config)
    running = City(redis_proc, serve, "nas-radsec", MAC, "+861380019", pki=pki)
    yield running
    running.stop()


def start_radsecproxy(
    directory: Path, name: str, ca: Path, radsec_port: int, identity: Identity
) -> tuple[RadSecProxy, int]:
    """radsecproxy: UDP from the NAS in, TLS to citywifi out, presenting ``identity``."""
    port = udp_port()
    proxy = RadSecProxy(directory, name)
    proxy.start(
        textwrap.dedent(
            f"""
            tls citywifi-tls {{
                CACertificateFile {ca}
                CertificateFile {identity.cert}
                CertificateKeyFile {identity.key}
            }}
            listenUDP 127.0.0.1:{port}
            client nas {{
                host 127.0.0.1
                type udp
                secret {NAS_SECRET}
            }}
            server citywifi {{
                host 127.0.0.1
                port {radsec_port}
                type tls
                tls citywifi-tls
                secret radsec
                StatusServer On
            }}
            realm * {{
                server citywifi
                accountingServer citywifi
            }}
            """
        ),
        lambda: udp_bound(port),
    )
    return proxy, port


@pytest.fixture(scope="module")
def proxy(workdir: Path, city: City) -> Iterator[tuple[RadSecProxy, int]]:
    started = start_radsecproxy(
        workdir / "rsp", "radsecproxy", city.pki.ca, city.radsec_port, city.pki.client
    )
    yield started
    started[0].stop()


def nas(port: int, kind: str, attrs: dict[str, str | int], timeout: float = 3.0) -> RadReply:
    return radclient(port, kind, NAS_SECRET, attrs, timeout=timeout, retries=1)


def test_auth_and_accounting_through_radsecproxy_are_answered(
    city: City, proxy: tuple[RadSecProxy, int]
) -> None:
    """radsecproxy re-hides the User-Password with "radsec" (RFC 6614 §2.3) and sends
    it over mutual TLS; citywifi answers with Session-Timeout and books the accounting."""
    rsp, port = proxy
    issued = city.login()
    reply = nas(
        port,
        "auth",
        {"User-Name": issued.username, "User-Password": issued.password, "Calling-Station-Id": MAC},
    )
    assert reply.code == "Access-Accept", (reply.output, rsp.log()[-3000:])
    assert int(reply.first("Session-Timeout") or 0) > 0
    wrong = nas(port, "auth", {"User-Name": city.login().username, "User-Password": "not-it"})
    assert wrong.code == "Access-Reject"
    user = "aa-bb-cc-00-19-32"
    for status, seconds in (("Start", 0), ("Interim-Update", 60), ("Stop", 75)):
        reply = nas(
            port,
            "acct",
            {
                "Acct-Status-Type": status,
                "Acct-Session-Id": "rsp-acct-1",
                "Acct-Session-Time": seconds,
                "User-Name": user,
                "Calling-Station-Id": MAC,
                "NAS-Identifier": "ap-1",
            },
        )
        assert reply.code == "Accounting-Response", (reply.output, rsp.log()[-3000:])
    record = city.session(anonymous_person("nas-radsec", user), "rsp-acct-1")
    assert record["seen"] == "75" and record.get("closed")
    assert metric("citywifi_radsec_accepted_total", client="nas-radsec") >= 1
    assert metric("citywifi_radsec_connections") >= 1


@pytest.mark.parametrize(
    ("who", "counter", "reason"),
    [
        ("stranger", "citywifi_radsec_handshake_failures_total", "certificate_verify_failed"),
        ("other_client", "citywifi_radsec_refused_certificates_total", "unknown_certificate"),
    ],
)
def test_a_radsecproxy_with_an_unknown_certificate_is_refused(
    workdir: Path, city: City, who: str, counter: str, reason: str
) -> None:
    """Another CA's certificate fails the handshake; a certificate of the city CA that
    no client names is closed after it. Nothing is answered either way."""
    before = metric(counter, reason=reason)
    rsp, port = start_radsecproxy(
        workdir / f"rsp-{who}",
        f"radsecproxy-{who}",
        city.pki.ca,
        city.radsec_port,
        getattr(city.pki, who),
    )
    try:
        wait_until(
            lambda: metric(counter, reason=reason) > before, 20.0, 0.05, f"{counter} {reason}"
        )
        issued = city.login()
        reply = nas(
            port,
            "auth",
            {"User-Name": issued.username, "User-Password": issued.password},
            timeout=1.0,
        )
        assert reply.code is None, reply.output
    finally:
        rsp.stop()


def test_status_server_watchdog_is_answered(city: City, proxy: tuple[RadSecProxy, int]) -> None:
    """``StatusServer On``: radsecproxy sends Status-Server on the connection after 25-32 s
    without a reply (RFC 5997 watchdog) and takes our Access-Accept to it."""
    rsp, _ = proxy
    before = metric("citywifi_radius_requests_total", port="auth", type="status", result="ok")
    wait_log(rsp, "got status server response from citywifi", timeout=60.0)
    assert (
        metric("citywifi_radius_requests_total", port="auth", type="status", result="ok") > before
    )
