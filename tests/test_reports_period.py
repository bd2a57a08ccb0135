"""The report page's period picker over HTTP against the real app (a calendar month, a
range, refused ranges), and the page at 390 px in Debian's chromium (Playwright): nothing
wider than the viewport, no sideways scrolling of the page, a screenshot kept in
``test-artifacts/``."""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp

from controller.cli.serve import Controller
from tests.support.chromium import ARGS, CHROMIUM, needs_chromium
from tests.test_reports import scenario, url
from tests.test_reports_helpers import TOKENS, Clock

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: city, clock, ctl

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


async def sign_in(http: aiohttp.ClientSession, ctl: Controller) -> str:
    """Through the real sign-in form (CSRF nonce and token); returns the Cookie header."""
    async with http.get(url(ctl, "/reports")) as r:
        token = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        nonce = r.cookies["cw_reports_csrf"].value
    assert token is not None
    cookie = f"cw_reports_csrf={nonce}"
    async with http.post(
        url(ctl, "/reports/login"),
        data={"token": TOKENS["reports"], "csrf": token.group(1)},
        headers={"Cookie": cookie},
        allow_redirects=False,
    ) as r:
        assert r.status == 303, await r.text()
        return f"{cookie}; cw_reports={r.cookies['cw_reports'].value}"


async def page(
    http: aiohttp.ClientSession, ctl: Controller, cookie: str, **query: str
) -> tuple[int, str]:
    async with http.get(url(ctl, "/reports"), params=query, headers={"Cookie": cookie}) as r:
        return r.status, await r.text()


def downloads(text: str) -> list[dict[str, str]]:
    """The download buttons' queries."""
    hrefs = re.findall(r'href="(/reports/download\?[^"]+)"', text)
    assert hrefs
    return [{k: v[0] for k, v in parse_qs(urlsplit(html.unescape(h)).query).items()} for h in hrefs]


def figure(text: str, ident: str) -> str:
    found = re.search(rf'id="{ident}">([^<]*)<', text)
    assert found is not None, ident
    return found.group(1)


async def test_month_range_and_refused_periods(ctl: Controller, clock: Clock) -> None:
    await scenario(ctl, clock)  # usage on 2025-11-10 and -11; the clock on 2025-11-20
    async with aiohttp.ClientSession() as http:
        cookie = await sign_in(http, ctl)

        # no choice: the current calendar month, all of it (not a rolling 30 days)
        status, text = await page(http, ctl, cookie, lang="en")
        assert status == 200
        assert "2025-11-01 – 2025-11-30" in text and "Nov 2025" in text
        assert '<option value="2025-11" selected>' in text
        assert figure(text, "subsidy") == "1.99"
        for q in downloads(text):  # every button covers exactly the month shown
            assert (q["from"], q["to"]) == ("2025-11-01", "2025-11-30")
        assert {q["format"] for q in downloads(text)} == {"csv", "json", "xlsx"}
        assert 'href="?month=2025-11&amp;lang=zh"' in text  # the language link keeps it

        # another month: October has no usage; its buttons cover October exactly
        status, text = await page(http, ctl, cookie, month="2025-10", lang="zh")
        assert status == 200 and "2025年10月" in text
        assert '<option value="2025-10" selected>' in text
        assert figure(text, "subsidy") == "0.00"
        assert {(q["from"], q["to"]) for q in downloads(text)} == {("2025-10-01", "2025-10-31")}
        # a month older than the 24 offered is still shown and selected
        status, text = await page(http, ctl, cookie, month="2020-02")
        assert status == 200 and '<option value="2020-02" selected>' in text
        assert {(q["from"], q["to"]) for q in downloads(text)} == {("2020-02-01", "2020-02-29")}

        # a custom range: the 11th only (the mall's last 0.28 under its cap)
        status, text = await page(http, ctl, cookie, **{"from": "2025-11-11", "to": "2025-11-11"})
        assert status == 200 and figure(text, "subsidy") == "0.28"
        assert 'value="2025-11-11"' in text and " selected>" not in text  # no month chosen
        query = next(q for q in downloads(text) if q["format"] == "csv")
        async with http.get(
            url(ctl, "/reports/download"), params=query, headers={"Cookie": cookie}
        ) as r:
            assert r.status == 200
            table = (await r.read()).decode("utf-8-sig").partition("\r\n\r\n")[0]
        rows = list(csv.DictReader(io.StringIO(table)))
        assert [(r["date"], r["venue_id"], r["subsidy_yuan"]) for r in rows] == [
            ("2025-11-11", "mall", "0.28")
        ]

        # refused, with the picker still there to fix it; never a 5xx
        refused = {
            "range_too_long": {"from": "2025-01-01", "to": "2025-04-04"},  # 94 > 93 days
            "reversed_range": {"from": "2025-11-11", "to": "2025-11-10"},
            "bad_date": {"from": "2025-02-30", "to": "2025-03-01"},
            "missing_parameter": {"from": "2025-11-01"},
            "bad_month": {"month": "2025-13"},
            "ambiguous_period": {"month": "2025-11", "from": "2025-11-01", "to": "2025-11-02"},
        }
        for code, query in refused.items():
            status, text = await page(http, ctl, cookie, lang="en", **query)
            assert status == 400, (code, text)
            error = re.search(r'id="period-error">([^<]*)<', text)
            assert error is not None, code
            assert 'id="month-form"' in text and 'id="range-form"' in text
            assert 'id="subsidy"' not in text and "/reports/download" not in text
        status, text = await page(http, ctl, cookie, lang="zh", **refused["range_too_long"])
        assert status == 400 and "最多 93 天" in text
        status, text = await page(http, ctl, cookie, lang="en", **refused["range_too_long"])
        assert "94 days asked; at most 93 days per report" in html.unescape(text)
        status, _ = await page(http, ctl, cookie, **{"from": "2025-01-01", "to": "2025-04-03"})
        assert status == 200  # 93 days exactly is allowed

        # not signed in: the sign-in form, whatever the period
        status, text = await page(http, ctl, "", month="2025-13")
        assert status == 200 and 'form class="login"' in text


