"""What the NAS said in its redirect to the portal, and how the one-time credential is
handed back to it: the one place for vendor quirks of the portal side.

Sources (see ../shared/PROTOCOLS.md and docs/portal.md):

- CoovaChilli UAM (``chilli``), coova-chilli ``src/redir.c``: the redirect carries
  ``res, uamip, uamport, challenge, [called, mac, ip, nasid, sessionid, userurl, …], md``
  where ``md = UPPERHEX(MD5(url-up-to-"&md=" + uamsecret))`` (``redir_buildurl``). The
  browser logs in at ``http://uamip:uamport/logon?username=U&password=HEX`` (PAP) or
  ``&response=HEX`` (CHAP); chilli computes ``K = MD5(challenge + uamsecret)`` (or
  ``K = challenge`` without a secret), recovers PAP as ``P = HEX XOR K`` and sends CHAP as
  ``CHAP-Challenge = K``, ``CHAP-Password = ident ‖ response`` (``redir_radius``).
- MikroTik hotspot (``mikrotik``), RouterOS "Hotspot customisation" (login.html):
  ``$(chap-id)`` and ``$(chap-challenge)`` arrive octal-escaped; the page posts
  ``username``, ``password = hexMD5(chap-id + password + chap-challenge)``, ``dst`` and
  ``popup`` to ``$(link-login-only)``; the router sends RADIUS CHAP with that challenge.
  A hotspot with ``login-by=http-pap`` sends no chap-id: the password goes as typed.
- ``generic``: the JSON API returns the credential; with the client's ``login_url`` the
  success page posts ``username``, ``password`` and ``url`` there (plain form post).

Where a credential may go comes from the client's configuration only (``HandoffTargets``,
issue 13 finding 1): the redirect's ``login_url``, ``link-login-only`` or ``uamip`` is a
request, honoured when the configured client allows it, refused (``handoff_not_allowed``)
otherwise. Where the user goes afterwards (``userurl``, ``dst``, ``url``) must be an
http(s) URL; anything else becomes the brand's home page (finding 11).

Everything here is pure (bytes and strings in and out), tested by decoding each encoding
back and sending the result through the real RADIUS server (tests/test_handoff.py).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from urllib.parse import quote, urlencode, urlsplit

from controller.config import Client, IPNetwork
from controller.domain.mac import normalize_mac
from controller.services.portal.errors import PortalError

# Query parameters the portal understands, per vendor (anything else is ignored).
REDIRECT_PARAMS = frozenset(
    {
        # CoovaChilli (redir.c redir_buildurl)
        "res", "uamip", "uamport", "challenge", "called", "mac", "ip", "nasid",
        "sessionid", "userurl", "reply", "ssid", "md",
        # MikroTik login.html variables
        "link-login-only", "link-orig", "chap-id", "chap-challenge", "dst", "identity", "error",
        # generic
        "nas_id", "url", "login_url",
    }
)  # fmt: skip

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_OCTAL = re.compile(r"\\([0-7]{1,3})")
MAX_PARAM = 2048  # longer values (a userurl) are cut: they only travel back to the user


@dataclass(frozen=True, slots=True)
class NasRedirect:
    """The NAS's redirect parameters, vendor-neutral; empty string when not sent."""

    nas_id: str = ""  # nasid (chilli), identity / nas_id (others): names the client
    mac: str = ""  # client MAC, normalised AA-BB-CC-DD-EE-FF
    ip: str = ""  # client IP as the NAS sees it
    called: str = ""  # AP MAC / Called-Station-Id (venue by AP)
    userurl: str = ""  # where the user was going (userurl, dst / link-orig, url)
    res: str = ""  # chilli: notyet | already | success | failed | logoff | splash
    reply: str = ""  # chilli: Reply-Message of a failed login
    uamip: str = ""
    uamport: str = ""
    challenge: str = ""  # chilli: 32 hex digits
    sessionid: str = ""
    link_login_only: str = ""  # mikrotik
    chap_id: str = ""  # mikrotik, still octal-escaped as sent
    chap_challenge: str = ""
    error: str = ""  # mikrotik: $(error) of a failed login
    login_url: str = ""  # generic: where to post the credential, if anywhere

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> NasRedirect:
        names = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in data.items() if k in names and v is not None})


