"""Fast unit tests of the report pieces that need no server: request validation, the
page's session cookie, language choice, SVG charts, reproducible XLSX."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

from controller.config import Config, load_config
from controller.services.reports.charts import Series, axis, stacked_bars
from controller.services.reports.query import ReportRequestError, parse_request
from controller.services.reports.subsidy import Report
from controller.services.reports.writers import digest, to_csv, to_json, to_xlsx
from controller.services.signing import b64, unb64
from controller.web.auth import issue_session, session_key, session_principal, token_for
from controller.web.reports_page import pick_language
from tests.test_reports_helpers import TOKENS, city_config


@pytest.fixture
def conf(tmp_path: Path) -> Config:
    return load_config(city_config(tmp_path, "redis://127.0.0.1:1/0"))


def test_parse_request_defaults_and_limits(conf: Config) -> None:
    req = parse_request({"from": "2025-11-01", "to": "2025-11-30"}, conf)
    assert (req.first, req.last, req.format, req.group, req.days) == (
        date(2025, 11, 1),
        date(2025, 11, 30),
        "csv",
        "venue",
        30,
    )
    assert parse_request({"from": "2025-01-01", "to": "2025-04-03"}, conf).days == 93
    with pytest.raises(ReportRequestError) as exc:
        parse_request({"from": "2025-01-01", "to": "2025-04-04"}, conf)
    assert exc.value.code == "range_too_long" and "93" in exc.value.message
    with pytest.raises(ReportRequestError) as exc:
        parse_request({"from": "2025-02-30", "to": "2025-03-01"}, conf)
    assert exc.value.code == "bad_date"


def test_session_cookie_is_signed_expires_and_dies_with_its_token(conf: Config) -> None:
    key = session_key(b"test-person-key-0123456789")
    token = token_for(TOKENS["reports"], conf)
    assert token is not None and token.name == "it-bureau"
    value = issue_session(token, key, 1000.0)
    principal = session_principal(value, conf, key, 1001.0)
    assert principal is not None and principal.roles == frozenset({"reports"})
    assert session_principal(value, conf, key, 1000.0 + 9 * 3600) is None  # expired
    body, expires, tag = value.split(".")
    renamed = b64(unb64(body).replace(b"it-bureau", b"ops"))  # type: ignore[union-attr]
    assert session_principal(f"{renamed}.{expires}.{tag}", conf, key, 1001.0) is None
    assert session_principal(f"{body}.{int(expires) + 9 * 3600}.{tag}", conf, key, 1001.0) is None
    assert session_principal(value, conf, session_key(b"another-key-000000"), 1001.0) is None
    assert session_principal("garbage", conf, key, 1001.0) is None
    # the token replaced in the config: its sessions end
    from dataclasses import replace

    rotated = replace(conf, api_tokens=tuple(replace(t, sha256="0" * 64) for t in conf.api_tokens))
    assert session_principal(value, rotated, key, 1001.0) is None
    assert token_for("not-a-token", conf) is None


@pytest.mark.parametrize(
    ("query", "header", "lang"),
    [
        (None, "", "zh"),
        (None, "en-US,en;q=0.9", "en"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("en", "zh-CN", "en"),
        ("fr", "fr-FR, en;q=0.5", "en"),
    ],
)
def test_language_choice(query: str | None, header: str, lang: str) -> None:
    assert pick_language(query, header) == lang


def test_axis_steps_are_round_numbers() -> None:
    assert axis(Decimal("3.86")) == (Decimal(1), Decimal(4))
    assert axis(Decimal("99")) == (Decimal(25), Decimal(100))
    step, top = axis(Decimal(0))
    assert top > 0 and step > 0


def test_stacked_bars_draw_each_value_and_escape_labels() -> None:
    days = [date(2025, 11, 1), date(2025, 11, 2)]
    svg = stacked_bars(
        days,
        [
            Series("a", "<A&B>", "#000", [Decimal(1), Decimal(0)]),
            Series("b", "B", "#111", [Decimal(2), Decimal("0.5")]),
        ],
        open_days=frozenset({days[1]}),
        title="t",
        unit="h",
        open_label="open",
    )
    assert svg.count('<rect class="bar"') == 3 and "&lt;A&amp;B&gt;" in svg
    assert svg.count('opacity="0.45"') == 1 and "(open)" in svg
    assert svg.startswith("<svg") and svg.endswith("</svg>")


def test_formats_are_reproducible_and_share_the_digest() -> None:
    report = Report(
        ("date", "venue_name_zh", "subsidy_yuan", "free_hours", "sessions"),
        [{"date": "2025-11-01", "venue_name_zh": "石家庄站", "subsidy_yuan": "0.75",
          "free_hours": "1.50", "sessions": 2}],
        {"from": "2025-11-01", "rates_yuan_per_hour": {"transport_hub": "0.5"}},
    )  # fmt: skip
    assert to_xlsx(report) == to_xlsx(report)
    csv_text = to_csv(report).decode("utf-8")
    assert csv_text.startswith("\ufeffdate,") and f"#sha256,{digest(report)}" in csv_text
    assert '#rates_yuan_per_hour,"{""transport_hub"":""0.5""}"' in csv_text
    assert digest(report) in to_json(report).decode()
    sheet = load_workbook(io.BytesIO(to_xlsx(report)))["report"]
    assert [c.value for c in sheet[2]] == ["2025-11-01", "石家庄站", 0.75, 1.5, 2]
    assert sheet["C2"].number_format == "0.00"


@given(
    st.lists(st.integers(min_value=0, max_value=20 * 3600), min_size=1, max_size=30),
    st.decimals(min_value=0, max_value=50, places=2),
)
def test_a_capped_venue_gets_exactly_the_cap_or_less(days: list[int], cap: Decimal) -> None:
    from dataclasses import replace

    from controller.config import Subsidy
    from controller.services.reports.query import DayVenue
    from controller.services.reports.subsidy import fen, price

    subsidy = Subsidy(
        rates={"hospital": Decimal("0.6")},
        venue_caps={"h": cap},
        operator_factors={"op": Decimal("1.2")},
    )
    rows = [
        DayVenue(date(2025, 11, i + 1), "h", "hospital", "d", "op", 1, 1, 1, s, 0, 0)
        for i, s in enumerate(days)
    ]
    priced = price(rows, subsidy)
    uncapped = sum(fen(Decimal(s) * Decimal("0.72") / 3600) for s in days)
    assert sum(p.amount for p in priced) == min(cap, uncapped)
    assert all(p.amount >= 0 and p.amount == fen(p.amount) for p in priced)
    free = price(rows, replace(subsidy, venue_caps={}))
    assert sum(p.amount for p in free) == uncapped