def _overflow_script() -> str:
    """Elements reaching beyond the viewport and not inside a box that scrolls them."""
    return """() => {
      const vw = document.documentElement.clientWidth;
      const out = [];
      for (const el of document.querySelectorAll('body *')) {
        if (el.closest('svg') && el.tagName.toLowerCase() !== 'svg') continue;
        let box = el.parentElement, scrolled = false;
        while (box && box !== document.body) {
          const ox = getComputedStyle(box).overflowX;
          if (ox === 'auto' || ox === 'scroll') { scrolled = true; break; }
          box = box.parentElement;
        }
        if (scrolled) continue;
        const r = el.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        if (r.right > vw + 0.5 || r.left < -0.5) {
          out.push(`${el.tagName}#${el.id}.${el.className} ${r.left}..${r.right}`);
        }
      }
      return {vw, scroll: document.documentElement.scrollWidth, out};
    }"""


@needs_chromium
async def test_the_page_fits_a_390px_phone(ctl: Controller, clock: Clock) -> None:
    from playwright.async_api import async_playwright

    await scenario(ctl, clock)
    ARTIFACTS.mkdir(exist_ok=True)
    async with aiohttp.ClientSession() as http:
        cookie = await sign_in(http, ctl)
    session = dict(part.split("=", 1) for part in cookie.split("; "))["cw_reports"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            phone = await browser.new_context(
                viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN"
            )
            base = f"http://127.0.0.1:{ctl.http_port}"
            await phone.add_cookies(
                [{"name": "cw_reports", "value": session, "url": f"{base}/reports"}]
            )
            tab = await phone.new_page()
            for lang, shot in (
                ("zh", "reports-period-390-zh.png"),
                ("en", "reports-period-390-en.png"),
            ):
                await tab.goto(f"{base}/reports?lang={lang}", timeout=15_000)
                await tab.wait_for_selector("svg.chart rect.bar")
                found = await tab.evaluate(_overflow_script())
                assert found["vw"] == 390
                assert found["scroll"] <= found["vw"], found  # no sideways page scroll
                assert found["out"] == [], found["out"]
                # the tables are whole inside their own scrolling box
                for table in ("#top-venues", "#operators"):
                    wrap = await tab.evaluate(
                        f"() => {{ const t = document.querySelector('{table}');"
                        " const w = t.parentElement.getBoundingClientRect();"
                        " return [w.left, w.right, t.parentElement.scrollWidth,"
                        " t.scrollWidth]; }"
                    )
                    assert wrap[0] >= 0 and wrap[1] <= 390 and wrap[2] >= wrap[3], (table, wrap)
                await tab.screenshot(path=str(ARTIFACTS / shot), full_page=True)

            # the picker without JavaScript semantics: choose a month, submit the GET form
            await tab.select_option("#month", "2025-10")
            await tab.click("#month-form button[type=submit]")
            await tab.wait_for_selector("#period")
            assert "2025-10-01 – 2025-10-31" in await tab.inner_text("#period")
            await tab.fill("#from", "2025-11-11")
            await tab.fill("#to", "2025-11-10")
            await tab.click("#range-form button[type=submit]")
            await tab.wait_for_selector("#period-error")
            assert "before the start date" in await tab.inner_text("#period-error")
            found = await tab.evaluate(_overflow_script())
            assert found["scroll"] <= found["vw"] and found["out"] == [], found
            await tab.screenshot(path=str(ARTIFACTS / "reports-period-390-refused.png"))
        finally:
            await browser.close()


def test_choose_period_month_range_and_refusals() -> None:
    from datetime import date

    from controller.domain.periods import PeriodError, choose_period, month_period, parse_month

    today = date(2025, 11, 20)

    def choose(month: str = "", first: str = "", last: str = "", longest: int = 93) -> str:
        try:
            p = choose_period(month, first, last, today=today, longest=longest, hint="h")
        except PeriodError as exc:
            return exc.code
        return f"{p.first}..{p.last}"

    assert choose() == "2025-11-01..2025-11-30"  # the whole current month
    assert choose("2024-02") == "2024-02-01..2024-02-29"
    assert choose("2025-12") == "2025-12-01..2025-12-31"
    assert choose(first="2025-11-03", last="2025-11-16") == "2025-11-03..2025-11-16"
    assert choose("2025-13") == "bad_month"
    assert choose("2025-1") == "bad_month"
    assert choose("1969-12") == "bad_month"  # before the supported dates
    assert choose("2025-11", "2025-11-01", "2025-11-02") == "ambiguous_period"
    assert choose(first="2025-11-01") == "missing_parameter"
    assert choose(first="2025-11-02", last="2025-11-01") == "reversed_range"
    assert choose(first="2025-01-01", last="2025-04-04") == "range_too_long"
    assert choose("2025-10", longest=30) == "range_too_long"  # 31 days > 30
    assert month_period(date(2025, 12, 31)) == parse_month("2025-12")
