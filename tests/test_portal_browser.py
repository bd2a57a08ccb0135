"""The whole portal flow in a real browser (Debian's chromium through Playwright, phone
viewport 360x740), with and without JavaScript, for each NAS vendor, against a live
``citywifi serve`` on a real redis-server.

The browser opens the portal as the NAS redirects to it, types a phone number, reads the
code from the file SMS sink, logs in and follows the hand-off to a recording "NAS login"
HTTP server on 127.0.0.1; the test decodes the credential as that NAS would and sends it
through the real RADIUS server, expecting Access-Accept with the right Session-Timeout.
Screenshots (zh, en) and the measured page weight go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from controller.domain import quota
from controller.services.portal.handoff import chilli_pap_decode
from tests.support.chromium import ARGS, CHROMIUM, needs_chromium
from tests.support.clocks import midday_zone
from tests.support.portal_kit import (
    CHILLI_UAM_SECRET,
    NAS,
    NasLogin,
    accepted,
    chilli_redirect,
    last_code,
    mikrotik_redirect,
    nas_login_server,
    octal,
    radius_chap,
    radius_pap,
    write_portal_config,
)
from tests.support.redis_proc import RedisProcess, free_port, wait_until

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
PHONE_VIEWPORT = {"width": 360, "height": 740}
pytestmark = needs_chromium


class Served:
    """``citywifi serve`` as a subprocess on OS-free ports, ready when /readyz says so."""

    def __init__(
        self, directory: Path, redis_url: str, generic_login_url: str, extra: str = ""
    ) -> None:
        self.dir = directory
        self.ports = {"http": free_port(), "auth": free_port(socket.SOCK_DGRAM),
                      "acct": free_port(socket.SOCK_DGRAM)}  # fmt: skip
        config = write_portal_config(
            directory, redis_url, clients=extra, generic_login_url=generic_login_url
        )
        text = config.read_text()
        # a zone where it is about noon: the server is another process and cannot be
        # handed a clock, and a Session-Timeout near local midnight (or 22:00, when the
        # 2 h left reach it) jumps, which the test's own computation a moment later misses
        self.zone = ZoneInfo(midday_zone())
        text = text.replace('timezone = "Asia/Shanghai"', f'timezone = "{self.zone.key}"', 1)
        for key, port in (("auth_port", "auth"), ("acct_port", "acct"), ("port", "http")):
            text = re.sub(rf"(?m)^{key} = 0$", f"{key} = {self.ports[port]}", text)
        config.write_text(text)
        self.sms_path = directory / "sms.jsonl"
        self.base = f"http://127.0.0.1:{self.ports['http']}"
        self.log = (directory / "serve.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            cwd=ROOT,
        )
        wait_until(self.ready, 30, 0.05, "citywifi serve to be ready")

    def ready(self) -> bool:
        assert self.proc.poll() is None, (self.dir / "serve.log").read_text()
        try:
            with urllib.request.urlopen(self.base + "/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, nas: NasLogin) -> Iterator[Served]:
    """The test city as an operator configures it: the generic NAS's ``login_url`` is
    the recording NAS's, the MikroTik's ``login_hosts`` name its host, CoovaChilli's
    ``uamip`` is vouched for by the redirect's ``md``."""
    directory = tmp_path_factory.mktemp("portal-browser")
    with serving(directory, f"{nas.url}/generic-login") as serve:
        yield serve


@contextlib.contextmanager
def serving(directory: Path, login_url: str, extra: str = "") -> Iterator[Served]:
    """A redis-server and ``citywifi serve`` on it in ``directory`` (the generic NAS's
    ``login_url``, ``extra`` TOML), both stopped at the end."""
    redis = RedisProcess(directory / "redis")
    redis.start()
    serve = Served(directory, redis.url, login_url, extra=extra)
    try:
        yield serve
    finally:
        serve.stop()
        redis.stop()


@pytest.fixture(scope="module")
def nas() -> Iterator[NasLogin]:
    with nas_login_server() as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(browser: Any, *, js: bool = True, lang: str = "zh-CN", width: int = 360) -> Any:
    context = browser.new_context(
        viewport={**PHONE_VIEWPORT, "width": width}, java_script_enabled=js, locale=lang
    )
    context.set_default_timeout(10_000)
    return context.new_page()


