"""A verified person's "connect automatically" profile download (issue 19).

Each download issues a fresh EAP credential (``passpoint.issue_for``: random username in
the realm, random secret, only its argon2id hash stored) and wraps it in the profile the
phone installs: Android's ``application/x-wifi-config`` or Apple's ``.mobileconfig``.
The secret exists only in that response (served ``Cache-Control: no-store``); a lost
profile is replaced by downloading again and revoking the old one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final, Literal

from controller.config.passpoint import PasspointSettings
from controller.domain.eap_credentials import RANDOM_OCTETS, CredentialPolicy, EapCredential
from controller.services.passpoint import (
    ANDROID_MIME_TYPE,
    APPLE_MIME_TYPE,
    android_wifi_config,
    apple_mobileconfig,
    issue_for,
    load_profile,
)
from controller.storage.eap_credentials import EapCredentialStore
from controller.storage.redis_conn import RedisClient

__all__ = ["KINDS", "ProfileDownload", "ProfileKind", "credentials_of", "download", "revoke"]

ProfileKind = Literal["android", "apple"]
KINDS: Final[tuple[ProfileKind, ...]] = ("android", "apple")


@dataclass(frozen=True, slots=True)
class ProfileDownload:
    """The response body, its Content-Type and the file name to offer."""

    body: bytes
    content_type: str
    filename: str
    username: str


async def download(
    client: RedisClient,
    settings: PasspointSettings,
    person_id: str,
    kind: ProfileKind,
    now: int,
    *,
    random_octets: bytes | None = None,
) -> ProfileDownload:
    """Issue a credential for ``person_id`` and build its ``kind`` profile. Raises
    ValueError when ``[passpoint]`` is off or its files are unusable."""
    profile = load_profile(settings)  # raises ValueError when off
    policy = CredentialPolicy(settings.realm, settings.credential_days)
    octets = random_octets if random_octets is not None else secrets.token_bytes(RANDOM_OCTETS)
    issued = await issue_for(EapCredentialStore(client), policy, person_id, now, octets, label=kind)
    if kind == "android":
        body = android_wifi_config(profile, issued)
        return ProfileDownload(
            body, ANDROID_MIME_TYPE, "citywifi.wifi-config", issued.credential.username
        )
    body = apple_mobileconfig(profile, issued)
    return ProfileDownload(
        body, APPLE_MIME_TYPE, "citywifi.mobileconfig", issued.credential.username
    )


async def credentials_of(client: RedisClient, person_id: str) -> list[EapCredential]:
    """The person's live credentials, oldest first (for the status page)."""
    return await EapCredentialStore(client).for_person(person_id)


async def revoke(client: RedisClient, person_id: str, username: str) -> bool:
    """Revoke one of the person's own credentials; False when it is not theirs or gone.
    From then on it neither logs in nor resumes a TLS session (the EAP service checks
    the credential again on every success)."""
    return await EapCredentialStore(client).revoke(person_id, username)
