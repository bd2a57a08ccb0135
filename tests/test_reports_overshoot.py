"""Time a NAS carried beyond the daily allowance (it ignored Session-Timeout and the
Disconnect-Request): shown apart in every format, and paid only by policy. Real RADIUS
traffic into a real archive day, sealed, then reported."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import date, datetime
from decimal import Decimal

from openpyxl import load_workbook

from controller.cli.serve import Controller
from controller.config import Config
from controller.services.reports import writers
from controller.services.reports.query import ReportRequest
from controller.services.reports.subsidy import build
from tests.test_reports_helpers import SH, Clock, drain, use

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: city, clock, ctl

DAY = date(2025, 11, 10)


async def overshooting_day(ctl: Controller, clock: Clock) -> None:
    """A: station 3600 s (11:00-12:00), then the hospital 6000 s (12:20-14:00): 2400 s
    beyond the 7200 s allowance, at the hospital. B: one hospital session of 10,002 s
    whose NAS never cut it: 2802 s beyond."""
    clock.set(datetime(2025, 11, 10, 12, 0, tzinfo=SH))
    await use(ctl, "A", "station", 3600, "a1")
    clock.set(datetime(2025, 11, 10, 14, 0, tzinfo=SH))
    await use(ctl, "A", "hospital", 6000, "a2")
    clock.set(datetime(2025, 11, 10, 20, 0, tzinfo=SH))
    await use(ctl, "B", "hospital", 10002, "b1", mac="AA-BB-CC-00-00-02")
    await drain(ctl)
    clock.set(datetime(2025, 11, 20, 12, 0, tzinfo=SH))
    unsealed = rows_by_venue(ctl.config, ctl, clock)  # computed from the day's rows
    assert ctl.archiver is not None
    ctl.archiver.maintain(clock(), wait=True)
    assert ctl.archive.figures(DAY) is not None  # a sealed, real archive day
    assert rows_by_venue(ctl.config, ctl, clock) == unsealed  # from its sealed figures


def rows_by_venue(config: Config, ctl: Controller, clock: Clock, group: str = "venue") -> dict:
    req = ReportRequest(DAY, DAY, "json", group)
    doc = json.loads(writers.render(build(ctl.archive, config, req, clock()), "json"))
    key = "venue_id" if group == "venue" else "operator_id"
    return {r[key]: r for r in doc["rows"]} | {"_parameters": doc["parameters"]}


async def test_beyond_allowance_is_shown_apart_and_not_paid(
    ctl: Controller, clock: Clock, city: Config
) -> None:
    await overshooting_day(ctl, clock)
    got = rows_by_venue(city, ctl, clock)
    hospital, station = got["hospital"], got["station"]
    assert station["free_seconds"] == 3600 and station["beyond_allowance_seconds"] == 0
    assert hospital["free_seconds"] == 6000 - 2400 + 7200
    assert hospital["beyond_allowance_seconds"] == 2400 + 2802
    assert hospital["beyond_allowance_hours"] == "1.45"
    assert hospital["subsidy_yuan"] == "2.16"  # 3 h x 0.60 x 1.2, the 5202 s unpaid
    assert station["subsidy_yuan"] == "0.50"
    assert got["_parameters"]["daily_allowance_seconds"] == 7200
    assert got["_parameters"]["bill_beyond_allowance"] is False
    ops = rows_by_venue(city, ctl, clock, "operator")
    assert ops["op-unicom"]["beyond_allowance_seconds"] == 5202  # whose NAS overshoots
    assert ops["op-telecom"]["beyond_allowance_seconds"] == 0
    assert ops["op-unicom"]["subsidy_yuan"] == "2.16"


async def test_the_policy_can_pay_beyond_the_allowance(
    ctl: Controller, clock: Clock, city: Config
) -> None:
    await overshooting_day(ctl, clock)
    paying = dataclasses.replace(
        city, subsidy=dataclasses.replace(city.subsidy, bill_beyond_allowance=True)
    )
    got = rows_by_venue(paying, ctl, clock)
    assert got["hospital"]["beyond_allowance_seconds"] == 5202  # still shown apart
    assert got["hospital"]["subsidy_yuan"] == "3.20"  # 16002 s / 3600 x 0.72 = 3.2004
    assert got["_parameters"]["bill_beyond_allowance"] is True


async def test_every_format_has_the_beyond_column(
    ctl: Controller, clock: Clock, city: Config
) -> None:
    await overshooting_day(ctl, clock)
    report = build(ctl.archive, city, ReportRequest(DAY, DAY, "csv", "venue"), clock())
    table = writers.to_csv(report).decode("utf-8-sig").partition("\r\n\r\n")[0]
    rows = {r["venue_id"]: r for r in csv.DictReader(io.StringIO(table))}
    assert rows["hospital"]["beyond_allowance_seconds"] == "5202"
    book = load_workbook(io.BytesIO(writers.to_xlsx(report)))
    sheet = book["report"]
    values = list(sheet.iter_rows(values_only=True))
    header = list(values[0])
    by_venue = {r[header.index("venue_id")]: r for r in values[1:]}
    assert by_venue["hospital"][header.index("beyond_allowance_seconds")] == 5202
    assert Decimal(str(by_venue["hospital"][header.index("beyond_allowance_hours")])) == Decimal(
        "1.45"
    )
