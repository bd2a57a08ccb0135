"""``GET /api/v1/profile``: a person verified by SMS downloads "connect automatically".

A live Controller with the portal on real Redis: the SMS login (the file SMS backend)
sets the device cookie; with it the Android and Apple profiles download (no-store),
parse, and carry a fresh credential stored in Redis for that person; without a login
401, another kind 400; the person's list, and revoke of one's own credential only
(JSON only). ``peers``: eapol_test then logs in through the same serve with the
username and secret read back from the downloaded Android profile, and is refused
once the portal revoked it.
"""

from __future__ import annotations

import asyncio
import plistlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.services.passpoint import ANDROID_MIME_TYPE, APPLE_MIME_TYPE
from controller.storage.eap_credentials import EapCredentialStore
from tests.support.clocks import SUITE_ZONE, local_hour_clock
from tests.support.eap_kit import EAPOL_TEST, Pki, make_pki, passpoint_section, run_eapol_test
from tests.support.portal_kit import Rig, running_portal
from tests.support.redis_proc import RedisProcess
from tests.test_eap_peers import _android_parts, _pps_credential

REALM = "city.example"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(REALM)


@pytest.fixture
async def rig(tmp_path: Path, redis_proc: RedisProcess, pki: Pki) -> AsyncIterator[Rig]:
    passpoint = passpoint_section(tmp_path, pki, REALM)
    async with running_portal(tmp_path, redis_proc.url, clients=passpoint) as r:
        yield r


async def _sms_login(rig: Rig, phone: str = "13800138061") -> str:
    status, body, _ = await rig.post_json("/api/v1/otp", {"phone": phone, "nas_id": "nas-local"})
    assert status == 202, body
    code = rig.code("+86" + phone)
    status, body, _ = await rig.post_json(
        "/api/v1/login", {"phone": phone, "code": code, "nas_id": "nas-local"}
    )
    assert status == 200, body
    return str(body["username"]).split(".", 1)[0]  # <person-id>.<token>


async def _get(rig: Rig, query: str) -> tuple[int, str, str, bytes]:
    async with rig.http.get(f"{rig.base}/api/v1/profile{query}") as r:
        return r.status, r.content_type, r.headers.get("Cache-Control", ""), await r.read()


async def test_profile_download_needs_a_login_and_carries_a_stored_credential(rig: Rig) -> None:
    assert (await _get(rig, "?kind=android"))[0] == 401  # no login in this browser
    pid = await _sms_login(rig)
    assert (await _get(rig, "?kind=windows"))[0] == 400

    status, ctype, cache, body = await _get(rig, "?kind=android")
    assert (status, ctype, cache) == (200, ANDROID_MIME_TYPE, "no-store")
    username, password, realm = _pps_credential(
        _android_parts(body)["application/x-passpoint-profile"]
    )
    assert realm == REALM and username.endswith("@" + REALM) and password

    status, ctype, cache, body = await _get(rig, "?kind=apple")
    assert (status, ctype, cache) == (200, APPLE_MIME_TYPE, "no-store")
    plist = plistlib.loads(body)
    assert plist["PayloadType"] == "Configuration"

    assert rig.ctl.store is not None
    store = EapCredentialStore(rig.ctl.store.redis)
    stored = await store.lookup(username)
    assert stored is not None and stored.person_id == pid
    assert len(await store.for_person(pid)) == 2  # one per download

    status, listed, _ = await rig.get_json("/api/v1/profile/credentials")
    assert status == 200 and sorted(c["label"] for c in listed["credentials"]) == [
        "android",
        "apple",
    ]
    assert all("hash" not in c and "secret" not in c for c in listed["credentials"])

    # revoke: only one's own credential, then it is gone
    status, body, _ = await rig.post_json("/api/v1/profile/revoke", {"username": "x@" + REALM})
    assert (status, body["error"]) == (404, "not_found")
    status, body, _ = await rig.post_json("/api/v1/profile/revoke", {"username": username})
    assert (status, body) == (200, {"revoked": username})
    assert await store.lookup(username) is None
    async with rig.http.post(  # a cross-site form cannot send JSON: refused
        f"{rig.base}/api/v1/profile/revoke", data={"username": username}
    ) as r:
        assert r.status == 415


@pytest.mark.peers
@pytest.mark.skipif(not Path(EAPOL_TEST).exists(), reason="eapol_test missing")
async def test_the_downloaded_profile_logs_in_through_serve(
    rig: Rig, pki: Pki, tmp_path: Path
) -> None:
    await _sms_login(rig, "13800138062")
    status, _, _, body = await _get(rig, "?kind=android")
    assert status == 200
    username, password, realm = _pps_credential(
        _android_parts(body)["application/x-passpoint-profile"]
    )
    result = await asyncio.to_thread(
        run_eapol_test,
        tmp_path,
        rig.ctl.auth_port,
        ca_pem=pki.ca_pem,
        identity=username,
        password=password,
        anonymous_identity=f"anonymous@{realm}",
        timeout=8,
    )
    assert result.ok, result.output[-3000:]
    assert "MPPE keys OK: 1  mismatch: 0" in result.output

    # revoked on the portal: the next login is refused
    status, _, _ = await rig.post_json("/api/v1/profile/revoke", {"username": username})
    assert status == 200
    again = await asyncio.to_thread(
        run_eapol_test,
        tmp_path,
        rig.ctl.auth_port,
        ca_pem=pki.ca_pem,
        identity=username,
        password=password,
        anonymous_identity=f"anonymous@{realm}",
        timeout=5,
    )
    assert not again.ok and "Access-Reject" in again.output


async def test_the_credential_is_issued_on_the_controllers_clock(
    tmp_path: Path, redis_proc: RedisProcess, pki: Pki
) -> None:
    """The RADIUS side checks ``issued_at <= now < expires_at`` on the Controller's
    clock; issued on the wall clock instead, a download was refused as not yet valid
    whenever the two differed (the suite's noon clock, after 04:00 UTC)."""
    noon = local_hour_clock(SUITE_ZONE)
    clock = lambda: noon() + 2 * 86400  # noqa: E731 - days ahead of the wall
    passpoint = passpoint_section(tmp_path, pki, REALM)
    async with running_portal(tmp_path, redis_proc.url, clients=passpoint, clock=clock) as rig:
        await _sms_login(rig, "13800138063")
        status, _, _, body = await _get(rig, "?kind=android")
        assert status == 200
        username = _pps_credential(_android_parts(body)["application/x-passpoint-profile"])[0]
        assert rig.ctl.store is not None
        stored = await EapCredentialStore(rig.ctl.store.redis).lookup(username)
        assert stored is not None
        assert abs(stored.issued_at - clock()) < 60
        assert stored.valid_at(clock())
