"""The console in a real browser (Debian's chromium, headless, driven by Playwright) on a
live in-process ``serve`` with traffic from the NAS simulator: sign in with a password
and a TOTP code, watch persons online change as devices log in and out (the page polls;
nobody reloads it), disconnect all of a person's sessions, see a reload's status on the
registry page, switch the console to Chinese, and read it on a 390 px phone.
Screenshots are kept in the test's temporary directory (``artifacts/``), the path
printed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pyotp
import pytest

from bench.nas_sim import SimSession
from controller.cli.serve import Controller
from controller.config import Config
from controller.services.accounts import Accounts
from controller.services.logins import issue_login
from radius.attrs import TerminateCause
from tests.support.chromium import ARGS, CHROMIUM, needs_chromium
from tests.support.console_kit import (
    PASSWORD,
    RELOADED,
    SIM_NAS,
    base_url,
    hospital_city,
    running,
    sign_in_page,
    sim_device,
    start_sim,
)
from tests.support.redis_proc import RedisProcess

pytestmark = needs_chromium


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return hospital_city(tmp_path, redis_proc.url, SIM_NAS)


@pytest.fixture
async def ctl(city: Config) -> AsyncIterator[Controller]:
    async with running(city) as controller:
        yield controller


async def test_sign_in_with_totp_and_watch_persons_online(ctl: Controller, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    assert ctl.store is not None and ctl.online is not None
    store, online = ctl.store, ctl.online
    added = await Accounts(store).add(
        "ops", PASSWORD, ["operations", "admin"], totp=True, by="test"
    )
    await Accounts(store).add("unicom", PASSWORD, ["operator:op-unicom"], totp=False, by="test")
    totp = pyotp.TOTP(added.account.totp_secret)
    sim = await start_sim(ctl)

    async def device(phone: str, mac: str) -> SimSession:
        return await sim_device(ctl, sim, phone, mac)

    async def recount() -> None:  # what OnlineStats does every 15 s, now
        await online.flush_seen()
        await online.refresh(lead=True)

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    base = base_url(ctl)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            await page.goto(f"{base}/console/overview", timeout=15_000)  # -> sign-in form
            assert page.url.endswith("/console/login")
            await page.fill("#user", "ops")
            await page.fill("#password", PASSWORD)
            await page.fill("#code", "000000" if totp.now() != "000000" else "111111")
            await page.click("form.login button[type=submit]")
            assert "Wrong username, password" in await page.inner_text("p.error")

            await page.fill("#user", "ops")
            await page.fill("#password", PASSWORD)
            await page.fill("#code", totp.now())
            await page.click("form.login button[type=submit]")
            await page.wait_for_selector("#persons", timeout=15_000)
            assert await page.inner_text("#who") == "ops"
            cookie = next(c for c in await context.cookies() if c["name"] == "cw_console")
            assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert await page.inner_text("#persons") == "0"

            first = await device("+8613800138001", "AA-BB-CC-00-00-01")
            await recount()
            await expect(page.locator("#persons")).to_have_text("1", timeout=15_000)
            second = await device("+8613800138002", "AA-BB-CC-00-00-02")
            await device("+8613800138002", "AA-BB-CC-00-00-03")  # same person, 2nd device
            await recount()
            await expect(page.locator("#persons")).to_have_text("2", timeout=15_000)
            assert await page.inner_text("#sessions") == "3"
            assert "nas-local" in await page.inner_text("#nas")
            await page.screenshot(path=str(artifacts / "console-overview.png"), full_page=True)

            # find the first device's session and disconnect it: the NAS gets the request
            await page.click("a[href='/console/sessions']")
            row = page.locator(f"tr[data-ref$='|nas-sim/{first.acct_session_id}']")
            await expect(row).to_have_count(1, timeout=15_000)
            await row.locator("button.disconnect").click()
            await expect(page.locator("#notice")).to_have_text("Disconnect: acked")
            assert sim.dae_requests == 1 and first.acct_session_id not in sim.sessions
            await page.screenshot(path=str(artifacts / "console-sessions.png"), full_page=True)
            await page.click("a[href='/console/overview']")
            await recount()
            await expect(page.locator("#persons")).to_have_text("1", timeout=15_000)

            await sim.logout(second, TerminateCause.USER_REQUEST)
            await recount()
            await expect(page.locator("#sessions")).to_have_text("1", timeout=15_000)

            # block the second person from their lookup: their sessions end, and their
            # next Access-Request is rejected
            await page.goto(f"{base}/console/person")
            await page.fill("#phone", "+8613800138002")
            await page.click("#lookup button[type=submit]")
            await expect(page.locator("#person-sessions tbody tr")).to_have_count(1)
            await page.fill("#reason", "abuse report 42")
            await page.click("#block button[type=submit]")
            await expect(page.locator("#notice")).to_have_text(
                "Blocked; 1 session(s) disconnected."
            )
            assert "abuse report 42" in await page.inner_text("#blocked")
            assert "+8613800138002" not in page.url
            await page.screenshot(path=str(artifacts / "console-person.png"), full_page=True)
            issued = await issue_login(
                store,
                phone_e164="+8613800138002",
                mac="",
                client_id="nas-sim",
                person_key=ctl.person_key,
                ttl=300,
                now=int(time.time()),
            )
            refused = await sim.login(issued.username, issued.password, mac="AA-BB-CC-00-00-09")
            assert refused is None and sim.events[-1]["event"] == "login_rejected"
            print("reject says:", sim.events[-1]["message"])
            # a third person on two devices: find one session with the filters, then
            # disconnect all of that person's: the NAS receives one request per session
            third = [
                await device("+8613800138003", "AA-BB-CC-00-00-04"),
                await device("+8613800138003", "AA-BB-CC-00-00-05"),
            ]
            sent = sim.dae_requests
            await page.goto(f"{base}/console/sessions")
            await page.fill("input[name=nas]", "nas-sim")
            await page.fill("input[name=venue]", "mall")
            await page.click("form.filters button[type=submit]")
            row = page.locator(f"tr[data-ref$='|nas-sim/{third[0].acct_session_id}']")
            await expect(row).to_have_count(1, timeout=15_000)
            await row.locator("button.disconnect-person").click()
            results = page.locator("#results tbody td.result")
            await expect(results).to_have_count(2)
            assert await page.locator("#results td[data-result=acked]").count() == 2
            assert "2 session(s), acked 2" in await page.inner_text("#notice")
            assert sim.dae_requests == sent + 2
            assert await page.input_value("input[name=nas]") == "nas-sim"  # filters kept
            assert not any(s.acct_session_id in sim.sessions for s in third)
            await page.screenshot(
                path=str(artifacts / "console-sessions-person.png"), full_page=True
            )
            await page.goto(f"{base}/console/sessions?lang=zh")  # the language switch
            await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
            assert "在线会话" in await page.inner_text("h1")
            assert "筛选" in await page.inner_text("form.filters")
            await page.screenshot(path=str(artifacts / "console-sessions-zh.png"), full_page=True)
            await page.goto(f"{base}/console/registry?lang=en")

            # a reload with a changed registry: the registry page says when and what
            source = ctl.config.source
            source.write_text(source.read_text() + RELOADED)
            assert await ctl.reload(source)
            await page.goto(f"{base}/console/registry")
            await expect(page.locator("#last-reload")).to_contain_text("applied")
            changes = await page.inner_text("#reload-changes")
            assert "RADIUS clients added: nas-new" in changes and "venues added: library" in changes
            await page.screenshot(path=str(artifacts / "console-registry.png"), full_page=True)
            await page.goto(f"{base}/console/overview")

            phone = await browser.new_context(
                viewport={"width": 390, "height": 844}, is_mobile=True
            )
            await phone.add_cookies([cookie])
            mobile = await phone.new_page()
            await mobile.goto(f"{base}/console/overview", timeout=15_000)
            await mobile.wait_for_selector("#persons")
            width = await mobile.evaluate("document.documentElement.scrollWidth")
            assert width <= 400  # readable at 390 px: no sideways scrolling
            await mobile.screenshot(
                path=str(artifacts / "console-overview-phone.png"), full_page=True
            )

            # an operator's account: only the NAS at its venues, no city totals
            operator = await (await browser.new_context()).new_page()
            await sign_in_page(operator, base, "unicom")
            await operator.wait_for_selector("#scope")
            assert "op-unicom" in await operator.inner_text("#scope")
            assert "nas-hospital" in await operator.inner_text("#nas")
            assert "nas-local" not in await operator.inner_text("#nas")
            assert not await operator.locator("#persons").is_visible()
            await operator.screenshot(path=str(artifacts / "console-operator.png"), full_page=True)

            await page.click("header form button[type=submit]")  # sign out
            await page.wait_for_selector("form.login")
            await mobile.goto(f"{base}/console/overview")  # the phone's session ended too
            await mobile.wait_for_selector("form.login")
            print(f"screenshots: {artifacts}")
        finally:
            await browser.close()
            await sim.stop()
