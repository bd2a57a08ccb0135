"""The report page in a real browser: Debian's chromium, headless, driven by Playwright.
Sign in with the token through the form, see the chart, download a CSV; screenshots of a
laptop and a phone viewport are kept in ``test-artifacts/``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from controller.cli.serve import Controller
from tests.support.chromium import ARGS, CHROMIUM, needs_chromium
from tests.test_reports import scenario
from tests.test_reports_helpers import TOKENS, Clock

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: city, clock, ctl

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = needs_chromium


async def test_sign_in_see_the_chart_download_csv(ctl: Controller, clock: Clock) -> None:
    from playwright.async_api import async_playwright

    await scenario(ctl, clock)  # the clock ends on 2025-11-20: the 10th and 11th are shown
    base = f"http://127.0.0.1:{ctl.http_port}"
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = await browser.new_context(
                accept_downloads=True, locale="zh-CN", viewport={"width": 1280, "height": 900}
            )
            page = await context.new_page()
            await page.goto(f"{base}/reports", timeout=15_000)
            assert await page.locator("form.login").count() == 1

            await page.fill("#token", "wrong-token")
            await page.click("form.login button[type=submit]")
            assert "令牌无效" in await page.inner_text("p.error")
            await page.fill("#token", TOKENS["audit"])  # a real token, but not for reports
            await page.click("form.login button[type=submit]")
            assert "没有报表权限" in await page.inner_text("p.error")

            await page.fill("#token", TOKENS["reports"])
            await page.click("form.login button[type=submit]")
            await page.wait_for_selector("svg.chart rect.bar", timeout=15_000)
            cookie = next(c for c in await context.cookies() if c["name"] == "cw_reports")
            assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert TOKENS["reports"] not in cookie["value"]

            # the figures of the hand-computed scenario (tests/test_reports.py)
            assert await page.inner_text("#subsidy") == "1.99"
            assert await page.inner_text("#persons") == "3"
            assert await page.inner_text("#total-hours") == "5.86"  # 21100 s
            assert await page.inner_text("#exhausted") == "2"  # C used 7200 s on both days
            # 4 venue types on the 10th, 1 on the 11th
            assert await page.locator("svg.chart rect.bar").count() == 5
            assert await page.locator("svg.chart rect.bar[data-type=shopping_mall]").count() == 2
            top = await page.inner_text("#top-venues tbody tr:first-child")
            assert "北国商城" in top and "4.00" in top
            operators = await page.inner_text("#operators")
            assert "中国移动" in operators and "1.00" in operators
            await page.screenshot(path=str(ARTIFACTS / "reports-page.png"), full_page=True)

            async with page.expect_download() as info:
                await page.click("a[data-group=venue][data-format=csv]")
            download = await info.value
            assert download.suggested_filename.endswith(".csv")
            data = Path(await download.path()).read_bytes()
            assert data.startswith(b"\xef\xbb\xbf")
            table = data.decode("utf-8-sig").partition("\r\n\r\n")[0]
            rows = list(csv.DictReader(io.StringIO(table)))
            assert {r["venue_name_zh"] for r in rows} == {
                "石家庄站",
                "省人民医院",
                "北国商城",
                "世纪公园",
            }
            assert sum(float(r["subsidy_yuan"]) for r in rows) == pytest.approx(1.99)

            await page.click("a[hreflang=en]")
            await page.wait_for_selector("svg.chart rect.bar")
            assert "subsidy report" in (await page.inner_text("header h1")).lower()

            phone = await browser.new_context(
                viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN"
            )
            await phone.add_cookies([cookie])
            mobile = await phone.new_page()
            await mobile.goto(f"{base}/reports", timeout=15_000)
            await mobile.wait_for_selector("svg.chart rect.bar")
            width = await mobile.evaluate("document.documentElement.scrollWidth")
            assert width <= 400  # no sideways scrolling of the page on a phone
            await mobile.screenshot(path=str(ARTIFACTS / "reports-page-phone.png"), full_page=True)

            await page.click("header form button[type=submit]")  # sign out
            await page.wait_for_selector("form.login")
        finally:
            await browser.close()
