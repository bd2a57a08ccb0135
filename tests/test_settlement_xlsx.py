"""The settlement workbook of a month with three operators: LibreOffice renders it to one
page per operator plus the summary, and every figure read back with openpyxl equals the
JSON report's (totals the sums of the rounded rows, the total in capitals)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from controller.cli.serve import Controller
from controller.domain.rmb_capitals import rmb_capitals
from controller.services.reports.settlement_xlsx import COLUMNS, DECIMALS, HEADER_ROW
from tests.test_reports import report
from tests.test_reports_helpers import SH, Clock, drain, use

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: city, clock, ctl

MONTH = {"from": "2025-11-01", "to": "2025-11-30"}
NAMES = {"op-telecom": "中国电信", "op-unicom": "中国联通", "op-mobile": "中国移动"}
NAMES_EN = {"op-telecom": "China Telecom", "op-unicom": "China Unicom", "op-mobile": "China Mobile"}


async def month_of_traffic(ctl: Controller, clock: Clock) -> None:
    """Four days of November at the four venues; one hospital session overshoots."""
    for n, day in enumerate((3, 10, 17, 24)):
        clock.set(datetime(2025, 11, day, 12, 0, tzinfo=SH))
        await use(ctl, "A", "station", 1800 + n, f"a{day}")
        await use(ctl, "C", "mall", 3600 + 7 * n, f"c{day}", mac="AA-BB-CC-00-00-03")
        await use(ctl, "A", "park", 600 + 11 * n, f"p{day}")
        clock.set(datetime(2025, 11, day, 20, 0, tzinfo=SH))
        seconds = 10002 if day == 10 else 2400 + 13 * n
        await use(ctl, "B", "hospital", seconds, f"b{day}", mac="AA-BB-CC-00-00-02")
        await drain(ctl)
    clock.set(datetime(2025, 12, 5, 9, 30, tzinfo=SH))


def pdf_pages(xlsx: bytes, work: Path) -> int:
    """Convert with LibreOffice headless (its own profile, so runs don't collide)."""
    source = work / "settlement.xlsx"
    source.write_bytes(xlsx)
    profile = work / "lo-profile"
    subprocess.run(
        [
            shutil.which("soffice") or "soffice",
            f"-env:UserInstallation=file://{profile}",
            "--headless", "--convert-to", "pdf", "--outdir", str(work), str(source),
        ],
        check=True, capture_output=True, timeout=180, env={**os.environ, "HOME": str(work)},
    )  # fmt: skip
    if os.environ.get("CW_KEEP_SETTLEMENT"):  # look at it: CW_KEEP_SETTLEMENT=/some/dir
        keep = Path(os.environ["CW_KEEP_SETTLEMENT"])
        shutil.copy(source, keep / f"settlement-{len(list(keep.iterdir()))}.xlsx")
        shutil.copy(work / "settlement.pdf", keep / f"settlement-{len(list(keep.iterdir()))}.pdf")
    return len(PdfReader(work / "settlement.pdf").pages)


def visible(book: Any) -> list[Any]:
    return [ws for ws in book.worksheets if ws.sheet_state == "visible"]


def table(ws: Any) -> tuple[list[str], list[tuple[Any, ...]], tuple[Any, ...]]:
    """Header, data rows and total row of a printed sheet."""
    header = [c.value for c in ws[HEADER_ROW] if c.value is not None]
    rows = []
    for row in ws.iter_rows(min_row=HEADER_ROW + 1, values_only=True):
        cells = row[: len(header)]
        rows.append(cells)
        if cells[0] in ("合计", "Total"):
            break
    return header, rows[:-1], rows[-1]


def same(column: str, value: Any, expected: Any) -> bool:
    """Money, hours, rates and factors are strings in JSON and numbers in the sheet."""
    if column in DECIMALS:
        return Decimal(str(value)) == Decimal(expected)
    return bool(value == expected)


@pytest.mark.peers
async def test_a_month_prints_one_page_per_operator_and_reads_back(
    ctl: Controller, clock: Clock, tmp_path: Path
) -> None:
    await month_of_traffic(ctl, clock)
    _, _, body = await report(ctl, **MONTH, format="json")
    doc = json.loads(body)
    status, _, xlsx = await report(ctl, **MONTH, format="xlsx")
    assert status == 200
    assert pdf_pages(xlsx, tmp_path) == 4  # summary + three operators

    book = load_workbook(io.BytesIO(xlsx))
    sheets = visible(book)
    assert [ws.title for ws in sheets] == ["汇总", *(NAMES[op] for op in sorted(NAMES))]
    zh = {v[0]: k for k, v in COLUMNS.items()}
    grand = Decimal(0)
    for op in sorted(NAMES):
        ws = book[NAMES[op]]
        assert ws["A1"].value.endswith(NAMES[op]) and "2025-11-01" in ws["A2"].value
        assert ws.page_setup.orientation == "landscape" and ws.page_setup.fitToWidth == 1
        assert ws.print_title_rows == f"${HEADER_ROW}:${HEADER_ROW}"
        assert ws.freeze_panes == f"A{HEADER_ROW + 1}"
        header, rows, total = table(ws)
        columns = [zh[h] for h in header]
        mine = [r for r in doc["rows"] if r["operator_id"] == op]
        assert len(rows) == len(mine) > 0
        for row, expected in zip(rows, mine, strict=True):
            for column, value in zip(columns, row, strict=True):
                if column == "day_status":
                    assert value == {"open": "未结", "closed": "已结"}[expected[column]]
                else:
                    assert same(column, value, expected[column]), (op, column)
        for column, value in zip(columns, total, strict=True):
            if column in ("subsidy_yuan", "free_hours", "beyond_allowance_hours"):
                assert Decimal(str(value)) == sum(Decimal(r[column]) for r in mine), column
            elif column in ("free_seconds", "beyond_allowance_seconds", "octets_in"):
                assert value == sum(r[column] for r in mine), column
        amount = sum(Decimal(r["subsidy_yuan"]) for r in mine)
        grand += amount
        words = [c.value for c in ws["A"] if isinstance(c.value, str) and "大写" in c.value]
        assert words == [f"合计金额（大写）：{rmb_capitals(amount)}"]
        assert (
            ws.cell(HEADER_ROW + 1, columns.index("subsidy_yuan") + 1).number_format == "#,##0.00"
        )
        octets = ws.cell(HEADER_ROW + 1, columns.index("octets_in") + 1)
        assert octets.number_format == "#,##0" and isinstance(octets.value, int)
        texts = [c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str)]
        assert {"制表人：", "复核人：", "审批人："} <= set(texts)
    summary = book["汇总"]
    _, rows, total = table(summary)
    by_name = {r[0]: r for r in rows}
    for op in NAMES:
        mine = [r for r in doc["rows"] if r["operator_id"] == op]
        amount = sum(Decimal(r["subsidy_yuan"]) for r in mine)
        assert Decimal(str(by_name[NAMES[op]][3])) == amount
        assert by_name[NAMES[op]][4] == rmb_capitals(amount)
    assert Decimal(str(total[3])) == grand and total[4] == rmb_capitals(grand)
    unicom = by_name["中国联通"]
    assert Decimal(str(unicom[2])) == Decimal("0.78")  # 2802 s beyond, the hospital's NAS

    # the monthly roll-up by operator, in English, prints the same way
    status, _, xlsx = await report(ctl, **MONTH, format="xlsx", group="operator", lang="en")
    assert status == 200
    book = load_workbook(io.BytesIO(xlsx))
    assert [ws.title for ws in visible(book)] == [
        "Summary",
        *(NAMES_EN[op] for op in sorted(NAMES)),
    ]
    assert book["China Unicom"][f"A{HEADER_ROW}"].value == "Month"
    assert pdf_pages(xlsx, tmp_path) == 4
