"""Hand-off encodings (controller.services.portal.handoff): each one decoded back the way the NAS
does it and sent through the real RADIUS server, plus the pure parsing rules."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.cli.serve import Controller
from controller.services.logins import IssuedLogin, issue_login
from controller.services.portal.errors import PortalError
from controller.services.portal.handoff import (
    Handoff,
    HandoffTargets,
    NasRedirect,
    build_handoff,
    check_targets,
    chilli_chap,
    chilli_key,
    chilli_md,
    chilli_md_ok,
    chilli_pap,
    chilli_pap_decode,
    mikrotik_password,
    mikrotik_unescape,
    next_url,
    parse_redirect,
    split_md,
)
from tests.support.portal_kit import NAS, accepted, octal, radius_chap, radius_pap

CHALLENGE = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MAC = "AA-BB-CC-00-10-01"
# what the test clients allow, as an operator configures them (uam_addresses, login_hosts,
# login_url)
TARGETS = {
    "chilli": HandoffTargets(uam_networks=(ipaddress.ip_network("10.1.0.0/24"),)),
    "mikrotik": HandoffTargets(login_hosts=frozenset({"10.5.50.1"})),
    "generic": HandoffTargets(login_url="http://10.0.0.1/login"),
}


def handoff(vendor: str, redirect: NasRedirect, user: str, password: str, **kw: Any) -> Handoff:
    return build_handoff(vendor, redirect, user, password, targets=TARGETS[vendor], **kw)


async def login(ctl: Controller, mac: str = MAC) -> IssuedLogin:
    assert ctl.store is not None
    return await issue_login(
        ctl.store,
        phone_e164="+8613800138001",
        mac=mac,
        client_id="nas-local",  # NAS["generic"], which every test here logs in through
        person_key=ctl.person_key,
        ttl=300,
        now=int(ctl.clock()),
    )


# --------------------------------------------------------------------------- CoovaChilli


def test_chilli_key_with_and_without_uam_secret() -> None:
    raw = bytes.fromhex(CHALLENGE)
    assert chilli_key(CHALLENGE, "") == raw
    assert chilli_key(CHALLENGE, "s3cret") == hashlib.md5(raw + b"s3cret").digest()
    with pytest.raises(PortalError):
        chilli_key("not-hex", "")


def test_chilli_pap_known_vector() -> None:
    # P = "abc" padded to 16 NULs, K = challenge (no secret): hex(P xor K)
    padded = b"abc".ljust(16, b"\0")
    expected = bytes(a ^ b for a, b in zip(padded, bytes.fromhex(CHALLENGE), strict=True))
    assert chilli_pap("abc", CHALLENGE, "") == expected.hex()
    assert len(chilli_pap("a" * 20, CHALLENGE, "x")) == 64  # two 16-octet blocks


@given(st.text(st.characters(min_codepoint=1, max_codepoint=0x2FFF), max_size=60), st.text())
def test_chilli_pap_decodes_back(password: str, secret: str) -> None:
    encoded = chilli_pap(password, CHALLENGE, secret)
    assert chilli_pap_decode(encoded, CHALLENGE, secret) == password.encode()


def test_chilli_chap_is_md5_of_ident_password_key() -> None:
    key = chilli_key(CHALLENGE, "s")
    assert chilli_chap("pw", CHALLENGE, "s") == hashlib.md5(b"\0pw" + key).hexdigest()
    assert chilli_chap("pw", CHALLENGE, "s", ident=7) == hashlib.md5(b"\x07pw" + key).hexdigest()


def test_split_md_and_signature() -> None:
    assert split_md("res=notyet&uamip=1.2.3.4&md=ABC&lang=en") == (
        "res=notyet&uamip=1.2.3.4",
        "ABC",
        "lang=en",
    )
    assert split_md("res=notyet") == ("res=notyet", "", "")
    url = "https://portal.example/portal?res=notyet&uamip=10.1.0.1&uamport=3990"
    md = chilli_md(url, "sec")
    assert md == hashlib.md5((url + "sec").encode()).hexdigest().upper()
    assert chilli_md_ok(["http://other/portal?x", url], md, "sec")
    assert chilli_md_ok([url], md.lower(), "sec")
    assert not chilli_md_ok([url], md, "wrong")
    assert not chilli_md_ok([url + "&uamip=6.6.6.6"], md, "sec")
    assert not chilli_md_ok([url], "", "sec")


def test_chilli_logon_url_shape() -> None:
    redirect = parse_redirect(
        {"uamip": "10.1.0.1", "uamport": "3990", "challenge": CHALLENGE,
         "userurl": "http://example.com/a?b=c&d", "nasid": "ap"}
    )  # fmt: skip
    pap = handoff("chilli", redirect, "user.name", "pw", uam_secret="s")
    parts = urlsplit(pap.url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "10.1.0.1:3990", "/logon")
    query = dict(parse_qsl(parts.query))
    assert query == {
        "username": "user.name",
        "password": chilli_pap("pw", CHALLENGE, "s"),
        "userurl": "http://example.com/a?b=c&d",
    }
    chap = handoff("chilli", redirect, "u", "pw", uam_secret="s", uam_auth="chap")
    assert dict(parse_qsl(urlsplit(chap.url).query))["response"] == chilli_chap(
        "pw", CHALLENGE, "s"
    )
    assert pap.method == "GET" and pap.redirect_url == "http://example.com/a?b=c&d"


@pytest.mark.parametrize(
    "params",
    [
        {"uamport": "3990", "challenge": CHALLENGE},  # no uamip
        {"uamip": "evil.example/x", "uamport": "3990", "challenge": CHALLENGE},
        {"uamip": "10.1.0.1", "uamport": "99999", "challenge": CHALLENGE},
        {"uamip": "10.1.0.1", "uamport": "3990", "challenge": "zz"},
    ],
)
def test_chilli_handoff_refuses_bad_redirects(params: dict[str, str]) -> None:
    with pytest.raises(PortalError) as err:
        handoff("chilli", parse_redirect(params), "u", "p")
    assert err.value.code == "bad_redirect"


# --------------------------------------------------------------------------- MikroTik


def test_mikrotik_unescape() -> None:
    assert mikrotik_unescape("\\371") == b"\xf9"
    assert mikrotik_unescape("\\001\\042a\\377") == b"\x01\x22a\xff"
    assert mikrotik_unescape("plain") == b"plain"
    data = bytes(range(256))
    assert mikrotik_unescape(octal(data)) == data


def test_mikrotik_password_order() -> None:
    chap_id, challenge = "\\371", "\\123\\045" + "\\000" * 14
    expected = hashlib.md5(b"\xf9" + b"secretpw" + b"\x53\x25" + b"\0" * 14).hexdigest()
    assert mikrotik_password(chap_id, "secretpw", challenge) == expected


def test_mikrotik_handoff_form() -> None:
    redirect = parse_redirect(
        {"link-login-only": "http://10.5.50.1/login", "chap-id": "\\001",
         "chap-challenge": "\\002" * 16, "dst": "http://example.com/", "mac": "aa:bb:cc:dd:ee:ff"}
    )  # fmt: skip
    form = handoff("mikrotik", redirect, "user", "pw")
    assert form.method == "POST" and form.url == "http://10.5.50.1/login"
    assert dict(form.fields) == {
        "username": "user",
        "password": mikrotik_password("\\001", "pw", "\\002" * 16),
        "dst": "http://example.com/",
        "popup": "true",
    }
    bad = NasRedirect(link_login_only="javascript:alert(1)", chap_id="\\1", chap_challenge="\\2")
    with pytest.raises(PortalError):
        handoff("mikrotik", bad, "u", "p")
    with pytest.raises(PortalError):
        handoff("mikrotik", NasRedirect(chap_id="\\1", chap_challenge="\\2"), "u", "p")
    pap = handoff("mikrotik", NasRedirect(link_login_only="http://10.5.50.1/login"), "u", "p")
    assert dict(pap.fields)["password"] == "p"  # login-by=http-pap


def test_generic_handoff() -> None:
    redirect = parse_redirect({"nas_id": "x", "url": "http://a/"})
    plain = build_handoff("generic", redirect, "u", "p", targets=HandoffTargets())
    assert (plain.method, plain.url, plain.redirect_url) == ("NONE", "", "http://a/")
    for named in ("", "http://10.0.0.1/login"):  # the configured URL, named or not
        form = handoff(
            "generic", parse_redirect({"login_url": named, "url": "http://a/"}), "u", "p"
        )
        assert form.method == "POST" and form.url == "http://10.0.0.1/login"
        assert dict(form.fields) == {"username": "u", "password": "p", "url": "http://a/"}


# --------------------------------------------------------------------------- hand-off targets


@pytest.mark.parametrize(
    ("vendor", "params", "signed"),
    [
        ("chilli", {"uamip": "10.1.0.9"}, False),  # a configured UAM network
        ("chilli", {"uamip": "192.0.2.66"}, True),  # elsewhere, but md vouches for it
        ("mikrotik", {"link-login-only": "https://10.5.50.1:8443/login"}, False),
        ("mikrotik", {"link-login-only": "http://10.5.50.1/login"}, False),
        ("generic", {"login_url": "http://10.0.0.1/login"}, False),
        ("generic", {}, False),
    ],
)
def test_targets_the_client_allows(vendor: str, params: dict[str, str], signed: bool) -> None:
    check_targets(vendor, parse_redirect(params), TARGETS[vendor], signed)


@pytest.mark.parametrize(
    ("vendor", "params", "code"),
    [
        ("chilli", {"uamip": "192.0.2.66"}, "handoff_not_allowed"),
        ("chilli", {"uamip": "evil.example"}, "bad_redirect"),
        ("mikrotik", {"link-login-only": "https://evil.example/login"}, "handoff_not_allowed"),
        ("mikrotik", {"link-login-only": "http://10.5.50.1.evil.example/"}, "handoff_not_allowed"),
        ("mikrotik", {"link-login-only": "http://u@evil.example/10.5.50.1"}, "handoff_not_allowed"),
        ("mikrotik", {"link-login-only": "javascript:alert(1)//10.5.50.1"}, "bad_redirect"),
        ("generic", {"login_url": "https://evil.example/steal"}, "handoff_not_allowed"),
        ("generic", {"login_url": "http://10.0.0.1/login?x"}, "handoff_not_allowed"),
    ],
)
def test_targets_the_client_does_not_allow(vendor: str, params: dict[str, str], code: str) -> None:
    with pytest.raises(PortalError) as err:
        check_targets(vendor, parse_redirect(params), TARGETS[vendor], signed=False)
    assert err.value.code == code


def test_the_clients_own_single_address_is_a_login_host() -> None:
    from controller.config import Client

    single = Client("mt", ipaddress.ip_network("10.5.50.1/32"), b"s", "v", "mikrotik")
    network = Client("mt", ipaddress.ip_network("10.5.50.0/24"), b"s", "v", "mikrotik")
    redirect = parse_redirect({"link-login-only": "http://10.5.50.1/login"})
    check_targets("mikrotik", redirect, HandoffTargets.of(single), signed=False)
    with pytest.raises(PortalError):
        check_targets("mikrotik", redirect, HandoffTargets.of(network), signed=False)


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "data:text/html,x", "//evil.example/", "/relative", "ftp://a/",
     "http:///nohost", "http://a b/", "https:\\\\evil.example", "http://[::1/", ""],
)  # fmt: skip
def test_next_url_keeps_only_http_urls(url: str) -> None:
    assert next_url(url, "https://home.example/") == "https://home.example/"
    assert next_url("https://example.com/a?b", "https://home.example/") == "https://example.com/a?b"
    redirect = parse_redirect({"dst": url, "link-login-only": "http://10.5.50.1/login"})
    form = handoff("mikrotik", redirect, "u", "p", home_url="https://home.example/")
    assert dict(form.fields)["dst"] == form.redirect_url == "https://home.example/"


def test_parse_redirect_normalises() -> None:
    r = parse_redirect({"nasid": "ap1", "mac": "aa:bb:cc:dd:ee:ff", "ip": "10.0.0.9", "dst": "d"})
    assert (r.nas_id, r.mac, r.ip, r.userurl) == ("ap1", "AA-BB-CC-DD-EE-FF", "10.0.0.9", "d")
    assert parse_redirect({"mac": "nonsense", "ip": "999.1.1.1"}).mac == ""
    assert parse_redirect({"ip": "999.1.1.1"}).ip == ""
    assert parse_redirect({"identity": "router"}).nas_id == "router"
    assert NasRedirect.from_dict(r.to_dict()) == r


# --------------------------------------------------------------------------- through RADIUS


@pytest.mark.parametrize("secret", ["", "uam-secret"])
async def test_chilli_pap_handoff_accepted_by_radius(controller: Controller, secret: str) -> None:
    issued = await login(controller)
    redirect = NasRedirect(uamip="10.1.0.1", uamport="3990", challenge=CHALLENGE)
    url = handoff("chilli", redirect, issued.username, issued.password, uam_secret=secret).url
    query = dict(parse_qsl(urlsplit(url).query))
    # chilli: User-Password = HEX xor K (then RADIUS-hidden with the shared secret)
    password = chilli_pap_decode(query["password"], CHALLENGE, secret)
    reply = await radius_pap(controller.auth_port, NAS["generic"], query["username"], password, MAC)
    assert accepted(reply)


@pytest.mark.parametrize("secret", ["", "uam-secret"])
async def test_chilli_chap_handoff_accepted_by_radius(controller: Controller, secret: str) -> None:
    issued = await login(controller)
    redirect = NasRedirect(uamip="10.1.0.1", uamport="3990", challenge=CHALLENGE)
    chap = handoff(
        "chilli", redirect, issued.username, issued.password, uam_secret=secret, uam_auth="chap"
    )
    query = dict(parse_qsl(urlsplit(chap.url).query))
    # chilli: CHAP-Challenge = K, CHAP-Password = ident (0: no `ident` on the URL) ‖ response
    reply = await radius_chap(
        controller.auth_port, NAS["generic"], query["username"], 0,
        bytes.fromhex(query["response"]), chilli_key(CHALLENGE, secret), MAC,
    )  # fmt: skip
    assert accepted(reply)


async def test_mikrotik_handoff_accepted_by_radius(controller: Controller) -> None:
    issued = await login(controller)
    chap_id = bytes([0o371])
    challenge = bytes(range(200, 216))
    redirect = NasRedirect(
        link_login_only="http://10.5.50.1/login", chap_id=octal(chap_id),
        chap_challenge=octal(challenge),
    )  # fmt: skip
    fields = dict(handoff("mikrotik", redirect, issued.username, issued.password).fields)
    # RouterOS: CHAP-Password = chap-id ‖ unhex(password), CHAP-Challenge = chap-challenge
    reply = await radius_chap(
        controller.auth_port, NAS["generic"], fields["username"], chap_id[0],
        bytes.fromhex(fields["password"]), challenge, MAC,
    )  # fmt: skip
    assert accepted(reply)


async def test_wrong_challenge_is_rejected(controller: Controller) -> None:
    issued = await login(controller)
    redirect = NasRedirect(uamip="10.1.0.1", uamport="3990", challenge=CHALLENGE)
    url = handoff("chilli", redirect, issued.username, issued.password, uam_secret="a").url
    query = dict(parse_qsl(urlsplit(url).query))
    password = chilli_pap_decode(query["password"], CHALLENGE, "b")  # NAS with another secret
    reply = await radius_pap(controller.auth_port, NAS["generic"], query["username"], password, MAC)
    assert reply is not None and not accepted(reply)