def parse_redirect(params: Mapping[str, str]) -> NasRedirect:
    """Read whatever vendor's parameters are present (names per the vendors' docs)."""

    def get(*names: str) -> str:
        for name in names:
            value = params.get(name)
            if value:
                return value.strip()[:MAX_PARAM]
        return ""

    mac = get("mac")
    return NasRedirect(
        nas_id=get("nasid", "nas_id", "identity"),
        mac=(normalize_mac(mac) or "") if mac else "",
        ip=_ip_or_empty(get("ip")),
        called=get("called"),
        userurl=get("userurl", "dst", "link-orig", "url"),
        res=get("res"),
        reply=get("reply"),
        uamip=get("uamip"),
        uamport=get("uamport"),
        challenge=get("challenge"),
        sessionid=get("sessionid"),
        link_login_only=get("link-login-only"),
        chap_id=get("chap-id"),
        chap_challenge=get("chap-challenge"),
        error=get("error"),
        login_url=get("login_url"),
    )


def _ip_or_empty(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value)) if value else ""
    except ValueError:
        return ""


# --------------------------------------------------------------------------- CoovaChilli


def split_md(query_string: str) -> tuple[str, str, str]:
    """Raw query -> (part covered by ``md``, the ``md`` value, anything appended after it).

    ``md`` is the last parameter chilli writes; the portal may append its own (``lang``).
    Returns ``(query, "", "")`` when there is no ``md``.
    """
    if query_string.startswith("md="):
        signed, rest = "", query_string[3:]
    else:
        at = query_string.rfind("&md=")
        if at < 0:
            return query_string, "", ""
        signed, rest = query_string[:at], query_string[at + 4 :]
    md, _, extra = rest.partition("&")
    return signed, md, extra


def chilli_md(url_without_md: str, uam_secret: str) -> str:
    """``md`` as chilli computes it over the redirect URL (redir.c ``redir_buildurl``)."""
    return hashlib.md5(url_without_md.encode() + uam_secret.encode()).hexdigest().upper()


def chilli_md_ok(candidates: list[str], md: str, uam_secret: str) -> bool:
    """True if ``md`` signs one of the URL spellings (scheme/host as chilli may have had them)."""
    if not _HEX32.fullmatch(md or ""):
        return False
    ok = False
    for url in candidates:
        ok |= hmac.compare_digest(chilli_md(url, uam_secret), md.upper())
    return ok


def chilli_key(challenge_hex: str, uam_secret: str) -> bytes:
    """``K``: the challenge, hashed with the UAM secret when one is set (redir.c)."""
    if not _HEX32.fullmatch(challenge_hex):
        raise PortalError("bad_redirect", 400, detail="challenge")
    challenge = bytes.fromhex(challenge_hex)
    return hashlib.md5(challenge + uam_secret.encode()).digest() if uam_secret else challenge


def _xor_with(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data))


