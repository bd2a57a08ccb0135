"""EAP-TTLS/PAP against real peers: wpa_supplicant's ``eapol_test`` (Debian eapoltest)
as NAS and phone, and FreeRADIUS's ``radclient`` as an independent MS-MPPE decoder.

The server side is ``tests.support.eap_kit.EapResponder``: a UDP responder built only
from ``radius.packet`` and the new EAP modules, until the server core is wired
(docs/eap.md, "Wiring")."""

from __future__ import annotations

import asyncio
import base64
import email
import re
import secrets
import socket
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.domain.eap_credentials import (
    RANDOM_OCTETS,
    CredentialPolicy,
    realm_of,
    verify_credential,
)
from controller.services.passpoint import PasspointProfile, android_wifi_config, issue_for
from controller.storage.eap_credentials import EapCredentialStore
from controller.storage.redis_conn import client_from_url
from radius.attrs import Code
from radius.eap_ttls import PapCredentials, TtlsServer
from radius.mppe import mppe_key_attrs
from radius.packet import attr, decode_request, encode_reply
from tests.support.eap_kit import EAPOL_TEST, EapResponder, Pki, make_pki, run_eapol_test
from tests.support.radclient import RADCLIENT, radclient
from tests.support.redis_proc import RedisProcess

pytestmark = pytest.mark.peers

USER = "alice@city.example"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def _check(credentials: PapCredentials) -> bool:
    return credentials.username == USER and credentials.password == PASSWORD.encode()


needs_eapol_test = pytest.mark.skipif(
    not Path(EAPOL_TEST).exists(), reason="eapol_test missing: bash scripts/bootstrap.sh --test"
)


@needs_eapol_test
def test_eapol_test_authenticates_and_verifies_the_mppe_keys(tmp_path: Path, pki: Pki) -> None:
    ttls = TtlsServer(pki.server_chain_pem, pki.server_key_pem)
    with EapResponder(ttls, _check) as responder:
        result = run_eapol_test(
            tmp_path, responder.port, ca_pem=pki.ca_pem, identity=USER, password=PASSWORD
        )
    assert result.ok, result.output[-3000:]
    # eapol_test compares the MS-MPPE keys of the Accept with the MSK it derived itself.
    assert "MPPE keys OK: 1  mismatch: 0" in result.output
    assert "EAP-TTLS: Authentication completed successfully" in result.output
    [outcome] = responder.outcomes
    assert outcome.code == Code.ACCESS_ACCEPT and not outcome.resumed
    assert (outcome.inner_identity, outcome.outer_identity) == (USER, "anonymous@city.example")
    derived = re.search(r"EAP-TTLS: Derived key - hexdump\(len=64\): ([0-9a-f ]+)", result.output)
    assert derived is not None
    assert bytes.fromhex(derived.group(1).replace(" ", "")) == outcome.msk


@needs_eapol_test
def test_eapol_test_resumes_the_tls_session(tmp_path: Path, pki: Pki) -> None:
    """Two re-authentications (-r2) after the first: wpa_supplicant offers the TLS
    session, the server resumes it and answers without phase 2; keys still match."""
    ttls = TtlsServer(pki.server_chain_pem, pki.server_key_pem)
    with EapResponder(ttls, _check) as responder:
        result = run_eapol_test(
            tmp_path, responder.port, ca_pem=pki.ca_pem, identity=USER, password=PASSWORD, reauth=2
        )
    assert result.ok, result.output[-3000:]
    assert "MPPE keys OK: 3  mismatch: 0" in result.output
    assert result.output.count("OpenSSL: Handshake finished - resumed=1") == 2
    assert [o.resumed for o in responder.outcomes] == [False, True, True]


@needs_eapol_test
def test_eapol_test_with_small_fragments_both_ways(tmp_path: Path, pki: Pki) -> None:
    ttls = TtlsServer(pki.server_chain_pem, pki.server_key_pem, fragment_size=150)
    with EapResponder(ttls, _check) as responder:
        result = run_eapol_test(
            tmp_path,
            responder.port,
            ca_pem=pki.ca_pem,
            identity=USER,
            password=PASSWORD,
            fragment_size=100,
        )
        challenges = responder.challenges
    assert result.ok, result.output[-3000:]
    assert "MPPE keys OK: 1  mismatch: 0" in result.output
    # Our flight went with L+M on the first fragment and M on the next; theirs in pieces
    # that we acknowledged. Unfragmented the conversation takes 3 challenges.
    assert "SSL: Received packet(len=150) - Flags 0xc0" in result.output
    assert "SSL: Received packet(len=150) - Flags 0x40" in result.output
    assert "more fragments will follow" in result.output
    assert challenges > 3


@needs_eapol_test
def test_eapol_test_wrong_password_is_rejected(tmp_path: Path, pki: Pki) -> None:
    ttls = TtlsServer(pki.server_chain_pem, pki.server_key_pem)
    with EapResponder(ttls, _check) as responder:
        result = run_eapol_test(
            tmp_path, responder.port, ca_pem=pki.ca_pem, identity=USER, password="wrong", timeout=5
        )
    assert not result.ok
    assert "Access-Reject" in result.output
    assert "EAP: Received EAP-Failure" in result.output
    assert [(o.code, o.reason) for o in responder.outcomes] == [
        (Code.ACCESS_REJECT, "wrong_password")
    ]


