"""EAP-TTLS/PAP through ``citywifi serve``: eapol_test (Debian eapoltest, wpa_supplicant's
EAP peer acting as NAS and phone) against the real Controller on a real Redis.

What issue 19 asks of the wiring: Access-Accept with the allowance's Session-Timeout and
the MS-MPPE keys eapol_test checks against its own MSK; a wrong password, a revoked
credential and a used-up allowance get Access-Reject (the last with the reset time);
the session's accounting is counted for the person (via the signed Class of kind ``e``).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import textwrap
import time
from pathlib import Path

import pytest

from controller.cli.serve import Controller
from controller.config import load_config
from controller.domain.eap_credentials import RANDOM_OCTETS, CredentialPolicy, IssuedCredential
from controller.domain.identity import class_key, verify_class
from controller.services.passpoint import issue_for
from controller.storage import keys
from controller.storage.eap_credentials import EapCredentialStore
from tests.conftest import write_config
from tests.support.eap_kit import EAPOL_TEST, EapolResult, Pki, make_pki, run_eapol_test
from tests.support.redis_proc import RedisProcess
from tests.test_interop_sessions import accounting, login, signed_class

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not Path(EAPOL_TEST).exists(),
        reason="eapol_test missing: bash scripts/bootstrap.sh --test",
    ),
]

REALM = "city.example"
# eapol_test's Calling-Station-Id (its own MAC address, 02:00:00:00:00:01)
EAPOL_MAC = "02-00-00-00-00-01"


def _city(tmp_path: Path, redis_url: str, pki: Pki) -> Controller:
    (tmp_path / "ca.pem").write_bytes(pki.ca_pem)
    (tmp_path / "server.pem").write_bytes(pki.server_chain_pem)
    key = tmp_path / "server.key"
    key.write_bytes(pki.server_key_pem)
    key.chmod(0o600)
    extra = f"""
        [passpoint]
        enabled = true
        realm = "{REALM}"
        ca_cert = "{tmp_path / "ca.pem"}"
        server_cert = "{tmp_path / "server.pem"}"
        server_key = "{key}"
        """
    return Controller(load_config(write_config(tmp_path, redis_url, extra=textwrap.dedent(extra))))


async def _issue(ctl: Controller, pid: str) -> IssuedCredential:
    assert ctl.store is not None
    policy = CredentialPolicy(REALM, memory_kib=1024, time_cost=1)  # cheap for the test
    return await issue_for(
        EapCredentialStore(ctl.store.redis),
        policy,
        pid,
        int(time.time()),
        secrets.token_bytes(RANDOM_OCTETS),
    )


async def _eapol(ctl: Controller, tmp_path: Path, pki: Pki, user: str, pw: str) -> EapolResult:
    return await asyncio.to_thread(
        run_eapol_test,
        tmp_path,
        ctl.auth_port,
        ca_pem=pki.ca_pem,
        identity=user,
        password=pw,
        anonymous_identity=f"anonymous@{REALM}",
        timeout=8,
    )


def _attribute(output: str, number: int) -> str:
    """The value eapol_test printed for RADIUS attribute ``number`` of the last Accept."""
    found = re.findall(rf"Attribute {number} \([^)]*\) length=\d+\s*\n\s*Value: (.*)", output)
    return found[-1].strip() if found else ""


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(REALM)


async def test_eap_ttls_login_through_serve_then_accounting(
    tmp_path: Path, redis_proc: RedisProcess, pki: Pki
) -> None:
    ctl = _city(tmp_path, redis_proc.url, pki)
    await ctl.start()
    try:
        assert ctl.store is not None
        person = (await login(ctl)).person
        issued = await _issue(ctl, person)
        user, secret = issued.credential.username, issued.secret

        ok = await _eapol(ctl, tmp_path, pki, user, secret)
        assert ok.ok, ok.output[-3000:]
        assert "MPPE keys OK: 1  mismatch: 0" in ok.output
        assert _attribute(ok.output, 27) == "7200"  # Session-Timeout: the whole day left
        assert user in _attribute(ok.output, 1)  # User-Name: the inner identity

        klass = bytes.fromhex(_attribute(ok.output, 25))  # eapol_test prints it in hex
        claim = verify_class(class_key(ctl.person_key), klass, "nas-local")
        assert claim is not None and (claim.person, claim.kind) == (person, "e")

        # accounting for that session is the person's, like a portal login's
        await accounting(ctl, "Start", "eap-1", 0, cls=klass, mac=EAPOL_MAC)
        await accounting(ctl, "Stop", "eap-1", 600, cls=klass, mac=EAPOL_MAC)
        record = await ctl.store.session(person, keys.session_id("nas-local", "eap-1"))
        assert record["pid"] == person and record["login"] == claim.nonce

        wrong = await _eapol(ctl, tmp_path, pki, user, secret + "x")
        assert not wrong.ok and "Access-Reject" in wrong.output
    finally:
        await ctl.stop()


async def test_eap_ttls_revoked_and_used_up_are_rejected(
    tmp_path: Path, redis_proc: RedisProcess, pki: Pki
) -> None:
    ctl = _city(tmp_path, redis_proc.url, pki)
    await ctl.start()
    try:
        assert ctl.store is not None
        person = (await login(ctl, phone="+8613800138077")).person
        issued = await _issue(ctl, person)
        user, secret = issued.credential.username, issued.secret

        # the whole day used up by an earlier session: TTLS succeeds, the allowance refuses
        cls = signed_class(ctl, person)
        await accounting(ctl, "Start", "day-1", 0, cls=cls)
        await accounting(ctl, "Stop", "day-1", 7200, cls=cls)
        used_up = await _eapol(ctl, tmp_path, pki, user, secret)
        assert not used_up.ok and "Access-Reject" in used_up.output
        message = _attribute(used_up.output, 18)
        assert "used up" in message and "00:00" in message, used_up.output[-3000:]

        assert await EapCredentialStore(ctl.store.redis).revoke(person, user)
        revoked = await _eapol(ctl, tmp_path, pki, user, secret)
        assert not revoked.ok and "Access-Reject" in revoked.output
    finally:
        await ctl.stop()
