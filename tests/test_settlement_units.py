"""The workbook's pure parts: a report without operators gets one detail sheet, an empty
one still opens with its zero total, sheet names follow Excel's rules, the bytes are
reproducible for one generation time, and verify works on such reports too."""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openpyxl import load_workbook

from controller.services.reports.meta import Presentation
from controller.services.reports.settlement_xlsx import HEADER_ROW, _sheet_name, layout
from controller.services.reports.signature import sign, verify
from controller.services.reports.subsidy import ROLLUP_TOTALS, Report
from controller.services.reports.writers import render

AT = datetime(2025, 12, 1, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
SHOWN = Presentation("zh", "石家庄", AT, {"op-a": "甲运营商"})


def district_report() -> Report:
    columns = ("month", "period_from", "period_to", "district", *ROLLUP_TOTALS)
    rows = [
        {"month": "2025-11", "period_from": "2025-11-01", "period_to": "2025-11-30",
         "district": d, "venues": 2, "sessions": 9, "persons": 4, "free_seconds": s,
         "free_hours": h, "beyond_allowance_seconds": 0, "beyond_allowance_hours": "0.00",
         "octets_in": 43_900_000_000, "octets_out": 1, "subsidy_yuan": y, "open_days": 0}
        for d, s, h, y in (("长安区", 1000, "0.28", "0.20"), ("桥西区", 5400, "1.50", "0.75"))
    ]  # fmt: skip
    params = {"report": "subsidy", "from": "2025-11-01", "to": "2025-11-30", "group": "district"}
    return Report(columns, rows, params, SHOWN)


def test_a_report_without_operators_has_one_detail_sheet() -> None:
    (sheet,) = layout(district_report(), SHOWN)
    assert sheet.name == "明细" and sheet.header[3] == "区县"
    total = sheet.rows[-1]
    assert total[0] == "合计" and Decimal("0.95") in total and 6400 in total
    assert sheet.capitals == "合计金额（大写）：玖角伍分"
    book = load_workbook(io.BytesIO(render(district_report(), "xlsx")))
    ws = book["明细"]
    octets = ws.cell(HEADER_ROW + 1, sheet.header.index("上行字节") + 1)
    assert octets.value == 43_900_000_000 and octets.number_format == "#,##0"  # no 4.39E+10


def test_an_empty_report_still_has_its_summary_and_zero_total() -> None:
    columns = ("date", "venue_id", "operator_id", "operator_name", "subsidy_yuan")
    empty = Report(columns, [], {"from": "2025-11-01", "to": "2025-11-30"}, SHOWN)
    (summary,) = layout(empty, SHOWN)
    assert summary.name == "汇总" and summary.rows[-1][-1] == "零元整"


def test_sheet_names_follow_excels_rules() -> None:
    taken: set[str] = set()
    assert _sheet_name("a/b:c*d?[e]", taken) == "a_b_c_d__e_"
    long = "x" * 40
    assert _sheet_name(long, taken) == "x" * 31
    assert _sheet_name(long, taken) == "x" * 28 + "~2"


def test_same_generation_time_same_bytes_and_a_signed_detail_verifies() -> None:
    report = district_report()
    assert render(report, "xlsx") == render(report, "xlsx")
    key = Ed25519PrivateKey.generate()
    signed = sign(report, key)
    for fmt in ("json", "csv", "xlsx"):
        assert verify(render(signed, fmt), key.public_key()).valid, fmt
    unsigned = verify(render(report, "json"), key.public_key())
    assert not unsigned.valid and "no signature" in unsigned.reason
