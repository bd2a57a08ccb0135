"""Shared pieces of the portal tests: a test city with one NAS per vendor, reading codes
from the file SMS sink, a recording "NAS login" HTTP endpoint, RADIUS checks."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp

from controller.cli.serve import Controller
from controller.config import load_config
from radius.attrs import Code
from tests.conftest import write_config
from tests.support.clocks import SUITE_ZONE, local_hour, local_hour_clock
from tests.support.pyrad_client import RadiusClient, set_pap

CHILLI_UAM_SECRET = "uam-secret-chilli"
PORTAL_KEY = "test-portal-cookie-key-0123456789"

# One RADIUS client per vendor, each on its own loopback address (client = packet source).
NAS = {
    "generic": {"id": "nas-local", "address": "127.0.0.1", "secret": "testing123"},
    "chilli": {"id": "nas-chilli", "address": "127.0.0.3", "secret": "testing123-3",
               "nasid": "chilli-ap-1"},
    "chap": {"id": "nas-chap", "address": "127.0.0.4", "secret": "testing123-4",
             "nasid": "chilli-chap-1"},
    "mikrotik": {"id": "nas-mt", "address": "127.0.0.5", "secret": "testing123-5",
                 "nasid": "mt-beiguo"},
    # generic with a configured login_url (write_portal_config(generic_login_url=…))
    "gen": {"id": "nas-gen", "address": "127.0.0.7", "secret": "testing123-7",
            "nasid": "nas-gen"},
}  # fmt: skip


FILE_SMS = 'backend = "file"\npath = "sms.jsonl"'


def portal_tables(portal: str = "", sms: str = FILE_SMS, generic_login_url: str = "") -> str:
    """The portal's tables for a test city, with each client's hand-off targets as an
    operator sets them (issue 13): chilli's uamlisten address, the hotspot's login host,
    a generic NAS's login URL."""
    generic = (
        f'\n[[clients]]\nid = "nas-gen"\naddress = "127.0.0.7"\nsecret = "testing123-7"\n'
        f'venue = "station"\nvendor = "generic"\nlogin_url = "{generic_login_url}"\n'
        if generic_login_url
        else ""
    )
    return f"""
[portal]
cookie_key = "{PORTAL_KEY}"
handoff_delay = 1
{portal}

[sms]
{sms}

[[clients]]
id = "nas-chilli"
address = "127.0.0.3"
secret = "testing123-3"
venue = "station"
vendor = "chilli"
uam_secret = "{CHILLI_UAM_SECRET}"
nas_identifier = "chilli-ap-1"
uam_addresses = ["10.1.0.1"]

[[clients]]
id = "nas-chap"
address = "127.0.0.4"
secret = "testing123-4"
venue = "station"
vendor = "chilli"
uam_secret = "{CHILLI_UAM_SECRET}"
uam_auth = "chap"
nas_identifier = "chilli-chap-1"
uam_addresses = ["10.1.0.1"]

[[clients]]
id = "nas-mt"
address = "127.0.0.5"
secret = "testing123-5"
venue = "hospital"
vendor = "mikrotik"
nas_identifier = "mt-beiguo"
login_hosts = ["10.5.50.1", "127.0.0.1"]
{generic}"""


def write_portal_config(
    directory: Path,
    redis_url: str,
    portal: str = "",
    quota: str = "",
    sms: str = FILE_SMS,
    clients: str = "",
    generic_login_url: str = "",
) -> Path:
    path = write_config(directory, redis_url, quota=quota)
    with path.open("a") as f:
        f.write(portal_tables(portal, sms, generic_login_url) + clients)
    return path


def sms_messages(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def last_code(path: Path, phone_e164: str) -> str | None:
    """The 6-digit code in the newest message to ``phone_e164`` (exactly one per text)."""
    for msg in reversed(sms_messages(path)):
        if msg["to"] == phone_e164:
            codes = re.findall(r"(?<!\d)\d{6}(?!\d)", msg["text"])
            assert len(codes) == 1, msg["text"]
            return codes[0]
    return None


def chilli_redirect(
    portal_url: str,
    *,
    uamport: int,
    challenge: str,
    mac: str,
    nasid: str,
    secret: str = CHILLI_UAM_SECRET,
    userurl: str = "http://example.com/",
    ip: str = "127.0.0.1",
    res: str = "notyet",
) -> str:
    """The URL CoovaChilli redirects a browser to (redir.c ``redir_buildurl``), ``md`` last."""
    query = urlencode(
        [("res", res), ("uamip", "127.0.0.1"), ("uamport", str(uamport)),
         ("challenge", challenge), ("called", "00-11-22-33-44-66"), ("mac", mac), ("ip", ip),
         ("nasid", nasid), ("sessionid", "5f1e0c2a00000001"), ("userurl", userurl)]
    )  # fmt: skip
    url = f"{portal_url}?{query}"
    md = hashlib.md5((url + secret).encode()).hexdigest().upper()
    return f"{url}&md={md}"


def mikrotik_redirect(
    portal_url: str,
    *,
    login_url: str,
    mac: str,
    nasid: str,
    chap_id: str,
    chap_challenge: str,
    dst: str = "http://example.com/",
) -> str:
    """What a RouterOS login.html sends to an external portal (``-esc`` variables)."""
    query = urlencode(
        [("nas_id", nasid), ("link-login-only", login_url), ("mac", mac), ("ip", "127.0.0.1"),
         ("chap-id", chap_id), ("chap-challenge", chap_challenge), ("dst", dst)]
    )  # fmt: skip
    return f"{portal_url}?{query}"


def octal(data: bytes) -> str:
    return "".join(f"\\{b:03o}" for b in data)


@dataclass
class NasLogin:
    """A stand-in for the NAS's login endpoint (chilli ``/logon``, MikroTik ``login``):
    a real HTTP server on 127.0.0.1 recording each request's method, path and fields."""

    server: ThreadingHTTPServer
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def nas_login_server() -> Iterator[NasLogin]:
    record: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, fields: dict[str, str]) -> None:
            parts = urlsplit(self.path)
            record.append({"method": self.command, "path": parts.path, "fields": fields})
            body = b'<!doctype html><link rel="icon" href="data:,"><title>NAS</title><h1>in</h1>'
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/favicon.ico":
                self.send_error(404)
                return
            self._answer(dict(parse_qsl(urlsplit(self.path).query)))

        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            self._answer(dict(parse_qsl(self.rfile.read(size).decode())))

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield NasLogin(server, record)
    finally:
        server.shutdown()
        server.server_close()


