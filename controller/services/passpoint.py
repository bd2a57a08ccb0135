"""Passpoint (Hotspot 2.0) profiles: "connect automatically" for Android and Apple devices.

After sign-up a verified person gets an EAP credential (``domain/eap_credentials``) and a
profile that installs it, so the phone joins the city's network by itself, with
EAP-TTLS/PAP against our server, whatever MAC address it randomises to.

- **Android** (``android_wifi_config``): the ``application/x-wifi-config`` file that
  Android 8.1+ installs from a browser download: base64 of a MIME ``multipart/mixed``
  whose parts are base64 too: ``application/x-passpoint-profile`` (the Hotspot 2.0
  PerProviderSubscription management object, OMA-DM DDF XML, WFA "Hotspot 2.0 Release 2
  Technical Specification" §9.1) and ``application/x-x509-ca-cert`` (the CA, DER). The
  PPS MO holds HomeSP (FriendlyName, FQDN, RoamingConsortiumOI) and Credential (Realm,
  UsernamePassword with the password base64-encoded as the MO requires, EAPMethod
  EAPType 21 = TTLS, InnerMethod PAP, and ExpirationDate). Android 11+ checks the
  server certificate against the CA and the home FQDN (domain suffix), so the server
  certificate must name a host under ``home_domain``.
- **Apple** (``apple_mobileconfig``): a configuration profile (property list,
  ``plistlib``) with a ``com.apple.wifi.managed`` payload (IsHotspot, DomainName,
  NAIRealmNames, RoamingConsortiumOIs, ServiceProviderRoamingEnabled, DisplayedOperatorName,
  and EAPClientConfiguration: TTLS, PAP inner, the username, password, the anonymous
  outer identity, TLSTrustedServerNames and the CA payload as the only anchor) and a
  ``com.apple.security.root`` payload with the CA. ``RemovalDate`` is the credential's
  expiry. The profile is not signed (signing needs a code-signing certificate of the
  city's; iOS then shows it as "Not Verified", which works).

Both are pure functions of the profile settings and the issued credential; identifiers
(payload UUIDs, the MIME boundary) are derived from the username, so downloading the
profile again on the same credential replaces it on the device instead of adding one.
Loading the CA and the server certificate from files is ``load_profile``, the one I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import plistlib
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.config.passpoint import PasspointSettings
from controller.domain.eap_credentials import (
    RANDOM_OCTETS,
    CredentialPolicy,
    IssuedCredential,
    issue_credential,
)
from controller.storage.eap_credentials import EapCredentialStore

__all__ = [
    "ANDROID_MIME_TYPE",
    "APPLE_MIME_TYPE",
    "PasspointProfile",
    "android_wifi_config",
    "apple_mobileconfig",
    "issue_for",
    "load_profile",
    "pps_mo_xml",
]

ANDROID_MIME_TYPE: Final = "application/x-wifi-config"
APPLE_MIME_TYPE: Final = "application/x-apple-aspen-config"
PPS_DDF: Final = "urn:wfa:mo:hotspot2dot0-perprovidersubscription:1.0"
EAP_TTLS: Final = 21
_NAMESPACE: Final = uuid.UUID("6f0a3c52-8a51-4c4e-9a57-636974797769")  # ours, fixed


@dataclass(frozen=True, slots=True)
class PasspointProfile:
    """What every profile of this city says: the Hotspot 2.0 identity of the home
    provider and the CA that vouches for the EAP server."""

    realm: str
    home_domain: str
    friendly_name: str
    roaming_consortium: tuple[str, ...]
    ca_der: bytes
    trusted_server_names: tuple[str, ...]
    """DNS names of the EAP server certificate (Apple's TLSTrustedServerNames)."""
    organisation: str = ""

    @property
    def outer_identity(self) -> str:
        """What the phone sends in the clear (RFC 7542 §2.4): routable, anonymous."""
        return f"anonymous@{self.realm}"


def _server_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.value.get_values_for_type(x509.DNSName))


