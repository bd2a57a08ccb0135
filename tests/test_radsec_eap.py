"""EAP-TTLS/PAP over RadSec: eapol_test (Debian eapoltest, NAS and phone) -UDP->
radsecproxy -TLS-> citywifi's RadSec listener (``citywifi serve``'s Controller, real
Redis).

The MS-MPPE keys of the Accept are hidden with the secret the request came with —
``radsec`` on the TLS connection (RFC 6614 §2.3), not the client's UDP secret;
radsecproxy recovers them with ``radsec`` and hides them again for the NAS, and
eapol_test checks them against its own MSK.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from controller.cli.serve import Controller
from radius.radsec import RadsecListener
from tests.support.eap_kit import EAPOL_TEST, make_pki, run_eapol_test
from tests.support.peers import RADSECPROXY, installed
from tests.support.radsec_kit import make_pki as make_radsec_pki
from tests.support.redis_proc import RedisProcess
from tests.test_eap_serve import REALM, _city, _issue
from tests.test_interop_sessions import login
from tests.test_radsec_peers import NAS_SECRET, start_radsecproxy

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not installed(EAPOL_TEST, RADSECPROXY), reason="eapol_test / radsecproxy missing"
    ),
]


async def test_eap_ttls_through_radsecproxy_over_radsec_keeps_the_mppe_keys(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    eap_pki = make_pki(REALM)
    tls = make_radsec_pki(tmp_path / "radsec-pki")
    radsec = textwrap.dedent(
        f"""
        [[clients]]
        id = "nas-radsec"
        address = "192.0.2.19"
        secret = "udp-Rt5mQ8wZ2kLp9vQ"
        venue = "station"
        radsec_fingerprint = ["{tls.client.fingerprint}"]

        [radsec]
        enabled = true
        bind = "127.0.0.1"
        port = 0
        certificate = "{tls.server.cert}"
        private_key = "{tls.server.key}"
        ca_certificates = "{tls.ca}"
        """
    )
    ctl: Controller = _city(tmp_path, redis_proc.url, eap_pki, extra=radsec)
    await ctl.start()
    try:
        assert isinstance(ctl.radsec, RadsecListener)
        person = (await login(ctl)).person
        issued = await _issue(ctl, person)
        rsp, port = await asyncio.to_thread(
            start_radsecproxy,
            tmp_path / "rsp",
            "radsecproxy-eap",
            tls.ca,
            ctl.radsec.port,
            tls.client,
        )
        try:
            ok = await asyncio.to_thread(
                run_eapol_test,
                tmp_path,
                port,
                ca_pem=eap_pki.ca_pem,
                identity=issued.credential.username,
                password=issued.secret,
                anonymous_identity=f"anonymous@{REALM}",
                secret=NAS_SECRET,
                timeout=10,
            )
            assert ok.ok, (ok.output[-3000:], rsp.log()[-3000:])
            assert "MPPE keys OK: 1  mismatch: 0" in ok.output
            wrong = await asyncio.to_thread(
                run_eapol_test,
                tmp_path,
                port,
                ca_pem=eap_pki.ca_pem,
                identity=issued.credential.username,
                password=issued.secret + "x",
                anonymous_identity=f"anonymous@{REALM}",
                secret=NAS_SECRET,
                timeout=10,
            )
            assert not wrong.ok
        finally:
            rsp.stop()
    finally:
        await ctl.stop()