def redirect_url(
    served: Served, nas: NasLogin, vendor: str, mac: str
) -> tuple[str, dict[str, Any]]:
    """The URL the vendor's NAS sends the browser to, and what the test needs to decode."""
    portal = served.base + "/portal"
    if vendor == "chilli":
        challenge = secrets.token_hex(16)
        url = chilli_redirect(portal, uamport=nas.port, challenge=challenge, mac=mac,
                              nasid=NAS["chilli"]["nasid"])  # fmt: skip
        return url, {"challenge": challenge}
    if vendor == "mikrotik":
        chap_id, challenge = secrets.token_bytes(1), secrets.token_bytes(16)
        url = mikrotik_redirect(
            portal, login_url=nas.url + "/login", mac=mac, nasid=NAS["mikrotik"]["nasid"],
            chap_id=octal(chap_id), chap_challenge=octal(challenge),
        )  # fmt: skip
        return url, {"chap_id": chap_id, "challenge": challenge}
    url = (
        f"{portal}?nas_id=nas-gen&mac={mac}&ip=127.0.0.1&url=http%3A%2F%2Fexample.com%2F"
        f"&login_url={nas.url}/generic-login"
    )
    return url, {}


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to the end on a thread of its own (Playwright's sync API keeps an
    event loop running on this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=30)


def radius_check(served: Served, vendor: str, request: dict[str, Any], extra: dict[str, Any],
                 mac: str) -> Any:  # fmt: skip
    """Decode the hand-off as the NAS would and send the Access-Request."""
    fields = request["fields"]
    port = served.ports["auth"]
    if vendor == "chilli":
        assert request["method"] == "GET" and request["path"] == "/logon"
        assert fields["userurl"] == "http://example.com/"
        password = chilli_pap_decode(fields["password"], extra["challenge"], CHILLI_UAM_SECRET)
        return run(radius_pap(port, NAS["chilli"], fields["username"], password, mac))
    if vendor == "mikrotik":
        assert request["method"] == "POST" and request["path"] == "/login"
        assert fields["dst"] == "http://example.com/" and fields["popup"] == "true"
        return run(
            radius_chap(
                port, NAS["mikrotik"], fields["username"], extra["chap_id"][0],
                bytes.fromhex(fields["password"]), extra["challenge"], mac,
            )
        )  # fmt: skip
    assert request["method"] == "POST" and request["path"] == "/generic-login"
    assert fields["url"] == "http://example.com/"
    return run(radius_pap(port, NAS["gen"], fields["username"], fields["password"].encode(), mac))


CASES = [(v, js) for v in ("chilli", "mikrotik", "generic") for js in (True, False)]


@pytest.mark.parametrize(
    ("vendor", "js"), CASES, ids=[f"{v}-{'js' if js else 'nojs'}" for v, js in CASES]
)
def test_portal_flow(served: Served, nas: NasLogin, browser: Any, vendor: str, js: bool) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    n = CASES.index((vendor, js))
    phone, mac = f"1391234{5600 + n:04d}", f"AA-BB-CC-00-40-{n:02X}"
    url, extra = redirect_url(served, nas, vendor, mac)
    page = new_page(browser, js=js)
    response = page.goto(url)
    assert response.status == 200
    venue = "省人民医院" if vendor == "mikrotik" else "石家庄站"
    assert page.locator("h1").inner_text() == venue
    page.get_by_label("手机号码").fill(phone)
    with page.expect_navigation():
        page.get_by_role("button", name="获取验证码").click()
    assert "验证码已发送至 139****" in page.locator("[role=status]").inner_text()
    wait_until(lambda: last_code(served.sms_path, "+86" + phone) is not None, 10, 0.02, "SMS")
    page.get_by_label("短信验证码").fill(last_code(served.sms_path, "+86" + phone) or "")
    page.get_by_label("我已阅读并同意").check()
    before = len(nas.requests)
    with page.expect_navigation():
        page.get_by_role("button", name="登录上网").click()
    assert page.locator(".big").inner_text() == "今日剩余免费时长：2小时"
    if vendor == "generic" and js:
        page.screenshot(path=str(ARTIFACTS / "success-zh.png"), full_page=True)
    if vendor != "chilli" and not js:  # a form post without JS waits for its button
        with page.expect_navigation():
            page.get_by_role("button", name="继续上网").click()
    # chilli: meta refresh (works without JS); others with JS: auto-submit after the delay
    wait_until(lambda: len(nas.requests) > before, 10, 0.02, f"{vendor} hand-off to the NAS")
    reply = radius_check(served, vendor, nas.requests[before], extra, mac)
    assert accepted(reply), vendor
    expected = quota.session_timeout(0, int(time.time()), served.zone, 7200)
    assert abs(reply["Session-Timeout"][0] - expected) <= 3
    page.context.close()


