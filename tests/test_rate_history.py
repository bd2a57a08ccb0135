"""Subsidy rates, caps and factors versioned by effective date: which version prices which
day (pure), what check-config says of the versions (file, line, key), pricing across a
change, and the report over real RADIUS traffic: last month's report after this month's
rate change uses last month's rates and its parameters say so; a period spanning a
change is split per day."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.cli.serve import Controller
from controller.config import Config, Subsidy, check_config, load_config
from controller.domain.rate_history import RateVersion, capped, in_force, spans
from controller.services.reports.query import DayVenue
from controller.services.reports.signature import signing_key, verify
from controller.services.reports.subsidy import price
from controller.services.reports.writers import digest
from tests.support.redis_proc import RedisProcess
from tests.test_config import BASE, line_of, problems_for
from tests.test_reports import EXPECTED, report, scenario
from tests.test_reports_helpers import SH, Clock, city_config, drain, use

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: clock, ctl (city: below)


def version(effective: date | None, rate: str, source: str, cap: str | None = None) -> RateVersion:
    return RateVersion(
        effective,
        MappingProxyType({"hospital": Decimal(rate)}),
        MappingProxyType({"v1": Decimal(cap)} if cap else {}),
        MappingProxyType({}),
        source,
    )


HISTORY = (
    version(None, "0.5", "subsidy"),
    version(date(2026, 11, 1), "0.7", "subsidy.versions[0]"),
    version(date(2026, 12, 15), "0.9", "subsidy.versions[1]"),
)


def test_the_version_in_force_and_the_spans_of_a_period() -> None:
    assert in_force(HISTORY, date(1999, 1, 1)).source == "subsidy"
    assert in_force(HISTORY, date(2026, 10, 31)).source == "subsidy"
    assert in_force(HISTORY, date(2026, 11, 1)).source == "subsidy.versions[0]"
    assert in_force(HISTORY, date(2026, 12, 14)).source == "subsidy.versions[0]"
    assert in_force(HISTORY, date(2026, 12, 15)).source == "subsidy.versions[1]"
    got = [
        (s.version.source, s.first.isoformat(), s.last.isoformat(), s.days)
        for s in spans(HISTORY, date(2026, 10, 20), date(2026, 12, 20))
    ]
    assert got == [
        ("subsidy", "2026-10-20", "2026-10-31", 12),
        ("subsidy.versions[0]", "2026-11-01", "2026-12-14", 44),
        ("subsidy.versions[1]", "2026-12-15", "2026-12-20", 6),
    ]
    # last month after this month's change: one span, the old version
    october = spans(HISTORY, date(2026, 10, 1), date(2026, 10, 31))
    assert [(s.version.source, s.days) for s in october] == [("subsidy", 31)]
    assert spans(HISTORY, date(2026, 11, 2), date(2026, 11, 1)) == []


@given(
    st.dates(date(2026, 9, 1), date(2027, 2, 1)),
    st.integers(0, 120),
)
def test_spans_cover_the_period_day_by_day(first: date, length: int) -> None:
    last = first + timedelta(days=length)
    parts = spans(HISTORY, first, last)
    assert parts[0].first == first and parts[-1].last == last
    assert sum(p.days for p in parts) == length + 1
    for a, b in itertools.pairwise(parts):
        assert b.first == a.last + timedelta(days=1) and a.version != b.version
    for p in parts:
        for i in range(p.days):
            assert in_force(HISTORY, p.first + timedelta(days=i)) == p.version


def test_a_cap_keeps_what_is_left() -> None:
    assert capped(Decimal("0.72"), Decimal("1.00"), Decimal("0.72")) == Decimal("0.28")
    assert capped(Decimal("0.72"), Decimal("1.00"), Decimal("1.00")) == Decimal(0)
    assert capped(Decimal("0.72"), None, Decimal("5")) == Decimal("0.72")
    # a cap lowered mid-month below what was already paid: nothing more, never negative
    assert capped(Decimal("0.50"), Decimal("0.60"), Decimal("0.90")) == Decimal(0)


def dv(day: date, venue: str, seconds: int) -> DayVenue:
    return DayVenue(day, venue, "hospital", "d", "op-a", 1, 1, 1, seconds, 0, 0)


def test_pricing_uses_each_days_version_and_its_cap() -> None:
    subsidy = Subsidy(
        rates=HISTORY[0].rates,
        venue_caps=MappingProxyType({"v1": Decimal("1.00")}),
        versions=(
            version(date(2026, 11, 16), "0.7", "subsidy.versions[0]", cap="1.50"),
            version(date(2026, 12, 1), "0.9", "subsidy.versions[1]"),
        ),
    )
    rows = [
        dv(date(2026, 11, 15), "v1", 3600),  # 0.50, cap 1.00
        dv(date(2026, 11, 15), "v2", 3600),  # 0.50, no cap
        dv(date(2026, 11, 16), "v1", 3600),  # 0.70, cap now 1.50: 1.50 - 0.50 left
        dv(date(2026, 11, 17), "v1", 3600),  # 0.70, only 0.30 left
        dv(date(2026, 11, 30), "v1", 3600),  # nothing left
        dv(date(2026, 12, 1), "v1", 7200),  # a new month, no cap: 2 h x 0.90
    ]
    got = [
        (p.usage.day.day, p.usage.venue, str(p.rate), f"{p.amount:.2f}")
        for p in price(rows, subsidy)
    ]
    assert got == [
        (15, "v1", "0.5", "0.50"),
        (15, "v2", "0.5", "0.50"),
        (16, "v1", "0.7", "0.70"),
        (17, "v1", "0.7", "0.30"),
        (30, "v1", "0.7", "0.00"),
        (1, "v1", "0.9", "1.80"),
    ]


# --------------------------------------------------------------------------- the config


def test_versions_load_and_a_left_out_table_is_the_one_before(tmp_path: Path) -> None:
    text = BASE + (
        "\n[subsidy]\nrates = { hospital = 0.5 }\nvenue_caps = { v1 = 10 }\n"
        "operator_factors = { op-a = 1.1 }\n"
        "\n[[subsidy.versions]]\neffective = 2026-11-01\nrates = { hospital = 0.7 }\n"
        "\n[[subsidy.versions]]\neffective = 2026-12-01\nvenue_caps = {}\n"
    )
    path = tmp_path / "citywifi.toml"
    path.write_text(text)
    s = load_config(path).subsidy
    got = [
        (v.source, v.effective, v.rates["hospital"], dict(v.venue_caps), dict(v.operator_factors))
        for v in s.history()
    ]
    one_one = {"op-a": Decimal("1.1")}
    assert got == [
        ("subsidy", None, Decimal("0.5"), {"v1": Decimal(10)}, one_one),
        ("subsidy.versions[0]", date(2026, 11, 1), Decimal("0.7"), {"v1": Decimal(10)}, one_one),
        ("subsidy.versions[1]", date(2026, 12, 1), Decimal("0.7"), {}, one_one),
    ]
    assert s.versions[0].rates["transport_hub"] == Decimal(0)  # every type has a rate


def test_a_config_without_versions_is_one_version_since_forever(city_conf: Config) -> None:
    (only,) = city_conf.subsidy.history()
    assert only.effective is None and only.rates["hospital"] == Decimal("0.60")


@pytest.fixture
def city_conf(tmp_path: Path) -> Config:
    return load_config(city_config(tmp_path, "redis://127.0.0.1:1/0"))


def problems(tmp_path: Path, extra: str) -> dict[str, tuple[int | None, str]]:
    return {p.key: (p.line, p.message) for p in problems_for(tmp_path, BASE + extra)}


def test_unordered_repeated_and_gapped_versions_are_errors_with_file_line_key(
    tmp_path: Path,
) -> None:
    extra = (
        "\n[subsidy]\nrates = { hospital = 0.5 }\n"
        "\n[[subsidy.versions]]\neffective = 2026-11-01\n"
        "\n[[subsidy.versions]]\neffective = 2026-10-01\n"  # before the one above
        "\n[[subsidy.versions]]\neffective = 2026-10-01\n"  # the same day again
        '\n[[subsidy.versions]]\neffective = "2026-12-01"\n'  # a string, not a date
        "\n[[subsidy.versions]]\neffective = 2026-12-02T00:00:00\n"  # a date-time
        "\n[[subsidy.versions]]\nrates = { hospital = 0.9 }\n"  # no effective day
        "\n[[subsidy.versions]]\neffective = 2027-01-01\nvenue_caps = { v9 = 1 }\n"
    )
    text = BASE + extra
    found = problems(tmp_path, extra)
    path = str(tmp_path / "citywifi.toml")
    assert found["subsidy.versions[1].effective"][0] == line_of(text, "effective = 2026-10-01")
    assert "before 2026-11-01 of the version above it" in found["subsidy.versions[1].effective"][1]
    assert path in found["subsidy.versions[1].effective"][1]  # where the other one is
    assert found["subsidy.versions[2].effective"][0] == line_of(text, "effective = 2026-10-01", 2)
    assert "two versions would apply to the same days" in found["subsidy.versions[2].effective"][1]
    assert found["subsidy.versions[3].effective"][1].startswith("expected a date as 2026-11-01")
    assert found["subsidy.versions[4].effective"][1].startswith("expected a date as 2026-11-01")
    assert found["subsidy.versions[5].effective"][1] == "missing required key 'effective'"
    assert found["subsidy.versions[6].venue_caps.v9"] == (
        line_of(text, "venue_caps = { v9 = 1 }"),
        "venue 'v9' is not defined",
    )
    for p in problems_for(tmp_path, text):
        assert p.file == Path(path) and p.line is not None


def test_a_first_version_that_leaves_earlier_days_without_rates_is_an_error(
    tmp_path: Path,
) -> None:
    gap = (
        "\n[subsidy]\n\n[[subsidy.versions]]\neffective = 2026-11-01\nrates = { hospital = 0.7 }\n"
    )
    found = problems(tmp_path, gap)
    line, message = found["subsidy.versions[0].effective"]
    assert line == line_of(BASE + gap, "effective = 2026-11-01")
    assert "the days before 2026-11-01 have no rates" in message
    # fixed either way: flat keys in force until then, or a first version since 1970
    assert problems(tmp_path, gap.replace("[subsidy]\n", "[subsidy]\nrates = {}\n")) == {}
    assert problems(tmp_path, gap.replace("2026-11-01", "1970-01-01")) == {}
    assert not check_config(tmp_path / "citywifi.toml")


# --------------------------------------------------------------------------- over RADIUS

CHANGES = """
[[subsidy.versions]]
effective = 2025-11-11
venue_caps = { mall = 2.00 }
rates = { transport_hub = 0.50, hospital = 0.60, shopping_mall = 0.50, leisure_square = 0.45 }