async def radius_pap(
    auth_port: int, nas: dict[str, str], username: str, password: bytes, mac: str
) -> Any:
    """Access-Request as the NAS would send it after a PAP hand-off."""
    async with RadiusClient(
        ("127.0.0.1", auth_port), nas["secret"].encode(), local_addr=(nas["address"], 0)
    ) as c:
        req = c.auth_request(User_Name=username, Calling_Station_Id=mac)
        set_pap(req, password)
        return await c.request(req, timeout=2.0, retries=1)


async def radius_chap(
    auth_port: int,
    nas: dict[str, str],
    username: str,
    ident: int,
    response: bytes,
    challenge: bytes,
    mac: str,
) -> Any:
    """Access-Request with CHAP-Password = ident ‖ response and CHAP-Challenge (RFC 2865)."""
    async with RadiusClient(
        ("127.0.0.1", auth_port), nas["secret"].encode(), local_addr=(nas["address"], 0)
    ) as c:
        req = c.auth_request(User_Name=username, Calling_Station_Id=mac)
        req[3] = [bytes((ident,)) + response]  # CHAP-Password
        req[60] = [challenge]  # CHAP-Challenge
        return await c.request(req, timeout=2.0, retries=1)


def accepted(reply: Any) -> bool:
    return reply is not None and reply.code == Code.ACCESS_ACCEPT


class Clock:
    """A settable clock for the Controller (rate limits and expiries without waiting).

    Without a ``start`` it starts at local noon of today in the suite's zone (the
    config's ``[quota] timezone``), not at the real now: then a test's sessions and the
    steps it advances stay on one local day at whatever hour the suite runs."""

    def __init__(self, start: float | None = None) -> None:
        self.now = local_hour(SUITE_ZONE) if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Rig:
    """A running in-process Controller with the portal, and an HTTP client with cookies."""

    ctl: Controller
    http: aiohttp.ClientSession
    base: str
    sms_path: Path

    async def post_json(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any], Any]:
        async with self.http.post(self.base + path, json=body, headers=headers) as r:
            return r.status, await r.json(content_type=None), r.headers

    async def get_json(self, path: str) -> tuple[int, dict[str, Any], Any]:
        async with self.http.get(self.base + path) as r:
            return r.status, await r.json(content_type=None), r.headers

    def as_device(self, n: int) -> str:
        """Present browser nonce number ``n`` (the ``cw_csrf`` cookie) from now on: the
        device of the SMS and login limits, as a script that throws cookies away would."""
        nonce = f"device-{n:036d}"
        self.http.cookie_jar.update_cookies({"cw_csrf": nonce})
        return nonce

    def code(self, phone_e164: str) -> str:
        code = last_code(self.sms_path, phone_e164)
        assert code is not None, f"no SMS to {phone_e164}"
        return code


@asynccontextmanager
async def running_portal(
    directory: Path,
    redis_url: str,
    *,
    portal: str = "",
    quota: str = "",
    sms: str = FILE_SMS,
    clients: str = "",
    clock: Callable[[], float] | None = None,  # None: local noon (tests/support/clocks.py)
    generic_login_url: str = "",
) -> AsyncIterator[Rig]:
    path = write_portal_config(
        directory, redis_url, portal=portal, quota=quota, sms=sms, clients=clients,
        generic_login_url=generic_login_url,
    )  # fmt: skip
    config = load_config(path)
    if clock is None:  # what a test books as today stays today, whatever the hour
        clock = local_hour_clock(config.quota.timezone)
    ctl = Controller(config, clock=clock)
    await ctl.start()
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        yield Rig(ctl, http, f"http://127.0.0.1:{ctl.http_port}", config.sms.path)
    finally:
        await http.close()
        await ctl.stop()


async def radius_acct(
    acct_port: int,
    nas: dict[str, str],
    *,
    status: str,
    sid: str,
    username: str,
    cls: bytes | None,
    mac: str,
    framed_ip: str = "127.0.0.1",
    seconds: int = 0,
) -> Any:
    """An Accounting-Request as the NAS sends it, echoing the Accept's Class."""
    async with RadiusClient(
        ("127.0.0.1", acct_port), nas["secret"].encode(), local_addr=(nas["address"], 0)
    ) as c:
        req = c.acct_request(
            Acct_Status_Type=status,
            Acct_Session_Id=sid,
            Acct_Session_Time=seconds,
            User_Name=username,
            Calling_Station_Id=mac,
            Framed_IP_Address=framed_ip,
        )
        if cls is not None:
            req[25] = [cls]  # Class
        return await c.request(req, timeout=2.0, retries=1)
