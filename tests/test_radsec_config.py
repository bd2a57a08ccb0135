"""RadSec configuration: ``[radsec]``, the ``[[clients]]`` certificate keys, and what
``check-config`` says of the certificate files (exists, parses, key matches, expiry); the
client lookup by certificate; and ``citywifi serve``'s Controller with RadSec on (a real
Redis, the real service): an Access-Request over TLS accepted, accounting booked."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli.serve import Controller
from controller.config import check_config, load_config
from controller.config.model import Client
from controller.domain.radsec_peers import RadsecPeers
from controller.services.enforcer import dae_target
from controller.services.logins import issue_login
from controller.services.radius_service import anonymous_person
from controller.storage import keys
from radius.attrs import AcctStatus, Attr, Code
from radius.dae import DaeOutcome, SessionIdentity
from radius.packet import (
    attr,
    attr_int,
    attr_text,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    encrypt_user_password,
)
from radius.radsec import RADSEC_SECRET
from tests.conftest import service_sections
from tests.support.radsec_kit import (
    Pki,
    RadsecClient,
    client_context,
    issue,
    make_ca,
    make_pki,
)
from tests.support.redis_proc import RedisProcess
from tests.test_config import BASE, only


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def radsec_table(pki: Pki, **override: str) -> str:
    values = {
        "certificate": str(pki.server.cert),
        "private_key": str(pki.server.key),
        "ca_certificates": str(pki.ca),
        **override,
    }
    lines = "\n".join(f'{k} = "{v}"' for k, v in values.items())
    return f'\n[radsec]\nenabled = true\nbind = "127.0.0.1"\nport = 0\n{lines}\n'


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "citywifi.toml"
    path.write_text(text)
    return [str(p) for p in check_config(path, environ={})]


def test_radsec_off_needs_no_files(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE + "\n[radsec]\nenabled = false\n") == []


def test_valid_files_load(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "citywifi.toml"
    path.write_text(BASE + radsec_table(pki))
    config = load_config(path, environ={})
    assert config.radsec.enabled and config.radsec.port == 0
    assert config.radsec.certificate == pki.server.cert
    assert config.radsec.idle_timeout == 120.0 and config.radsec.max_in_flight == 256


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("certificate", "missing.pem", "cannot read"),
        ("private_key", "missing.key", "cannot read"),
        ("ca_certificates", "missing-ca.pem", "cannot read"),
        ("certificate", "{key}", "holds no PEM certificate"),
        ("private_key", "{cert}", "holds no PEM private key"),
        ("private_key", "{other_key}", "is not the certificate's"),
        ("certificate", "", "missing required key 'certificate' (radsec is enabled)"),
    ],
)
def test_check_config_names_the_file_and_key(
    tmp_path: Path, pki: Pki, key: str, value: str, says: str
) -> None:
    value = value.format(key=pki.server.key, cert=pki.server.cert, other_key=pki.client.key)
    path = tmp_path / "citywifi.toml"
    text = BASE + radsec_table(pki, **{key: value})
    path.write_text(text)
    found = check_config(path, environ={})
    problem = only(found, f"radsec.{key}")
    assert says in problem.message, str(problem)
    assert problem.line == next(
        i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(f"{key} =")
    )


def test_a_garbled_certificate_is_said(tmp_path: Path, pki: Pki) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    found = problems(tmp_path, BASE + radsec_table(pki, certificate=str(bad)))
    assert any("radsec.certificate" in p and "does not parse" in p for p in found), found


def test_an_expired_certificate_is_refused_and_one_expiring_soon_warned(
    tmp_path: Path, pki: Pki
) -> None:
    ca = make_ca(tmp_path, "short CA")
    old = issue(
        tmp_path,
        "old",
        ca[:2],
        "old.example",
        server=True,
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
    )
    found = problems(
        tmp_path, BASE + radsec_table(pki, certificate=str(old.cert), private_key=str(old.key))
    )
    assert any("radsec.certificate" in p and "expired on" in p for p in found), found
    soon = issue(tmp_path, "soon", ca[:2], "soon.example", server=True, days=10)
    path = tmp_path / "citywifi.toml"
    path.write_text(
        BASE
        + radsec_table(
            pki, certificate=str(soon.cert), private_key=str(soon.key), ca_certificates=str(ca[2])
        )
    )
    said = check_config(path, environ={}, warnings=True)
    warned = [p for p in said if p.key == "radsec.certificate"]
    assert warned and warned[0].warning and "within 30 days" in warned[0].message


def test_client_certificate_keys_are_checked(tmp_path: Path, pki: Pki) -> None:
    client = textwrap.dedent(
        """
        [[clients]]
        id = "rs-1"
        address = "10.9.0.1"
        secret = "nas-Rt5mQ8wZ2kLp9v"
        venue = "v1"
        radsec_fingerprint = ["{fp}"]
        radsec_subject = "NAS-1.example"
        """
    )
    colons = ":".join(pki.client.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    path = tmp_path / "citywifi.toml"
    path.write_text(BASE + client.format(fp=colons))
    config = load_config(path, environ={})
    rs = next(c for c in config.clients if c.id == "rs-1")
    assert rs.radsec_fingerprint == (pki.client.fingerprint,)
    assert rs.radsec_subject == "nas-1.example"
    found = problems(tmp_path, BASE + client.format(fp="abc"))
    assert any("radsec_fingerprint" in p and "SHA-256" in p for p in found), found
    twice = client.format(fp=pki.client.fingerprint)
    second = twice.replace('"rs-1"', '"rs-2"').replace("10.9.0.1", "10.9.0.2")
    found = problems(tmp_path, BASE + twice + second)
    assert any("a certificate must name one client" in p for p in found), found
    assert any("radsec_subject" in p for p in found), found


def _client(cid: str, fingerprints: tuple[str, ...] = (), subject: str = "") -> Client:
    import ipaddress

    return Client(
        id=cid,
        network=ipaddress.ip_network("10.0.0.1"),
        secret=b"s",
        venue="v",
        radsec_fingerprint=fingerprints,
        radsec_subject=subject,
    )


def test_a_certificate_names_a_client_by_fingerprint_or_subject() -> None:
    pinned = _client("pinned", ("a" * 64,), "nas.example")
    by_name = _client("by-name", subject="ap-7.example")
    peers = RadsecPeers([pinned, by_name, _client("udp-only")])
    assert peers.client_for("a" * 64, ("nas.example",)) is pinned
    assert peers.client_for("a" * 64, ("other.example",)) is None  # pinned and named
    assert peers.client_for("b" * 64, ("ap-7.example",)) is by_name
    assert peers.client_for("b" * 64, ("nas.example",)) is None  # pinned: no subject alone
    assert peers.client_for("c" * 64, ()) is None


# ------------------------------------------------------------------- citywifi serve, for real


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path / "redis")
    proc.start()
    yield proc
    proc.stop()


async def test_serve_answers_auth_and_accounting_over_radsec(
    tmp_path: Path, pki: Pki, redis_proc: RedisProcess
) -> None:
    text = (
        service_sections(redis_proc.url)
        + textwrap.dedent(
            f"""
        [[operators]]
        id = "op-a"
        name = "A"

        [[venues]]
        id = "v1"
        name = "V"
        type = "hospital"
        district = "d"
        operator = "op-a"

        [[clients]]
        id = "nas-rs"
        address = "192.0.2.10"
        secret = "nas-Rt5mQ8wZ2kLp9v"
        venue = "v1"
        radsec_fingerprint = ["{pki.client.fingerprint}"]
        radsec_dae = true
        """
        )
        + radsec_table(pki)
    )
    path = tmp_path / "citywifi.toml"
    path.write_text(text)
    controller = Controller(load_config(path))
    await controller.start()
    try:
        assert controller.radsec is not None and controller.store is not None
        issued = await issue_login(
            controller.store,
            phone_e164="+8613800190003",
            mac="AA-BB-CC-00-19-03",
            client_id="nas-rs",
            person_key=controller.person_key,
            ttl=300,
            now=int(time.time()),
        )
        authenticator = bytes(range(16))
        access = encode_request(
            Code.ACCESS_REQUEST,
            1,
            RADSEC_SECRET,
            attr_text(Attr.USER_NAME, issued.username)
            + attr_text(Attr.CALLING_STATION_ID, "AA-BB-CC-00-19-03")
            + attr(
                Attr.USER_PASSWORD,
                encrypt_user_password(issued.password.encode(), RADSEC_SECRET, authenticator),
            ),
            authenticator=authenticator,
        )
        acct = encode_request(
            Code.ACCOUNTING_REQUEST,
            2,
            RADSEC_SECRET,
            attr_int(Attr.ACCT_STATUS_TYPE, AcctStatus.START)
            + attr_text(Attr.ACCT_SESSION_ID, "rs-1")
            + attr_text(Attr.USER_NAME, "aa-bb-cc-00-19-99"),
        )
        client = await asyncio.to_thread(
            RadsecClient, controller.radsec.port, client_context(pki, pki.client)
        )
        with client:
            await asyncio.to_thread(client.send, access + acct)
            answers = {}
            for _ in range(2):
                answer = await asyncio.to_thread(client.read)
                assert answer is not None
                answers[answer[1]] = answer
            # the enforcer's DAE client sends down this open connection (radsec_dae)
            assert controller.enforcer is not None and controller.enforcer.dae is not None

            def nas_acks() -> int:
                data = client.read()
                assert data is not None
                request = decode_request(data, RADSEC_SECRET)
                client.send(encode_reply(Code.DISCONNECT_ACK, request, RADSEC_SECRET, b""))
                return request.code

            nas = asyncio.ensure_future(asyncio.to_thread(nas_acks))
            result = await controller.enforcer.dae.disconnect(
                dae_target(controller.config.clients[0], "192.0.2.10"),
                SessionIdentity("rs-1", user_name="aa-bb-cc-00-19-99"),
                event_timestamp=int(time.time()),
            )
            assert result.outcome is DaeOutcome.ACK and await nas == Code.DISCONNECT_REQUEST
        accept = decode_reply(answers[1], RADSEC_SECRET, access[4:20])
        assert accept.code == Code.ACCESS_ACCEPT, accept
        assert (accept.integer(Attr.SESSION_TIMEOUT) or 0) > 0
        assert decode_reply(answers[2], RADSEC_SECRET, acct[4:20]).code == (
            Code.ACCOUNTING_RESPONSE
        )
        pid = anonymous_person("nas-rs", "aa-bb-cc-00-19-99")
        record = await controller.store.session(pid, keys.session_id("nas-rs", "rs-1"))
        assert record, "the Accounting-Request over RadSec was booked"
        before = controller.radsec.context  # SIGHUP reads the certificate files again
        controller._reload_radsec_certificates(controller.config)
        assert controller.radsec.context is not before
    finally:
        await controller.stop()


def test_disconnect_goes_over_radsec_only_for_a_client_that_asks() -> None:
    """``radsec_dae``: the enforcer names the client in the DAE target, so DaeClient
    sends down its open RadSec connection (UDP to coa_port otherwise, or when none is open)."""
    plain = _client("udp-nas")
    assert dae_target(plain, "10.0.0.1").client == ""
    over = dataclasses.replace(_client("rs-nas", ("a" * 64,)), radsec_dae=True)
    target = dae_target(over, "10.0.0.1")
    assert target.client == "rs-nas" and (target.host, target.port) == ("10.0.0.1", 3799)


def test_an_encrypted_key_and_a_certificate_not_yet_valid_are_said(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from controller.config.radsec import (
        CertificateProblem,
        check_certificate,
        check_private_key,
        normalize_fingerprint,
    )

    ca = make_ca(tmp_path, "unit CA")
    later = issue(
        tmp_path,
        "later",
        ca[:2],
        "later.example",
        days=30,
        not_before=dt.datetime.now(dt.UTC) + dt.timedelta(days=2),
    )
    with pytest.raises(CertificateProblem, match="is not valid before"):
        check_certificate(later.cert)
    key = serialization.load_pem_private_key(later.key.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
    )
    with pytest.raises(CertificateProblem, match="encrypted"):
        check_private_key(locked, None)
    fp = "ab" * 32
    assert normalize_fingerprint("SHA256:" + ":".join(["AB"] * 32)) == fp
    assert normalize_fingerprint(fp[:-2]) is None


def test_radsec_without_a_client_to_name_is_warned(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "citywifi.toml"
    path.write_text(BASE + radsec_table(pki))
    said = check_config(path, environ={}, warnings=True)
    warned = [p for p in said if p.key == "radsec.enabled"]
    assert warned and warned[0].warning and "every RadSec connection" in warned[0].message
    assert warned[0].line is not None
