""" "Connect automatically" on the portal's HTML pages, in a real browser (Debian's
chromium through Playwright, JavaScript off) against a live ``citywifi serve`` with
``[passpoint]`` on a real redis-server (issue 19, item 1).

After the SMS login the success page offers the Android and Apple profiles; the Android
link downloads an ``application/x-wifi-config`` file that parses back to a credential
in the city's realm, the Apple one answers ``application/x-apple-aspen-config`` with a
plist; the status page lists both credentials, each with a "revoke" form (CSRF token,
bound to the device cookie of this browser), and revoking one removes it.
"""

from __future__ import annotations

import plistlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.services.passpoint import ANDROID_MIME_TYPE, APPLE_MIME_TYPE
from tests.support.chromium import ARGS, CHROMIUM, needs_chromium
from tests.support.eap_kit import make_pki, passpoint_section
from tests.support.portal_kit import NasLogin, last_code, nas_login_server
from tests.support.redis_proc import wait_until
from tests.test_eap_peers import _android_parts, _pps_credential
from tests.test_portal_browser import (
    ARTIFACTS,
    Served,
    new_page,
    playwright_api,
    redirect_url,
    serving,
)

pytestmark = needs_chromium

REALM = "wifi.city.example"


@pytest.fixture(scope="module")
def nas() -> Iterator[NasLogin]:
    with nas_login_server() as server:
        yield server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, nas: NasLogin) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("eap-portal-browser")
    passpoint = passpoint_section(directory, make_pki(REALM), REALM)
    with serving(directory, f"{nas.url}/generic-login", extra=passpoint) as serve:
        yield serve


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _log_in(served: Served, nas: NasLogin, page: Any, phone: str) -> None:
    url, _ = redirect_url(served, nas, "generic", "AA-BB-CC-00-43-01")
    page.goto(url)
    page.get_by_label("手机号码").fill(phone)
    with page.expect_navigation():
        page.get_by_role("button", name="获取验证码").click()
    wait_until(lambda: last_code(served.sms_path, "+86" + phone) is not None, 10, 0.02, "SMS")
    page.get_by_label("短信验证码").fill(last_code(served.sms_path, "+86" + phone) or "")
    page.get_by_label("我已阅读并同意").check()
    with page.expect_navigation():
        page.get_by_role("button", name="登录上网").click()


def _listed(page: Any) -> list[str]:
    return [s.strip() for s in page.locator("ul.credentials li span").all_inner_texts()]


def test_profiles_download_and_revoke_without_javascript(
    served: Served, nas: NasLogin, browser: Any
) -> None:
    page = new_page(browser, js=False)
    _log_in(served, nas, page, "13912345801")
    # the success page (the generic NAS's POST hand-off waits for its button without JS)
    assert page.get_by_role("heading", name="自动连接").is_visible()
    android = page.get_by_role("link", name="安装到 Android 手机（Android 11 及以上）")
    apple = page.get_by_role("link", name="安装到 iPhone / iPad")
    assert android.is_visible() and apple.is_visible()

    with page.expect_download() as caught:
        android.click()  # Content-Disposition: attachment -- the browser saves it
    download = caught.value
    assert download.suggested_filename == "citywifi.wifi-config"
    body = Path(download.path()).read_bytes()
    username, password, realm = _pps_credential(
        _android_parts(body)["application/x-passpoint-profile"]
    )
    assert realm == REALM and username.endswith("@" + REALM) and len(password) == 24

    # the same links, as the browser fetches them (its cookies): the content types
    got = page.context.request.get(served.base + "/api/v1/profile?kind=android")
    assert got.status == 200 and got.headers["content-type"] == ANDROID_MIME_TYPE
    got = page.context.request.get(served.base + "/api/v1/profile?kind=apple")
    assert got.status == 200 and got.headers["content-type"] == APPLE_MIME_TYPE
    assert got.headers["cache-control"] == "no-store"
    apple_profile = plistlib.loads(got.body())
    assert apple_profile["PayloadType"] == "Configuration"

    page.goto(served.base + "/portal/status")
    assert page.get_by_role("heading", name="已安装的配置文件").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-profiles-zh.png"), full_page=True)
    listed = _listed(page)
    assert len(listed) == 3  # three downloads, three credentials
    assert sorted("Android" in item for item in listed) == [False, True, True]
    first = page.locator("ul.credentials input[name=username]").first.get_attribute("value")
    with page.expect_navigation():
        page.get_by_role("button", name="撤销").first.click()
    assert "已撤销该配置文件" in page.locator("[role=status]").inner_text()
    assert len(_listed(page)) == 2
    left = page.context.request.get(served.base + "/api/v1/profile/credentials").json()
    assert first not in [c["username"] for c in left["credentials"]]  # gone
    assert len(left["credentials"]) == 2

    # another browser, not logged in: no profile section, and a replayed revoke form fails
    other = new_page(browser, js=False)
    other.goto(served.base + "/portal/status")
    assert other.get_by_role("heading", name="自动连接").count() == 0
    victim = left["credentials"][0]["username"]
    refused = other.context.request.post(
        served.base + "/portal/profile/revoke", form={"username": victim, "csrf": "x"}
    )
    assert refused.status == 403  # no CSRF token of this browser
    assert (
        len(
            page.context.request.get(served.base + "/api/v1/profile/credentials").json()[
                "credentials"
            ]
        )
        == 2
    )
    other.context.close()
    page.context.close()