def chilli_pap(password: str, challenge_hex: str, uam_secret: str) -> str:
    """``password=`` of the logon URL: hex(P XOR K), P NUL-padded to 16-octet blocks."""
    raw = password.encode()
    padded = raw.ljust(max(16, -(-len(raw) // 16) * 16), b"\x00")
    return _xor_with(padded, chilli_key(challenge_hex, uam_secret)).hex()


def chilli_pap_decode(password_hex: str, challenge_hex: str, uam_secret: str) -> bytes:
    """What chilli puts in User-Password (before RADIUS hiding): HEX XOR K, unpadded."""
    return _xor_with(bytes.fromhex(password_hex), chilli_key(challenge_hex, uam_secret)).rstrip(
        b"\x00"
    )


def chilli_chap(password: str, challenge_hex: str, uam_secret: str, ident: int = 0) -> str:
    """``response=`` of the logon URL: hex(MD5(ident + P + K)) (RFC 1994 §4.1, K as above)."""
    key = chilli_key(challenge_hex, uam_secret)
    return hashlib.md5(bytes((ident,)) + password.encode() + key).hexdigest()


def chilli_logon_url(
    redirect: NasRedirect, username: str, password: str, uam_secret: str, uam_auth: str
) -> str:
    """``http://uamip:uamport/logon?username=…&password=…[&userurl=…]`` (or ``response=``)."""
    try:
        host = ipaddress.ip_address(redirect.uamip)
        port = int(redirect.uamport)
    except ValueError:
        raise PortalError("bad_redirect", 400, detail="uamip/uamport") from None
    if not 0 < port < 65536:
        raise PortalError("bad_redirect", 400, detail="uamport")
    netloc = f"[{host}]:{port}" if host.version == 6 else f"{host}:{port}"
    query: list[tuple[str, str]] = [("username", username)]
    if uam_auth == "chap":
        query.append(("response", chilli_chap(password, redirect.challenge, uam_secret)))
    else:
        query.append(("password", chilli_pap(password, redirect.challenge, uam_secret)))
    if redirect.userurl:
        query.append(("userurl", redirect.userurl))
    return f"http://{netloc}/logon?{urlencode(query, quote_via=quote)}"


# --------------------------------------------------------------------------- MikroTik


def mikrotik_unescape(value: str) -> bytes:
    """``\\371\\042a`` -> ``b"\\xf9\\x22a"``: RouterOS writes chap-id/chap-challenge bytes as
    octal escapes (other characters stand for themselves, as latin-1)."""
    out = bytearray()
    pos = 0
    for m in _OCTAL.finditer(value):
        out += value[pos : m.start()].encode("latin-1", "replace")
        out.append(int(m.group(1), 8) & 0xFF)
        pos = m.end()
    out += value[pos:].encode("latin-1", "replace")
    return bytes(out)


def mikrotik_password(chap_id: str, password: str, chap_challenge: str) -> str:
    """hexMD5(chap-id + password + chap-challenge), as RouterOS's login.html computes it."""
    data = mikrotik_unescape(chap_id) + password.encode() + mikrotik_unescape(chap_challenge)
    return hashlib.md5(data).hexdigest()


# --------------------------------------------------------------------------- hand-off


@dataclass(frozen=True, slots=True)
class Handoff:
    """How the browser gives the credential to the NAS.

    ``method`` is ``GET`` (navigate to ``url``: chilli), ``POST`` (submit ``fields`` to
    ``url``: mikrotik, generic with ``login_url``) or ``NONE`` (nothing to hand over:
    the JSON caller gets the credential). ``redirect_url`` is where the user was going.
    """

    vendor: str
    method: str
    url: str
    fields: tuple[tuple[str, str], ...]
    redirect_url: str

    def to_json(self) -> dict[str, object]:
        return {
            "vendor": self.vendor,
            "method": self.method,
            "url": self.url,
            "fields": dict(self.fields),
        }


def http_url(value: str) -> bool:
    """An absolute http(s) URL with a host and no whitespace or control characters: the
    only kind of link the portal puts in a page or hands to a NAS (no ``javascript:``,
    ``data:``, scheme-relative or relative targets)."""
    if not value or any(ord(ch) < 0x21 or ch == "\x7f" for ch in value):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a bad IPv6 literal
        return False


def next_url(value: str, home_url: str) -> str:
    """Where the user goes after the login: ``value`` if it is an http(s) URL, else the
    brand's home page (``[brand] home_url``; may be empty)."""
    return value if http_url(value) else home_url


@dataclass(frozen=True, slots=True)
class HandoffTargets:
    """Where a configured client lets the portal send a credential.

    ``login_url``: generic, the one URL the success page may post to. ``login_hosts``:
    mikrotik, hosts ``link-login-only`` may name (the client's own address counts when it
    is a single host). ``uam_networks``: chilli, where ``uamip`` may be; a redirect whose
    ``md`` verified with the client's ``uam_secret`` vouches for its own ``uamip``.
    """

    login_url: str = ""
    login_hosts: frozenset[str] = frozenset()
    uam_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, client: Client) -> HandoffTargets:
        hosts = {_host_key(h) for h in client.login_hosts}
        if client.network.num_addresses == 1:
            hosts.add(str(client.network.network_address))
        return cls(client.login_url, frozenset(hosts), tuple(client.uam_addresses))


def _host_key(host: str) -> str:
    """A host as compared: lower case, an IP address in its canonical spelling."""
    host = host.strip().strip("[]").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _refused(detail: str) -> PortalError:
    return PortalError("handoff_not_allowed", 400, detail=detail)


def check_targets(
    vendor: str, redirect: NasRedirect, targets: HandoffTargets, signed: bool
) -> None:
    """Refuse a redirect that asks for a hand-off its client does not allow
    (``handoff_not_allowed``). Missing hand-off data is left to ``build_handoff``."""
    if vendor == "chilli" and redirect.uamip:
        try:
            uamip = ipaddress.ip_address(redirect.uamip)
        except ValueError:
            raise PortalError("bad_redirect", 400, detail="uamip") from None
        if not signed and not any(uamip in net for net in targets.uam_networks):
            raise _refused("uamip")
    elif vendor == "mikrotik" and redirect.link_login_only:
        if not http_url(redirect.link_login_only):
            raise PortalError("bad_redirect", 400, detail="link-login-only")
        if _host_key(urlsplit(redirect.link_login_only).hostname or "") not in targets.login_hosts:
            raise _refused("link-login-only")
    elif vendor == "generic" and redirect.login_url and redirect.login_url != targets.login_url:
        raise _refused("login_url")


def build_handoff(
    vendor: str,
    redirect: NasRedirect,
    username: str,
    password: str,
    *,
    targets: HandoffTargets,
    signed: bool = False,
    uam_secret: str = "",
    uam_auth: str = "pap",
    home_url: str = "",
) -> Handoff:
    """The hand-off for a client's ``vendor``: ``handoff_not_allowed`` if the client does
    not allow the target the redirect names, ``bad_redirect`` if NAS data is missing."""
    check_targets(vendor, redirect, targets, signed)
    then = next_url(redirect.userurl, home_url)
    if vendor == "chilli":
        if not (redirect.uamip and redirect.uamport and redirect.challenge):
            raise PortalError("bad_redirect", 400, detail="uamip, uamport, challenge")
        safe = NasRedirect(**{**asdict(redirect), "userurl": then})
        url = chilli_logon_url(safe, username, password, uam_secret, uam_auth)
        return Handoff(vendor, "GET", url, (), then)
    if vendor == "mikrotik":
        if not redirect.link_login_only:
            raise PortalError("bad_redirect", 400, detail="link-login-only")
        if redirect.chap_id and redirect.chap_challenge:  # login-by=http-chap
            secret = mikrotik_password(redirect.chap_id, password, redirect.chap_challenge)
        else:  # login-by=http-pap: the router gets the password as typed (use HTTPS there)
            secret = password
        form: tuple[tuple[str, str], ...] = (
            ("username", username),
            ("password", secret),
            ("dst", then),
            ("popup", "true"),
        )
        return Handoff(vendor, "POST", redirect.link_login_only, form, then)
    if targets.login_url:
        form = (("username", username), ("password", password), ("url", then))
        return Handoff(vendor, "POST", targets.login_url, form, then)
    return Handoff(vendor, "NONE", "", (), then)
