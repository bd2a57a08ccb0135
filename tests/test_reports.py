"""The subsidy report over real RADIUS traffic: a hand-computed scenario to the fen, the
formats (CSV with BOM, JSON, XLSX), reproducible bytes, the HTTP errors, and the CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from openpyxl import load_workbook

from controller.cli.serve import Controller
from controller.config import Config, load_config
from controller.services.reports.settlement_xlsx import DECIMALS
from controller.services.reports.writers import canonical
from tests.support.clocks import local_hour
from tests.support.redis_proc import RedisProcess
from tests.test_reports_helpers import SH, TOKENS, Clock, city_config, drain, use

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: city, clock, ctl

ROOT = Path(__file__).resolve().parent.parent

# The scenario (rates: transport_hub 0.50, hospital 0.60, shopping_mall 0.40,
# leisure_square 0.45 yuan per hour; factors: op-unicom 1.2, op-mobile 0.9; the mall's
# cap 1.00 yuan a month). Hand computation, yuan:
#   2025-11-10 station  A 3600 s + B 1800 s = 1.5 h x 0.50          = 0.75
#   2025-11-10 hospital A 1000 s: 1000/3600 x 0.60 x 1.2 = 0.2      = 0.20
#   2025-11-10 mall     C 7200 s: 2 h x 0.40 x 0.9                  = 0.72
#   2025-11-10 park     B  300 s: 300/3600 x 0.45 = 0.0375 -> half up = 0.04
#   2025-11-11 mall     C 7200 s: 0.72, but only 1.00 - 0.72 left    = 0.28
# total 1.99; op-telecom 0.79, op-unicom 0.20, op-mobile 1.00.
EXPECTED = {
    ("2025-11-10", "station"): ("0.75", 2, 2, 5400),
    ("2025-11-10", "hospital"): ("0.20", 1, 1, 1000),
    ("2025-11-10", "mall"): ("0.72", 1, 1, 7200),
    ("2025-11-10", "park"): ("0.04", 1, 1, 300),
    ("2025-11-11", "mall"): ("0.28", 1, 1, 7200),
}


async def scenario(ctl: Controller, clock: Clock) -> None:
    clock.set(datetime(2025, 11, 10, 12, 0, tzinfo=SH))
    await use(ctl, "A", "station", 3600, "a1")
    await use(ctl, "B", "station", 1800, "b1", mac="AA-BB-CC-00-00-02")
    await use(ctl, "A", "hospital", 1000, "a2")
    await use(ctl, "C", "mall", 7200, "c1", mac="AA-BB-CC-00-00-03")
    await use(ctl, "B", "park", 300, "b2", mac="AA-BB-CC-00-00-02")
    await drain(ctl)
    clock.set(datetime(2025, 11, 11, 12, 0, tzinfo=SH))
    await use(ctl, "C", "mall", 7200, "c2", mac="AA-BB-CC-00-00-03")
    await drain(ctl)
    clock.set(datetime(2025, 11, 20, 12, 0, tzinfo=SH))  # both days closed


def url(ctl: Controller, path: str) -> str:
    return f"http://127.0.0.1:{ctl.http_port}{path}"


async def get(
    ctl: Controller, path: str, token: str | None = TOKENS["reports"], **params: str
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(url(ctl, path), params=params, headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def report(ctl: Controller, **params: str) -> tuple[int, dict[str, str], bytes]:
    return await get(ctl, "/api/v1/reports/subsidy", **params)


async def test_hand_computed_subsidy_matches_to_the_fen(ctl: Controller, clock: Clock) -> None:
    await scenario(ctl, clock)
    status, _, body = await report(
        ctl, **{"from": "2025-11-10", "to": "2025-11-11", "format": "json"}
    )
    assert status == 200, body
    doc = json.loads(body)
    got = {
        (r["date"], r["venue_id"]): (
            r["subsidy_yuan"],
            r["sessions"],
            r["persons"],
            r["free_seconds"],
        )
        for r in doc["rows"]
    }
    assert got == EXPECTED
    assert sum(Decimal(r["subsidy_yuan"]) for r in doc["rows"]) == Decimal("1.99")
    assert doc["parameters"]["open_days"] == []
    assert {r["day_status"] for r in doc["rows"]} == {"closed"}
    mall = next(r for r in doc["rows"] if r["venue_id"] == "mall")
    assert mall["operator_factor"] == "0.9" and mall["rate_yuan_per_hour"] == "0.4"

    status, _, body = await report(
        ctl, **{"from": "2025-11-10", "to": "2025-11-11", "format": "json", "group": "operator"}
    )
    ops = {r["operator_id"]: r for r in json.loads(body)["rows"]}
    assert {k: v["subsidy_yuan"] for k, v in ops.items()} == {
        "op-mobile": "1.00",
        "op-telecom": "0.79",
        "op-unicom": "0.20",
    }
    assert ops["op-telecom"]["persons"] == 2 and ops["op-telecom"]["venues"] == 2
    assert ops["op-mobile"]["sessions"] == 2 and ops["op-mobile"]["persons"] == 1
    assert ops["op-telecom"]["operator_name"] == "中国电信"

    # a range starting mid-month still counts the month's earlier days toward the cap
    status, _, body = await report(
        ctl, **{"from": "2025-11-11", "to": "2025-11-11", "format": "json"}
    )
    assert [(r["venue_id"], r["subsidy_yuan"]) for r in json.loads(body)["rows"]] == [
        ("mall", "0.28")
    ]


async def test_rollups_by_venue_type_and_district(ctl: Controller, clock: Clock) -> None:
    await scenario(ctl, clock)
    _, _, body = await report(
        ctl, **{"from": "2025-11-10", "to": "2025-11-11", "format": "json", "group": "district"}
    )
    districts = {r["district"]: r for r in json.loads(body)["rows"]}
    assert {k: v["subsidy_yuan"] for k, v in districts.items()} == {
        "桥西区": "0.75",
        "长安区": "0.24",
        "裕华区": "1.00",
    }
    assert districts["长安区"]["persons"] == 2 and districts["长安区"]["free_hours"] == "0.36"
    _, _, body = await report(
        ctl, **{"from": "2025-11-10", "to": "2025-11-11", "format": "json", "group": "venue_type"}
    )
    types = {r["venue_type"]: r for r in json.loads(body)["rows"]}
    assert types["shopping_mall"]["venue_type_zh"] == "商场"
    assert types["shopping_mall"]["free_seconds"] == 14400
    assert types["shopping_mall"]["period_from"] == "2025-11-10"
    assert types["shopping_mall"]["month"] == "2025-11"


async def test_csv_has_bom_chinese_and_identical_bytes(ctl: Controller, clock: Clock) -> None:
    await scenario(ctl, clock)
    q = {"from": "2025-11-10", "to": "2025-11-11", "format": "csv"}
    status, headers, first = await report(ctl, **q)
    _, _, second = await report(ctl, **q)
    assert status == 200 and first == second
    assert headers["Content-Type"].startswith("text/csv")
    assert first.startswith(b"\xef\xbb\xbf")
    text = first.decode("utf-8-sig")
    assert "石家庄站" in text and "桥西区" in text and "中国联通" in text
    table, _, trailer = text.partition("\r\n\r\n")
    rows = list(csv.DictReader(io.StringIO(table)))
    assert len(rows) == 5 and rows[0]["date"] == "2025-11-10"  # ISO dates
    assert "#sha256," + headers["X-Citywifi-Report-SHA256"] in trailer
    assert "#from,2025-11-10" in trailer
    # the body digest header is over these bytes (RFC 9530)
    import base64

    assert headers["Repr-Digest"] == (
        f"sha-256=:{base64.b64encode(hashlib.sha256(first).digest()).decode()}:"
    )
    # CSV and JSON of one query carry the same digest of the same figures
    _, jheaders, jbody = await report(ctl, **{**q, "format": "json"})
    assert jheaders["X-Citywifi-Report-SHA256"] == headers["X-Citywifi-Report-SHA256"]
    doc = json.loads(jbody)
    claimed = doc.pop("digest")["sha256"]
    doc.pop("signature")  # over the same bytes as the digest (test_report_signature.py)
    recomputed = hashlib.sha256(
        json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert claimed == recomputed == headers["X-Citywifi-Report-SHA256"]


async def test_xlsx_opens_with_the_same_figures(ctl: Controller, clock: Clock) -> None:
    await scenario(ctl, clock)
    q = {"from": "2025-11-10", "to": "2025-11-11"}
    status, headers, xlsx = await report(ctl, **q, format="xlsx")
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.openxml")
    _, _, again = await report(ctl, **q, format="xlsx")
    assert xlsx == again  # reproducible bytes, XLSX included
    _, _, body = await report(ctl, **q, format="json")
    doc = json.loads(body)
    book = load_workbook(io.BytesIO(xlsx), read_only=True)
    sheet = book["report"]
    values = list(sheet.iter_rows(values_only=True))
    header, data = values[0], values[1:]
    assert list(header) == doc["columns"]
    assert len(data) == len(doc["rows"])
    for row, expected in zip(data, doc["rows"], strict=True):
        cells = dict(zip(header, row, strict=True))
        for column, value in expected.items():
            if column in DECIMALS:  # money, hours, rates, factors: numbers in the sheet
                assert Decimal(str(cells[column])) == Decimal(value), column
            else:
                assert cells[column] == value, column
    params = dict(book["parameters"].iter_rows(values_only=True))
    assert params["sha256"] == headers["X-Citywifi-Report-SHA256"]
    assert params["from"] == "2025-11-10"


async def test_open_days_are_flagged(ctl: Controller, clock: Clock) -> None:
    clock.set(datetime(2025, 11, 10, 12, 0, tzinfo=SH))
    await use(ctl, "A", "station", 600, "o1")
    _, _, body = await report(ctl, **{"from": "2025-11-09", "to": "2025-11-10", "format": "json"})
    doc = json.loads(body)
    assert doc["parameters"]["open_days"] == ["2025-11-10"]  # the 9th has closed
    assert [(r["date"], r["day_status"]) for r in doc["rows"]] == [("2025-11-10", "open")]
    _, _, body = await report(
        ctl, **{"from": "2025-11-09", "to": "2025-11-10", "format": "json", "group": "operator"}
    )
    assert json.loads(body)["rows"][0]["open_days"] == 1


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2025-13-01", "to": "2025-12-01"}, "bad_date"),
        ({"from": "2025-1-1", "to": "2025-12-01"}, "bad_date"),
        ({"to": "2025-12-01"}, "missing_parameter"),
        ({"from": "2025-12-02", "to": "2025-12-01"}, "reversed_range"),
        ({"from": "2025-01-01", "to": "2025-12-31"}, "range_too_long"),
        ({"from": "2025-12-01", "to": "2025-12-01", "group": "city"}, "bad_group"),
        ({"from": "2025-12-01", "to": "2025-12-01", "format": "pdf"}, "bad_format"),
    ],
)
async def test_bad_requests_are_400_with_a_clear_message(
    ctl: Controller, params: dict[str, str], code: str
) -> None:
    status, headers, body = await report(ctl, **params)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    error = json.loads(body)
    assert error["error"] == code and error["message"]


async def test_no_token_invalid_token_and_wrong_role(ctl: Controller) -> None:
    q = {"from": "2025-11-10", "to": "2025-11-10"}
    status, headers, body = await report(ctl, token=None, **q)
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, body = await report(ctl, token="not-a-token", **q)
    assert status == 401 and json.loads(body)["error"] == "invalid_token"
    for role in ("audit", "admin"):
        status, _, body = await report(ctl, token=TOKENS[role], **q)
        assert status == 403 and json.loads(body)["error"] == "forbidden"
    # the role check comes before the parameters are looked at
    status, _, _ = await report(ctl, token=TOKENS["audit"], **{"from": "x", "to": "y"})
    assert status == 403


def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )


async def test_cli_report_drains_the_outbox_without_serve(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """Traffic recorded by a controller whose archiver never ran; then the CLI alone."""
    config_path = city_config(tmp_path, redis_proc.url)
    config: Config = load_config(config_path)
    now = datetime.fromtimestamp(local_hour(SH), SH)  # noon: the 1,800 s lie in today
    ctl = Controller(config, clock=lambda: now.timestamp())
    await ctl.start()
    try:
        assert ctl.archiver is not None
        await ctl.archiver.stop()  # as if serve had crashed before archiving
        ctl.archiver = None
        await use(ctl, "A", "hospital", 1800, "cli1")
    finally:
        await ctl.stop()
    day = now.date().isoformat()
    out = tmp_path / "report.csv"
    result = run_cli(
        "report", "subsidy", "--config", str(config_path), "--from", day, "--to", day,
        "--format", "csv", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    text = out.read_bytes().decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text.partition("\r\n\r\n")[0])))
    assert [(r["venue_id"], r["free_seconds"], r["day_status"]) for r in rows] == [
        ("hospital", "1800", "open")
    ]
    assert rows[0]["subsidy_yuan"] == "0.36"  # 0.5 h x 0.60 x 1.2
    assert b"sha256 " in result.stderr
    again = tmp_path / "again.csv"
    result = run_cli(
        "report", "subsidy", "--config", str(config_path), "--from", day, "--to", day,
        "--out", str(again), "--no-drain",
    )  # fmt: skip
    assert result.returncode == 0 and again.read_bytes() == out.read_bytes()
    bad = run_cli(
        "report", "subsidy", "--config", str(config_path), "--from", day, "--to", "2000-01-01",
        "--out", str(again),
    )  # fmt: skip
    assert bad.returncode == 2 and b"before" in bad.stderr


# --------------------------------------------------------------------------- pure parts


def test_pricing_rounds_half_up_per_day_and_caps_in_date_order(city: Config) -> None:
    from datetime import date

    from controller.services.reports.query import DayVenue
    from controller.services.reports.subsidy import price

    def dv(day: int, venue: str, kind: str, op: str, seconds: int) -> DayVenue:
        return DayVenue(date(2025, 11, day), venue, kind, "d", op, 1, 1, 1, seconds, 0, 0)

    rows = [
        dv(3, "mall", "shopping_mall", "op-mobile", 3600),  # 0.36
        dv(1, "mall", "shopping_mall", "op-mobile", 3600),  # 0.36
        dv(2, "mall", "shopping_mall", "op-mobile", 3600),  # 0.36 -> cap leaves 0.28
        dv(1, "park", "leisure_square", "op-telecom", 1),  # 0.000125 -> 0.00
        dv(1, "park", "leisure_square", "op-telecom", 40),  # 0.005 -> half up 0.01
    ]
    got = [(p.usage.day.day, p.usage.venue, str(p.amount)) for p in price(rows, city.subsidy)]
    assert got == [
        (1, "mall", "0.36"),
        (1, "park", "0.00"),
        (1, "park", "0.01"),
        (2, "mall", "0.36"),
        (3, "mall", "0.28"),
    ]


def test_canonical_form_is_stable() -> None:
    from controller.services.reports.subsidy import Report

    a = Report(("x",), [{"x": "1.00"}], {"b": 1, "a": [1, 2]})
    b = Report(("x",), [{"x": "1.00"}], {"a": [1, 2], "b": 1})
    assert canonical(a) == canonical(b)


async def test_a_session_across_midnight_counts_once_in_a_period(
    ctl: Controller, clock: Clock
) -> None:
    from tests.test_radius_integration import acct, login
    from tests.test_reports_helpers import PHONES

    clock.set(datetime(2025, 11, 11, 0, 10, tzinfo=SH))
    issued = await login(ctl, phone=PHONES["A"])
    await acct(ctl, "Stop", "night", 1500, user=issued.username, Acct_Terminate_Cause=1)
    await drain(ctl)
    clock.set(datetime(2025, 11, 20, tzinfo=SH))
    assert ctl.archiver is not None
    ctl.archiver.maintain(clock(), wait=True)  # sealed: figures from the sealed days' files
    assert ctl.archive.figures(datetime(2025, 11, 10).date()) is not None
    _, _, body = await report(ctl, **{"from": "2025-11-10", "to": "2025-11-11", "format": "json"})
    assert [(r["date"], r["sessions"], r["free_seconds"]) for r in json.loads(body)["rows"]] == [
        ("2025-11-10", 1, 900),  # 23:45 - 24:00
        ("2025-11-11", 1, 600),  # 00:00 - 00:10
    ]
    for first in ("2025-11-10", "2025-11-11"):
        _, _, body = await report(
            ctl, **{"from": first, "to": "2025-11-11", "format": "json", "group": "operator"}
        )
        (row,) = json.loads(body)["rows"]
        assert row["sessions"] == 1 and row["persons"] == 1
