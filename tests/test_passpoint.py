"""Passpoint profiles (controller/services/passpoint.py) parsed back the way the phones
read them, and the [passpoint] config section (controller/config/passpoint.py)."""

from __future__ import annotations

import base64
import email
import plistlib
import secrets
import xml.etree.ElementTree as ET
from email.message import Message
from pathlib import Path

import pytest
from cryptography import x509

from controller.config import ConfigError, load_config
from controller.config.passpoint import PasspointSettings
from controller.domain.eap_credentials import (
    RANDOM_OCTETS,
    CredentialPolicy,
    IssuedCredential,
    issue_credential,
    verify_credential,
)
from controller.services.passpoint import (
    PPS_DDF,
    PasspointProfile,
    android_wifi_config,
    apple_mobileconfig,
    load_profile,
)
from tests.conftest import write_config
from tests.support.eap_kit import Pki, make_pki

REALM = "wifi.city.example"
RCOI = ("5a03ba0000", "004096")
NOW = 1_900_000_000


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki("city.example")


@pytest.fixture
def profile(pki: Pki) -> PasspointProfile:
    return PasspointProfile(
        realm=REALM,
        home_domain="city.example",
        friendly_name="City WiFi",
        roaming_consortium=RCOI,
        ca_der=pki.ca_der,
        trusted_server_names=("radius.city.example",),
    )


@pytest.fixture
def issued() -> IssuedCredential:
    policy = CredentialPolicy(REALM, lifetime_days=90, memory_kib=256, time_cost=1)
    return issue_credential("a1b2c3d4e5f60718", policy, NOW, secrets.token_bytes(RANDOM_OCTETS))


def _mime_parts(body: bytes) -> dict[str, bytes]:
    message = email.message_from_bytes(base64.b64decode(body))
    assert message.get_content_type() == "multipart/mixed"
    assert message.get("Content-Transfer-Encoding") == "base64"
    parts: dict[str, bytes] = {}
    for part in message.walk():
        if part.is_multipart():
            continue
        assert isinstance(part, Message)
        assert part.get("Content-Transfer-Encoding") == "base64"
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts[part.get_content_type()] = payload
    return parts


def _nodes(element: ET.Element) -> dict[str, ET.Element]:
    ns = "{syncml:dmddf1.2}"
    return {n.findtext(f"{ns}NodeName", ""): n for n in element.findall(f"{ns}Node")}


def _value(node: ET.Element) -> str | None:
    return node.findtext("{syncml:dmddf1.2}Value")


def test_android_profile_parses_and_carries_realm_ca_and_credential(
    profile: PasspointProfile, issued: IssuedCredential, pki: Pki
) -> None:
    """Read as Android's ConfigParser does: base64, MIME multipart of base64 parts, the
    PPS MO XML and the CA certificate."""
    parts = _mime_parts(android_wifi_config(profile, issued))
    assert set(parts) == {"application/x-passpoint-profile", "application/x-x509-ca-cert"}
    ca = x509.load_der_x509_certificate(parts["application/x-x509-ca-cert"])
    assert ca == x509.load_pem_x509_certificate(pki.ca_pem)

    tree = ET.fromstring(parts["application/x-passpoint-profile"])
    assert tree.tag == "{syncml:dmddf1.2}MgmtTree"
    assert tree.findtext("{syncml:dmddf1.2}VerDTD") == "1.2"
    pps = _nodes(tree)["PerProviderSubscription"]
    assert pps.findtext(".//{syncml:dmddf1.2}DDFName") == PPS_DDF
    instance = _nodes(pps)["i001"]
    home = _nodes(_nodes(instance)["HomeSP"])
    assert _value(home["FQDN"]) == "city.example"
    assert _value(home["FriendlyName"]) == "City WiFi"
    assert _value(home["RoamingConsortiumOI"]) == "5a03ba0000,004096"
    credential = _nodes(_nodes(instance)["Credential"])
    assert _value(credential["Realm"]) == REALM
    assert _value(credential["ExpirationDate"]) == "2030-06-15T17:46:40Z"  # NOW + 90 days
    userpass = _nodes(credential["UsernamePassword"])
    assert _value(userpass["Username"]) == issued.credential.username
    password = base64.b64decode(_value(userpass["Password"]) or "")
    assert password.decode() == issued.secret
    assert verify_credential(issued.credential, password, NOW + 1)
    method = _nodes(userpass["EAPMethod"])
    assert (_value(method["EAPType"]), _value(method["InnerMethod"])) == ("21", "PAP")