def load_profile(settings: PasspointSettings, organisation: str = "") -> PasspointProfile:
    """The profile settings from ``[passpoint]``: reads the CA and the server certificate
    (for its DNS names). Raises ValueError when passpoint is off or a file is unusable."""
    if not settings.enabled or settings.ca_cert is None or settings.server_cert is None:
        raise ValueError("passpoint is not enabled")
    ca = x509.load_pem_x509_certificate(settings.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificates(settings.server_cert.read_bytes())[0]
    return PasspointProfile(
        realm=settings.realm,
        home_domain=settings.home_domain or settings.realm,
        friendly_name=settings.friendly_name,
        roaming_consortium=settings.roaming_consortium,
        ca_der=ca.public_bytes(serialization.Encoding.DER),
        trusted_server_names=_server_names(server),
        organisation=organisation,
    )


async def issue_for(
    store: EapCredentialStore,
    policy: CredentialPolicy,
    person_id: str,
    now: int,
    random_octets: bytes,
    *,
    label: str = "",
) -> IssuedCredential:
    """Make a credential for a verified person and store its hash; the secret in the
    result goes into the profile and nowhere else. ``random_octets``:
    ``secrets.token_bytes(RANDOM_OCTETS)``."""
    if len(random_octets) < RANDOM_OCTETS:
        raise ValueError(f"{RANDOM_OCTETS} random octets needed")
    issued = issue_credential(person_id, policy, now, random_octets, label=label)
    await store.save(issued.credential)
    return issued


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node(parent: ET.Element, name: str, value: str | None = None) -> ET.Element:
    node = ET.SubElement(parent, "Node")
    ET.SubElement(node, "NodeName").text = name
    if value is not None:
        ET.SubElement(node, "Value").text = value
    return node


def pps_mo_xml(profile: PasspointProfile, issued: IssuedCredential) -> bytes:
    """The PerProviderSubscription management object (OMA-DM DDF XML) for the credential."""
    tree = ET.Element("MgmtTree", xmlns="syncml:dmddf1.2")
    ET.SubElement(tree, "VerDTD").text = "1.2"
    pps = _node(tree, "PerProviderSubscription")
    rt = ET.SubElement(pps, "RTProperties")
    ET.SubElement(ET.SubElement(rt, "Type"), "DDFName").text = PPS_DDF
    instance = _node(pps, "i001")
    home = _node(instance, "HomeSP")
    _node(home, "FriendlyName", profile.friendly_name)
    _node(home, "FQDN", profile.home_domain)
    if profile.roaming_consortium:
        _node(home, "RoamingConsortiumOI", ",".join(profile.roaming_consortium))
    credential = _node(instance, "Credential")
    _node(credential, "CreationDate", _iso(issued.credential.issued_at))
    _node(credential, "ExpirationDate", _iso(issued.credential.expires_at))
    _node(credential, "Realm", profile.realm)
    userpass = _node(credential, "UsernamePassword")
    _node(userpass, "Username", issued.credential.username)
    _node(userpass, "Password", base64.b64encode(issued.secret.encode()).decode("ascii"))
    method = _node(userpass, "EAPMethod")
    _node(method, "EAPType", str(EAP_TTLS))
    _node(method, "InnerMethod", "PAP")
    xml: bytes = ET.tostring(tree, encoding="utf-8", xml_declaration=False)
    return xml


def _b64_lines(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))


def android_wifi_config(profile: PasspointProfile, issued: IssuedCredential) -> bytes:
    """The ``application/x-wifi-config`` body: base64 of the MIME multipart (see the
    module docstring). Serve it with that Content-Type; Android opens its installer."""
    boundary = hashlib.sha256(b"mime:" + issued.credential.username.encode()).hexdigest()[:32]
    parts = (
        ("application/x-passpoint-profile", pps_mo_xml(profile, issued)),
        ("application/x-x509-ca-cert", profile.ca_der),
    )
    lines = [
        f"Content-Type: multipart/mixed; boundary={boundary}",
        "Content-Transfer-Encoding: base64",
        "",
    ]
    for content_type, body in parts:
        lines += [
            f"--{boundary}",
            f"Content-Type: {content_type}",
            "Content-Transfer-Encoding: base64",
            "",
            _b64_lines(body),
        ]
    lines += [f"--{boundary}--", ""]
    return base64.b64encode("\r\n".join(lines).encode("ascii"))


def _uuid(username: str, what: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{what}:{username}")).upper()


def apple_mobileconfig(profile: PasspointProfile, issued: IssuedCredential) -> bytes:
    """The ``.mobileconfig`` property list (XML form), unsigned; serve it as
    ``application/x-apple-aspen-config``."""
    username = issued.credential.username
    ident = ".".join(reversed(profile.home_domain.split(".")))
    ca_uuid = _uuid(username, "ca")
    ca_payload: dict[str, Any] = {
        "PayloadType": "com.apple.security.root",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.passpoint.ca",
        "PayloadUUID": ca_uuid,
        "PayloadDisplayName": f"{profile.friendly_name} CA",
        "PayloadCertificateFileName": "ca.cer",
        "PayloadContent": profile.ca_der,
    }
    eap: dict[str, Any] = {
        "AcceptEAPTypes": [EAP_TTLS],
        "TTLSInnerAuthentication": "PAP",
        "UserName": username,
        "UserPassword": issued.secret,
        "OuterIdentity": profile.outer_identity,
        "PayloadCertificateAnchorUUID": [ca_uuid],
        "TLSTrustedServerNames": list(profile.trusted_server_names),
    }
    wifi: dict[str, Any] = {
        "PayloadType": "com.apple.wifi.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.passpoint.wifi",
        "PayloadUUID": _uuid(username, "wifi"),
        "PayloadDisplayName": profile.friendly_name,
        "AutoJoin": True,
        "EncryptionType": "WPA2",
        "IsHotspot": True,
        "DomainName": profile.home_domain,
        "NAIRealmNames": [profile.realm],
        "ServiceProviderRoamingEnabled": True,
        "DisplayedOperatorName": profile.friendly_name,
        "EAPClientConfiguration": eap,
    }
    if profile.roaming_consortium:
        wifi["RoamingConsortiumOIs"] = [oi.upper() for oi in profile.roaming_consortium]
    top: dict[str, Any] = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.passpoint",
        "PayloadUUID": _uuid(username, "profile"),
        "PayloadDisplayName": profile.friendly_name,
        "PayloadDescription": f"Connects automatically to {profile.friendly_name}.",
        "PayloadOrganization": profile.organisation or profile.friendly_name,
        "PayloadRemovalDisallowed": False,
        "RemovalDate": dt.datetime.fromtimestamp(issued.credential.expires_at, dt.UTC).replace(
            tzinfo=None
        ),
        "PayloadContent": [wifi, ca_payload],
    }
    return plistlib.dumps(top, fmt=plistlib.FMT_XML, sort_keys=True)