@needs_eapol_test
def test_eapol_test_refuses_a_server_of_another_ca(tmp_path: Path, pki: Pki) -> None:
    """The phone's side of the trust: a server certificate not from the profile's CA
    fails the TLS handshake at the peer (nothing to do with our code, but it shows the
    CA in the profile is what protects the password)."""
    other = make_pki()
    ttls = TtlsServer(other.server_chain_pem, other.server_key_pem)
    with EapResponder(ttls, _check) as responder:
        result = run_eapol_test(
            tmp_path, responder.port, ca_pem=pki.ca_pem, identity=USER, password=PASSWORD, timeout=5
        )
    assert not result.ok
    assert not any(o.code == Code.ACCESS_ACCEPT for o in responder.outcomes)


@pytest.mark.skipif(not Path(RADCLIENT).exists(), reason="radclient missing")
def test_radclient_decodes_our_mppe_keys() -> None:
    """FreeRADIUS decrypts MS-MPPE-*-Key (dictionary.microsoft, encrypt=2) with the
    Request Authenticator of its own request: an independent check of RFC 2548 §2.4.2."""
    msk = bytes(range(0x40, 0x80))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)

    def answer() -> None:
        data, addr = sock.recvfrom(4096)
        request = decode_request(data, b"testing123")
        attrs = attr(1, b"alice") + mppe_key_attrs(
            msk, b"testing123", request.authenticator, (b"\x81\x23", b"\xfe\x01")
        )
        sock.sendto(encode_reply(Code.ACCESS_ACCEPT, request, b"testing123", attrs), addr)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        reply = radclient(
            sock.getsockname()[1],
            "auth",
            "testing123",
            {"User-Name": "alice", "User-Password": "x"},
        )
    finally:
        thread.join(5)
        sock.close()
    assert reply.code == "Access-Accept", reply.output
    assert reply.first("MS-MPPE-Recv-Key") == "0x" + msk[:32].hex()
    assert reply.first("MS-MPPE-Send-Key") == "0x" + msk[32:].hex()


@needs_eapol_test
async def test_profile_credential_from_redis_then_revoked(
    tmp_path: Path, pki: Pki, redis_proc: RedisProcess
) -> None:
    """The whole chain short of the server wiring: a credential issued and stored in a
    real Redis, its Android profile parsed back for the username, secret, realm and CA
    (what the phone installs), eapol_test authenticating with them through a responder
    whose verifier reads Redis and checks the argon2id hash; after revoke: Reject."""
    client = client_from_url(redis_proc.url)
    store = EapCredentialStore(client)
    policy = CredentialPolicy("city.example", memory_kib=1024, time_cost=1)
    issued = await issue_for(
        store, policy, "a1b2c3d4e5f60718", int(time.time()), secrets.token_bytes(RANDOM_OCTETS)
    )
    profile = PasspointProfile(
        realm="city.example",
        home_domain="city.example",
        friendly_name="City WiFi",
        roaming_consortium=(),
        ca_der=pki.ca_der,
        trusted_server_names=("radius.city.example",),
    )
    parts = _android_parts(android_wifi_config(profile, issued))
    username, password, realm = _pps_credential(parts["application/x-passpoint-profile"])
    ca_pem = x509.load_der_x509_certificate(parts["application/x-x509-ca-cert"]).public_bytes(
        serialization.Encoding.PEM
    )
    assert realm_of(username) == realm == "city.example"

    loop = asyncio.get_running_loop()

    def from_redis(credentials: PapCredentials) -> bool:
        # The responder's thread asks the test's loop, as the wiring will ask the store.
        found = asyncio.run_coroutine_threadsafe(store.lookup(credentials.username), loop)
        return verify_credential(found.result(5), credentials.password, time.time())

    ttls = TtlsServer(pki.server_chain_pem, pki.server_key_pem)
    with EapResponder(ttls, from_redis) as responder:
        ok = await asyncio.to_thread(
            run_eapol_test,
            tmp_path,
            responder.port,
            ca_pem=ca_pem,
            identity=username,
            password=password,
            anonymous_identity=f"anonymous@{realm}",
        )
        assert ok.ok, ok.output[-3000:]
        assert "MPPE keys OK: 1  mismatch: 0" in ok.output
        assert await store.revoke("a1b2c3d4e5f60718", username)
        revoked = await asyncio.to_thread(
            run_eapol_test,
            tmp_path,
            responder.port,
            ca_pem=ca_pem,
            identity=username,
            password=password,
            timeout=5,
        )
    await client.aclose()
    assert not revoked.ok and "Access-Reject" in revoked.output
    assert [(o.code, o.inner_identity) for o in responder.outcomes] == [
        (Code.ACCESS_ACCEPT, username),
        (Code.ACCESS_REJECT, username),
    ]


def _android_parts(body: bytes) -> dict[str, bytes]:
    message = email.message_from_bytes(base64.b64decode(body))
    out: dict[str, bytes] = {}
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            out[part.get_content_type()] = payload
    return out


def _pps_credential(xml: bytes) -> tuple[str, str, str]:
    ns = "{syncml:dmddf1.2}"
    values = {
        node.findtext(f"{ns}NodeName"): node.findtext(f"{ns}Value")
        for node in ET.fromstring(xml).iter(f"{ns}Node")
        if node.find(f"{ns}Value") is not None
    }
    password = base64.b64decode(values["Password"] or "").decode()
    return values["Username"] or "", password, values["Realm"] or ""
