"""What the console tests share: the console accounts and their password, the city with the
hospital NAS (op-unicom's) and the simulated NAS with its RFC 5176 port, a live in-process
``serve`` started with accounts, an HTTP client that keeps the console's Secure cookies
(``Browser``), a device logged in through the NAS simulator, and for the Playwright tests
its sign-in form filled in (the browser itself: ``tests.support.chromium``)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp

from bench.nas_sim import NasSimulator, SimSession
from controller.cli.serve import Controller
from controller.config import Config, load_config
from controller.services.accounts import Accounts
from controller.services.logins import issue_login
from radius.tally import TALLY
from tests.conftest import SECRET
from tests.support.redis_proc import free_port, until
from tests.test_reports_helpers import city_config

PASSWORD = "correct horse battery"
ACCOUNTS = {  # name -> roles
    "ops": ["operations"],
    "boss": ["admin"],
    "sec": ["audit"],  # no console page yet
    "uni": ["operator:op-unicom", "audit"],
    "tel": ["operator:op-telecom"],
}

HOSPITAL_NAS = """
[[clients]]
id = "nas-hospital"
address = "127.0.0.2"
secret = "hospital-secret-0123456789"
venue = "hospital"
"""  # op-unicom's; nas-local is at the station, op-telecom's

DAE_PORT = free_port(socket.SOCK_DGRAM)  # the simulated NAS's RFC 5176 port
SIM_NAS = f"""
[[clients]]
id = "nas-sim"
address = "127.0.0.3"
secret = "{SECRET}"
venue = "mall"
coa_port = {DAE_PORT}
"""

RELOADED = """
[[venues]]
id = "library"
name = { zh = "省图书馆", en = "Provincial Library" }
type = "community"
district = "长安区"
operator = "op-telecom"

[[clients]]
id = "nas-new"
address = "127.0.0.9"
secret = "new-secret-3-0123456789"
venue = "library"
"""  # a registry change for a reload: one venue and one client added


def hospital_city(tmp_path: Path, redis_url: str, extra: str = "") -> Config:
    """The reports' city with the hospital NAS (and ``extra`` clients, e.g. ``SIM_NAS``)."""
    return load_config(city_config(tmp_path, redis_url, HOSPITAL_NAS + extra))


@asynccontextmanager
async def running(
    city: Config,
    accounts: Mapping[str, Sequence[str]] | None = None,
    *,
    fresh_tally: bool = False,
) -> AsyncIterator[Controller]:
    """A started controller with ``accounts`` (name -> roles, password ``PASSWORD``, no
    TOTP); ``fresh_tally``: what earlier tests in this process counted is dropped first.
    Real time: TOTP and sessions run on the wall clock."""
    if fresh_tally:
        TALLY.take()
    controller = Controller(city)
    await controller.start()
    if accounts:
        assert controller.store is not None
        added = Accounts(controller.store)
        for name, roles in accounts.items():
            await added.add(name, PASSWORD, list(roles), totp=False, by="test")
    try:
        yield controller
    finally:
        await controller.stop()


def base_url(ctl: Controller) -> str:
    return f"http://127.0.0.1:{ctl.http_port}"


class Browser:
    """An HTTP client that keeps cookies the way a browser on https would (our cookies
    are Secure; aiohttp's jar would not send them over the test's plain http)."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http
        self.cookies: dict[str, str] = {}

    def _keep(self, response: aiohttp.ClientResponse) -> None:
        for header in response.headers.getall("Set-Cookie", []):
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value or morsel.value == '""':
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, str, Any]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        headers.update(kw.pop("headers", {}))
        async with self.http.request(
            method, self.base + path, headers=headers, allow_redirects=False, **kw
        ) as r:
            self._keep(r)
            return r.status, await r.text(), r.headers

    async def csrf(self) -> str:
        status, body, _ = await self.request("GET", "/console/login")
        assert status == 200
        found = re.search(r'name="csrf" value="([^"]+)"', body)
        assert found
        return found.group(1)

    async def sign_in(self, user: str, password: str = PASSWORD, code: str = "") -> int:
        token = await self.csrf()
        status, _, _ = await self.request(
            "POST",
            "/console/login",
            data={"user": user, "password": password, "code": code, "csrf": token},
        )
        return status


async def start_sim(ctl: Controller) -> NasSimulator:
    """The simulated NAS (``SIM_NAS``) started, sending to ``ctl``'s RADIUS ports."""
    sim = NasSimulator(
        SECRET.encode(), bind="127.0.0.3", nas_identifier="nas-sim", dae_port=DAE_PORT
    )
    await sim.start()
    sim.attach(("127.0.0.1", ctl.auth_port), ("127.0.0.1", ctl.acct_port))
    return sim


async def sim_device(ctl: Controller, sim: NasSimulator, phone: str, mac: str) -> SimSession:
    """``phone``'s device ``mac`` logged in at the simulated NAS (a login issued as the
    portal would), its session open at the simulator."""
    assert ctl.store is not None
    issued = await issue_login(
        ctl.store,
        phone_e164=phone,
        mac="",
        client_id="nas-sim",
        person_key=ctl.person_key,
        ttl=300,
        now=int(time.time()),
    )
    session = await sim.login(issued.username, issued.password, mac=mac)
    assert session is not None, sim.events[-1]
    await until(lambda: sim.sessions.get(session.acct_session_id) is not None)
    return session


async def sign_in_page(page: Any, base: str, user: str) -> None:
    """Sign ``user`` in on the console's form in a Playwright page (no TOTP)."""
    await page.goto(f"{base}/console/login", timeout=15_000)
    await page.fill("#user", user)
    await page.fill("#password", PASSWORD)
    await page.click("form.login button[type=submit]")
    await page.wait_for_selector("#who")
