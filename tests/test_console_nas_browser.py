"""The NAS health page in a real browser (Debian's chromium, headless, Playwright) on a
live in-process ``serve`` with traffic from the NAS simulator: the simulated NAS goes
from "never heard from" to talking while the page polls (nobody reloads it), the
drill-down shows its counters and its open session, a Disconnect from the console shows
in its Disconnect ratio, the page is readable at 390 px, and an operator account sees
only its own NAS. Screenshots are kept in the test's ``artifacts/`` directory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.cli.serve import Controller
from controller.config import Config
from controller.services.accounts import Accounts
from controller.services.logins import issue_login
from tests.support.chromium import ARGS, CHROMIUM, needs_chromium
from tests.support.console_kit import (
    PASSWORD,
    SIM_NAS,
    base_url,
    hospital_city,
    running,
    sign_in_page,
    start_sim,
)
from tests.support.redis_proc import RedisProcess, until

pytestmark = needs_chromium


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return hospital_city(tmp_path, redis_proc.url, SIM_NAS)


@pytest.fixture
async def ctl(city: Config) -> AsyncIterator[Controller]:
    async with running(city, fresh_tally=True) as controller:
        yield controller


async def test_nas_health_page_live_drill_down_and_operator_scope(
    ctl: Controller, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    assert ctl.store is not None and ctl.nas_stats is not None
    store, stats = ctl.store, ctl.nas_stats
    await Accounts(store).add("ops", PASSWORD, ["operations", "admin"], totp=False, by="test")
    await Accounts(store).add("unicom", PASSWORD, ["operator:op-unicom"], totp=False, by="test")
    sim = await start_sim(ctl)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    base = base_url(ctl)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            await sign_in_page(page, base, "ops")
            await page.goto(f"{base}/console/nas")
            sim_row = page.locator("tr[data-client='nas-sim']")
            await expect(sim_row).to_contain_text("never heard from")
            hospital = page.locator("tr[data-client='nas-hospital']")
            await expect(hospital.locator("td.silent")).to_have_text("silent: never heard from")

            issued = await issue_login(
                store,
                phone_e164="+8613800138031",
                mac="",
                client_id="nas-sim",
                person_key=ctl.person_key,
                ttl=300,
                now=int(time.time()),
            )
            session = await sim.login(issued.username, issued.password, mac="AA-BB-CC-00-01-01")
            assert session is not None, sim.events[-1]
            await until(lambda: sim.sessions.get(session.acct_session_id) is not None)
            await stats.flush()  # what the flush loop does every second, now
            await expect(sim_row.locator("td.ok")).to_have_text("talking", timeout=15_000)
            await expect(sim_row).to_contain_text("1")  # its open session
            await page.screenshot(path=str(artifacts / "console-nas.png"), full_page=True)

            # disconnect its session from the console: the ratio says 100 %
            await page.goto(f"{base}/console/sessions")
            row = page.locator(f"tr[data-ref$='|nas-sim/{session.acct_session_id}']")
            await row.locator("button.disconnect").click()
            await expect(page.locator("#notice")).to_have_text("Disconnect: acked")
            assert sim.dae_requests == 1
            await stats.flush()
            await page.goto(f"{base}/console/nas")
            await page.click("a[href='/console/nas/nas-sim']")
            await expect(page.locator("#dis")).to_have_text("100%")
            counters = page.locator("#counters")  # named; the /metrics field kept on the row
            await expect(counters.locator("tr[data-counter='auth:accept'] td").first).to_have_text(
                "authentication: accepted"
            )
            await expect(counters.locator("tr[data-counter='dis:ack'] td").first).to_have_text(
                "Disconnect: acknowledged"
            )
            assert await page.locator("#chart svg rect[data-series='req']").count() >= 1
            await page.screenshot(path=str(artifacts / "console-nas-sim.png"), full_page=True)

            await page.goto(f"{base}/console/overview")
            await expect(page.locator("#disconnects")).to_have_text("1 / 0 / 0")
            await page.screenshot(path=str(artifacts / "console-overview-nas.png"), full_page=True)

            # in Chinese: what the page polls is in Chinese too (its first render and every
            # refresh say the same words); the switch cookie is kept for the next pages
            await page.goto(f"{base}/console/nas?lang=zh")
            for _ in range(2):  # the second fetch starts once the first is written
                async with page.expect_response(lambda r: "/console/api/nas?lang=zh" in r.url):
                    pass
            await expect(sim_row.locator("td.ok")).to_have_text("正常通信")
            await expect(hospital.locator("td.silent")).to_have_text("静默：从未收到请求")
            await page.screenshot(path=str(artifacts / "console-nas-zh.png"), full_page=True)
            await page.goto(f"{base}/console/overview")  # the cookie: Chinese
            for _ in range(2):
                async with page.expect_response(lambda r: "/console/api/overview?lang=zh" in r.url):
                    pass
            await expect(page.locator("#nas")).to_contain_text("从未")  # nas-hospital
            await expect(page.locator("#chart svg title").first).to_contain_text("登录")
            await page.screenshot(path=str(artifacts / "console-overview-zh.png"), full_page=True)
            await page.goto(f"{base}/console/overview?lang=en")

            phone = await browser.new_context(
                viewport={"width": 390, "height": 844}, is_mobile=True
            )
            await phone.add_cookies(
                [c for c in await context.cookies() if c["name"] == "cw_console"]
            )
            mobile = await phone.new_page()
            for path in ("/console/nas", "/console/nas/nas-sim", "/console/overview"):
                await mobile.goto(f"{base}{path}", timeout=15_000)
                await mobile.wait_for_selector("#who")
                width = await mobile.evaluate("document.documentElement.scrollWidth")
                assert width <= 400, path  # readable at 390 px: no sideways scrolling
            await mobile.goto(f"{base}/console/nas")
            await mobile.screenshot(path=str(artifacts / "console-nas-phone.png"), full_page=True)

            operator = await (await browser.new_context()).new_page()
            await sign_in_page(operator, base, "unicom")
            await operator.goto(f"{base}/console/nas")
            await operator.wait_for_selector("#scope")
            assert await operator.locator("tr[data-client]").count() == 1
            assert await operator.locator("tr[data-client='nas-hospital']").count() == 1
            response = await operator.goto(f"{base}/console/nas/nas-sim")
            assert response is not None and response.status == 403
            await operator.goto(f"{base}/console/nas")
            await operator.screenshot(
                path=str(artifacts / "console-nas-operator.png"), full_page=True
            )
            print(f"screenshots: {artifacts}")
        finally:
            await browser.close()
            await sim.stop()