[[subsidy.versions]]
effective = 2025-12-01
rates = { transport_hub = 0.80, hospital = 0.90, shopping_mall = 0.70, leisure_square = 0.60 }
"""


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return load_config(city_config(tmp_path, redis_proc.url, CHANGES))


async def test_last_months_report_after_a_rate_change_uses_the_old_rates_and_says_so(
    ctl: Controller, clock: Clock
) -> None:
    await scenario(ctl, clock)  # November: the 10th and the 11th
    clock.set(datetime(2025, 12, 2, 12, 0, tzinfo=SH))  # this month's rates are higher
    await use(ctl, "A", "station", 3600, "a-dec")
    await drain(ctl)
    clock.set(datetime(2025, 12, 5, 12, 0, tzinfo=SH))

    status, _, body = await report(
        ctl, **{"from": "2025-11-01", "to": "2025-11-30", "format": "json"}
    )
    assert status == 200, body
    doc = json.loads(body)
    got = {(r["date"], r["venue_id"]): r["subsidy_yuan"] for r in doc["rows"]}
    # the 10th at the flat rates; the 11th at versions[0]: the mall at 0.50 a hour
    # (2 h x 0.50 x 0.9 = 0.90), its cap raised to 2.00 (0.72 + 0.90 within it)
    assert got == {**{k: v[0] for k, v in EXPECTED.items()}, ("2025-11-11", "mall"): "0.90"}
    assert {(r["date"], r["rate_yuan_per_hour"]) for r in doc["rows"]} >= {
        ("2025-11-10", "0.5"),
        ("2025-11-11", "0.5"),
    }
    versions = doc["parameters"]["rate_versions"]
    assert [(v["version"], v["effective"], v["from"], v["to"], v["days"]) for v in versions] == [
        ("subsidy", None, "2025-11-01", "2025-11-10", 10),
        ("subsidy.versions[0]", "2025-11-11", "2025-11-11", "2025-11-30", 20),
    ]  # December's version is not in November's report
    assert versions[0]["rates_yuan_per_hour"]["transport_hub"] == "0.5"
    assert versions[1]["venue_caps_yuan_per_month"] == {"mall": "2.0"}
    assert "subsidy.versions[1]" not in body.decode()

    # the parameters are signed with the figures: the CSV and XLSX say the same
    for fmt in ("csv", "xlsx"):
        status, headers, data = await report(
            ctl, **{"from": "2025-11-01", "to": "2025-11-30", "format": fmt}
        )
        assert status == 200 and headers["X-Citywifi-Report-SHA256"] == digest_of(doc)
        verdict = verify(data, signing_key(ctl.config).public_key())
        assert verdict.valid and verdict.parameters["rate_versions"] == versions


def digest_of(doc: dict[str, object]) -> str:
    from controller.services.reports.subsidy import Report

    return digest(Report(tuple(doc["columns"]), doc["rows"], doc["parameters"]))  # type: ignore[arg-type]


async def test_a_period_spanning_a_change_is_priced_per_day(ctl: Controller, clock: Clock) -> None:
    await scenario(ctl, clock)
    clock.set(datetime(2025, 12, 2, 12, 0, tzinfo=SH))
    await use(ctl, "A", "station", 3600, "a-dec")
    await drain(ctl)
    clock.set(datetime(2025, 12, 5, 12, 0, tzinfo=SH))
    status, _, body = await report(
        ctl, **{"from": "2025-11-10", "to": "2025-12-02", "format": "json"}
    )
    assert status == 200, body
    doc = json.loads(body)
    rows = {
        (r["date"], r["venue_id"]): (r["rate_yuan_per_hour"], r["subsidy_yuan"])
        for r in doc["rows"]
    }
    assert rows[("2025-11-10", "station")] == ("0.5", "0.75")
    assert rows[("2025-11-10", "mall")] == ("0.4", "0.72")
    assert rows[("2025-11-11", "mall")] == ("0.5", "0.90")
    assert rows[("2025-12-02", "station")] == ("0.8", "0.80")  # 1 h at December's rate
    spans_ = [(v["version"], v["from"], v["to"]) for v in doc["parameters"]["rate_versions"]]
    assert spans_ == [
        ("subsidy", "2025-11-10", "2025-11-10"),
        ("subsidy.versions[0]", "2025-11-11", "2025-11-30"),
        ("subsidy.versions[1]", "2025-12-01", "2025-12-02"),
    ]
    # monthly roll-ups: November and December, each at its own days' rates
    status, _, body = await report(
        ctl, **{"from": "2025-11-10", "to": "2025-12-02", "format": "json", "group": "operator"}
    )
    ops = {(r["month"], r["operator_id"]): r["subsidy_yuan"] for r in json.loads(body)["rows"]}
    assert ops[("2025-11", "op-mobile")] == "1.62"  # 0.72 + 0.90
    assert ops[("2025-12", "op-telecom")] == "0.80"


def test_verify_prints_which_rates_priced_which_days() -> None:
    from controller.cli.report_sign import _describe
    from controller.services.reports.signature import Verdict

    params = {
        "report": "subsidy",
        "from": "2025-11-01",
        "to": "2025-11-30",
        "rate_versions": [
            {"version": "subsidy", "effective": None, "from": "2025-11-01", "to": "2025-11-10",
             "rates_yuan_per_hour": {"hospital": "0.6"}, "venue_caps_yuan_per_month": {},
             "operator_factors": {}},
            {"version": "subsidy.versions[0]", "effective": "2025-11-11", "from": "2025-11-11",
             "to": "2025-11-30", "rates_yuan_per_hour": {"hospital": "0.7"},
             "venue_caps_yuan_per_month": {}, "operator_factors": {}},
        ],
    }  # fmt: skip
    text = _describe(Verdict(True, "signature matches", "json", "ab12", params))
    assert "rates subsidy (effective always) for 2025-11-01..2025-11-10" in text
    assert "rates subsidy.versions[0] (effective 2025-11-11) for 2025-11-11..2025-11-30" in text