def test_apple_profile_round_trips(
    profile: PasspointProfile, issued: IssuedCredential, pki: Pki
) -> None:
    data = apple_mobileconfig(profile, issued)
    top = plistlib.loads(data)
    assert plistlib.loads(plistlib.dumps(top)) == top  # plist round trip
    assert top["PayloadType"] == "Configuration" and top["PayloadVersion"] == 1
    wifi, ca = top["PayloadContent"]
    assert ca["PayloadType"] == "com.apple.security.root"
    assert ca["PayloadContent"] == pki.ca_der
    assert wifi["PayloadType"] == "com.apple.wifi.managed"
    assert wifi["IsHotspot"] and wifi["AutoJoin"]
    assert wifi["DomainName"] == "city.example"
    assert wifi["NAIRealmNames"] == [REALM]
    assert wifi["RoamingConsortiumOIs"] == ["5A03BA0000", "004096"]
    eap = wifi["EAPClientConfiguration"]
    assert eap["AcceptEAPTypes"] == [21] and eap["TTLSInnerAuthentication"] == "PAP"
    assert eap["UserName"] == issued.credential.username
    assert eap["UserPassword"] == issued.secret
    assert eap["OuterIdentity"] == f"anonymous@{REALM}"
    assert eap["PayloadCertificateAnchorUUID"] == [ca["PayloadUUID"]]
    assert eap["TLSTrustedServerNames"] == ["radius.city.example"]
    uuids = {top["PayloadUUID"], wifi["PayloadUUID"], ca["PayloadUUID"]}
    assert len(uuids) == 3
    assert top["RemovalDate"].isoformat() == "2030-06-15T17:46:40"


def test_identifiers_are_stable_per_credential(
    profile: PasspointProfile, issued: IssuedCredential
) -> None:
    """The same credential downloaded twice gives the same profile (the phone replaces
    it); another credential gives other identifiers."""
    assert apple_mobileconfig(profile, issued) == apple_mobileconfig(profile, issued)
    assert android_wifi_config(profile, issued) == android_wifi_config(profile, issued)
    policy = CredentialPolicy(REALM, memory_kib=256, time_cost=1)
    other = issue_credential("ffff", policy, NOW, secrets.token_bytes(RANDOM_OCTETS))
    a = plistlib.loads(apple_mobileconfig(profile, issued))
    b = plistlib.loads(apple_mobileconfig(profile, other))
    assert a["PayloadUUID"] != b["PayloadUUID"]


def test_no_roaming_consortium(profile: PasspointProfile, issued: IssuedCredential) -> None:
    bare = PasspointProfile(
        REALM, REALM, "City WiFi", (), profile.ca_der, profile.trusted_server_names
    )
    wifi = plistlib.loads(apple_mobileconfig(bare, issued))["PayloadContent"][0]
    assert "RoamingConsortiumOIs" not in wifi
    xml = _mime_parts(android_wifi_config(bare, issued))["application/x-passpoint-profile"]
    assert b"RoamingConsortiumOI" not in xml


# -- config -----------------------------------------------------------------------------


def _write_pki(directory: Path, pki: Pki) -> None:
    (directory / "ca.pem").write_bytes(pki.ca_pem)
    (directory / "server.pem").write_bytes(pki.server_chain_pem)
    (directory / "server.key").write_bytes(pki.server_key_pem)


def test_config_section_and_load_profile(tmp_path: Path, pki: Pki) -> None:
    _write_pki(tmp_path, pki)
    path = write_config(
        tmp_path,
        "redis://127.0.0.1:1/0",
        extra="""
        [passpoint]
        enabled = true
        realm = "wifi.city.example"
        home_domain = "city.example"
        friendly_name = "Shijiazhuang Free WiFi"
        roaming_consortium = ["5A-03-BA-00-00", "004096"]
        ca_cert = "ca.pem"
        server_cert = "server.pem"
        server_key = "server.key"
        credential_days = 180
        """,
    )
    settings = load_config(path).passpoint
    assert settings == PasspointSettings(
        enabled=True,
        realm=REALM,
        home_domain="city.example",
        friendly_name="Shijiazhuang Free WiFi",
        roaming_consortium=RCOI,
        ca_cert=tmp_path / "ca.pem",
        server_cert=tmp_path / "server.pem",
        server_key=tmp_path / "server.key",
        credential_days=180,
    )
    profile = load_profile(settings)
    assert profile.ca_der == pki.ca_der
    assert profile.trusted_server_names == ("radius.city.example",)
    assert profile.outer_identity == f"anonymous@{REALM}"


def test_config_off_by_default(tmp_path: Path) -> None:
    settings = load_config(write_config(tmp_path, "redis://127.0.0.1:1/0")).passpoint
    assert settings == PasspointSettings()
    with pytest.raises(ValueError):
        load_profile(settings)


def test_config_problems_are_reported(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "server.pem").write_bytes(pki.server_key_pem)  # a key where a cert belongs
    path = write_config(
        tmp_path,
        "redis://127.0.0.1:1/0",
        extra="""
        [passpoint]
        enabled = true
        realm = "Not A Realm"
        roaming_consortium = ["5a03"]
        server_cert = "server.pem"
        server_key = "missing.key"
        credential_days = 0
        relm = "typo"
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    for expected in (
        "passpoint.realm",
        "passpoint.roaming_consortium[0]",
        "missing required key 'ca_cert'",
        "holds no PEM certificate",
        "cannot read",
        "passpoint.credential_days",
        "unknown key 'relm'",
    ):
        assert expected in text, (expected, text)