def test_remembered_device_and_status(served: Served, nas: NasLogin, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    phone, mac = "13912345699", "AA-BB-CC-00-41-01"
    page = new_page(browser, js=False, lang="en-US")
    url, _ = redirect_url(served, nas, "generic", mac)
    page.goto(url)
    page.get_by_label("Mobile number").fill(phone)
    with page.expect_navigation():
        page.get_by_role("button", name="Send code").click()
    wait_until(lambda: last_code(served.sms_path, "+86" + phone) is not None, 10, 0.02, "SMS")
    page.get_by_label("SMS code").fill(last_code(served.sms_path, "+86" + phone) or "")
    page.get_by_label("I accept the").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    sent = served.sms_path.read_text().count("\n")
    page.goto(url)  # back on the WiFi later (the MAC may be new): the cookie is enough
    assert "Welcome back, 139****5699" in page.locator("main").inner_text()
    with page.expect_navigation():
        page.get_by_role("button", name="Connect").click()
    assert "Free time left today" in page.locator("main").inner_text()
    assert served.sms_path.read_text().count("\n") == sent  # no SMS this time
    page.goto(served.base + "/portal/status")
    assert "Devices online" in page.locator("main").inner_text()
    page.screenshot(path=str(ARTIFACTS / "status-en.png"), full_page=True)
    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    assert page.locator("h1").inner_text() == "Logged out"
    page.goto(url)
    assert page.get_by_label("Mobile number").is_visible()  # asked for a number again
    page.context.close()


def test_screenshots_weight_width_and_labels(served: Served, nas: NasLogin, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    url, _ = redirect_url(served, nas, "generic", "AA-BB-CC-00-42-01")
    page = new_page(browser)
    sizes: dict[str, int] = {}
    hosts: set[str] = set()

    def on_response(response: Any) -> None:
        hosts.add(urlsplit(response.url).netloc)
        sizes[response.url] = len(response.body())

    page.on("response", on_response)
    page.goto(url)
    page.wait_for_load_state("load")
    page.remove_listener("response", on_response)
    page.screenshot(path=str(ARTIFACTS / "portal-zh.png"), full_page=True)
    weight = sum(sizes.values())
    with page.expect_navigation():
        page.get_by_role("link", name="English").click()
    assert page.locator("html").get_attribute("lang") == "en"
    page.screenshot(path=str(ARTIFACTS / "portal-en.png"), full_page=True)
    lines = [f"{size:6d}  {urlsplit(u).path}" for u, size in sizes.items()]
    (ARTIFACTS / "portal-page-weight.txt").write_text(
        f"portal page (zh, first load, uncompressed): {weight} bytes\n" + "\n".join(lines) + "\n"
    )
    assert hosts == {urlsplit(served.base).netloc}  # nothing loaded from elsewhere
    assert weight < 16_000, sizes
    # every visible form control has a label; the page fits a 320 px wide screen
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), button')]
                 .filter(e => e.tagName === 'INPUT' ? e.labels.length === 0 : !e.textContent.trim())
                 .map(e => e.outerHTML)"""
    )
    assert unlabeled == []
    narrow = new_page(browser, width=320)
    narrow.goto(url)
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 320
    narrow.screenshot(path=str(ARTIFACTS / "portal-zh-320.png"), full_page=True)
    narrow.context.close()
    page.context.close()
