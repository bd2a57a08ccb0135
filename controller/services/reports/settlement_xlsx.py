"""The settlement workbook: the XLSX a finance office can print, sign and pay from.

Sheets, in order:

- **summary** (汇总): one row per operator with its free hours, hours beyond the
  allowance, subsidy and the amount in Chinese capitals; a total row;
- **one sheet per operator**: that operator's rows of the report and a total row;
- for a report without operators (``group=venue_type|district``) a single **detail**
  sheet instead of the two above;
- hidden ``report`` (the table exactly as the JSON has it: ids as columns, for tools and
  for ``citywifi report verify``) and hidden ``parameters`` (the parameters, the digest,
  the signature). Hidden sheets are not printed.

Every printed sheet has a title (city, what it is, the period, when it was generated), a
frozen and repeated header row, column widths from the content, number formats (yuan and
hours with two decimals, counts without exponent), a total row whose figures are the sums
of the rounded rows above it (so a reader adding the column gets the total), the total in
capitals (``controller.domain.rmb_capitals``), a prepared-by / reviewed-by / approved-by
block, and print set-up: A4 landscape, fit to one page wide, page numbers in the footer.

The cells are laid out by ``layout`` from the report alone (and its presentation), so
``citywifi report verify`` rebuilds the layout from the hidden table and compares every
printed cell: an edited figure on a printed sheet fails as surely as one in the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from controller.domain.rmb_capitals import rmb_capitals
from controller.domain.venue_types import VENUE_TYPES
from controller.services.reports.meta import Presentation, param_text
from controller.services.reports.subsidy import Report

TITLE_ROWS = 2  # title, period line; the header is the next row
HEADER_ROW = TITLE_ROWS + 1

# How each report column is shown: its headers and its kind (the number format).
YUAN, HOURS, COUNT, RATE, TEXT = "yuan", "hours", "count", "rate", "text"
COLUMNS: Mapping[str, tuple[str, str, str]] = {
    "date": ("日期", "Date", TEXT),
    "month": ("月份", "Month", TEXT),
    "period_from": ("起始日", "From", TEXT),
    "period_to": ("截止日", "To", TEXT),
    "venue_id": ("场所编号", "Venue id", TEXT),
    "venue_name_zh": ("场所", "Venue (zh)", TEXT),
    "venue_name_en": ("场所（英文）", "Venue", TEXT),
    "venue_type": ("场所类型编号", "Venue type", TEXT),
    "venue_type_zh": ("场所类型", "Venue type (zh)", TEXT),
    "district": ("区县", "District", TEXT),
    "operator_id": ("运营商编号", "Operator id", TEXT),
    "operator_name": ("运营商", "Operator", TEXT),
    "venues": ("场所数", "Venues", COUNT),
    "sessions": ("会话数", "Sessions", COUNT),
    "persons": ("人数", "Persons", COUNT),
    "free_seconds": ("免费时长（秒）", "Free seconds", COUNT),
    "free_hours": ("免费时长（小时）", "Free hours", HOURS),
    "beyond_allowance_seconds": ("超出额度（秒）", "Beyond allowance (s)", COUNT),
    "beyond_allowance_hours": ("超出额度（小时）", "Beyond allowance (h)", HOURS),
    "octets_in": ("上行字节", "Octets in", COUNT),
    "octets_out": ("下行字节", "Octets out", COUNT),
    "rate_yuan_per_hour": ("单价（元/小时）", "Rate (yuan/h)", RATE),
    "operator_factor": ("运营商系数", "Operator factor", RATE),
    "subsidy_yuan": ("补贴金额（元）", "Subsidy (yuan)", YUAN),
    "day_status": ("状态", "Status", TEXT),
    "open_days": ("未结日数", "Open days", COUNT),
}
FORMATS = {YUAN: "#,##0.00", HOURS: "#,##0.00", COUNT: "#,##0", RATE: "0.00##", TEXT: "@"}
# summed in the total row: additive figures (persons and sessions are distinct counts)
SUMMED = (
    "free_seconds",
    "free_hours",
    "beyond_allowance_seconds",
    "beyond_allowance_hours",
    "octets_in",
    "octets_out",
    "subsidy_yuan",
)
TWO_DECIMALS = frozenset({"free_hours", "beyond_allowance_hours", "subsidy_yuan"})
DECIMALS = TWO_DECIMALS | {"rate_yuan_per_hour", "operator_factor"}

WORDS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "title": "{city}公共免费WiFi运营补贴结算表",
        "summary": "汇总",
        "detail": "明细",
        "period": "结算期间：{first} 至 {last}",
        "generated": "生成时间：{at}",
        "operator": "运营商",
        "total": "合计",
        "capitals": "合计金额（大写）",
        "prepared": "制表人：",
        "reviewed": "复核人：",
        "approved": "审批人：",
        "date": "日期：",
        "footer": "第 &P 页，共 &N 页",
        "open": "未结",
        "closed": "已结",
    },
    "en": {
        "title": "{city} free public WiFi subsidy settlement",
        "summary": "Summary",
        "detail": "Detail",
        "period": "Period: {first} to {last}",
        "generated": "Generated: {at}",
        "operator": "Operator",
        "total": "Total",
        "capitals": "Total in Chinese capitals (大写)",
        "prepared": "Prepared by:",
        "reviewed": "Reviewed by:",
        "approved": "Approved by:",
        "date": "Date:",
        "footer": "Page &P of &N",
        "open": "open",
        "closed": "closed",
    },
}


@dataclass(frozen=True, slots=True)
class Sheet:
    """One printed sheet: its name, the title lines, the column kinds and the cells."""

    name: str
    title: tuple[str, str]
    kinds: tuple[str, ...]  # one per column
    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]  # data rows, then the total row
    capitals: str  # the total in capitals
    signing: tuple[str, ...]  # the prepared / reviewed / approved / date labels


def _number(column: str, value: Any) -> Any:
    if column in DECIMALS and isinstance(value, str):
        return Decimal(value)
    return value


def _shown(columns: Sequence[str], lang: str, operator_sheet: bool) -> list[str]:
    """The report's columns a person reads (ids and the other language's names left out;
    the operator on its own sheet is in the title)."""
    hidden = {"venue_id", "venue_type"} if lang == "zh" else {"venue_id", "venue_type_zh"}
    hidden |= {"venue_name_en"} if lang == "zh" else {"venue_name_zh"}
    if operator_sheet:
        hidden |= {"operator_id", "operator_name"}
    elif lang == "en":
        hidden |= {"operator_name"}
    else:
        hidden |= {"operator_id"}
    return [c for c in columns if c not in hidden]


def _cell(column: str, row: Mapping[str, Any], lang: str) -> Any:
    value = row[column]
    if column == "day_status":
        return WORDS[lang]["open" if value == "open" else "closed"]
    if column == "venue_type" and lang == "en":
        return VENUE_TYPES.get(value, {}).get("en", value)
    return _number(column, value)


def _table(
    name: str,
    title: tuple[str, str],
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    lang: str,
) -> Sheet:
    w = WORDS[lang]
    body = [tuple(_cell(c, r, lang) for c in columns) for r in rows]
    total: list[Any] = []
    for i, column in enumerate(columns):
        if column in SUMMED:
            total.append(sum((r[i] for r in body), Decimal(0) if column in DECIMALS else 0))
        else:
            total.append(w["total"] if i == 0 else None)
    amount = total[columns.index("subsidy_yuan")] if "subsidy_yuan" in columns else Decimal(0)
    return Sheet(
        name=name,
        title=title,
        kinds=tuple(COLUMNS[c][2] if c in COLUMNS else TEXT for c in columns),
        header=tuple(COLUMNS[c][0 if lang == "zh" else 1] if c in COLUMNS else c for c in columns),
        rows=(*body, tuple(total)),
        capitals=f"{w['capitals']}：{rmb_capitals(Decimal(amount))}",
        signing=(w["prepared"], w["reviewed"], w["approved"], w["date"]),
    )


def _sheet_name(text: str, taken: set[str]) -> str:
    """Excel's rules: at most 31 characters, none of []:*?/\\, unique."""
    clean = "".join("_" if ch in "[]:*?/\\" else ch for ch in text)[:31] or "sheet"
    name, n = clean, 2
    while name.lower() in taken:
        name = f"{clean[:28]}~{n}"
        n += 1
    taken.add(name.lower())
    return name


def layout(report: Report, shown: Presentation) -> list[Sheet]:
    """The printed sheets of ``report``, from its rows alone (what verify rebuilds)."""
    lang = shown.lang
    w = WORDS[lang]
    params = report.parameters
    at = shown.generated_at.strftime("%Y-%m-%d %H:%M")
    period = w["period"].format(first=params.get("from", ""), last=params.get("to", ""))
    second = f"{period}    {w['generated'].format(at=at)} ({params.get('timezone', '')})"
    title = w["title"].format(city=shown.city)
    taken = {"report", "parameters"}
    if "operator_id" not in report.columns:
        columns = _shown(report.columns, lang, operator_sheet=False)
        return [
            _table(_sheet_name(w["detail"], taken), (title, second), columns, report.rows, lang)
        ]
    operators = sorted({str(r["operator_id"]) for r in report.rows})
    names = {op: shown.operator_names.get(op, op) for op in operators}
    columns = _shown(report.columns, lang, operator_sheet=True)
    summary_name = _sheet_name(w["summary"], taken)
    sheets: list[Sheet] = []
    summary_rows: list[dict[str, Any]] = []
    for op in operators:
        mine = [r for r in report.rows if r["operator_id"] == op]
        sheet = _table(
            _sheet_name(names[op], taken), (f"{title} — {names[op]}", second), columns, mine, lang
        )
        sheets.append(sheet)
        totals = dict(zip(columns, sheet.rows[-1], strict=True))
        summary_rows.append(
            {
                "operator": names[op],
                **{c: totals[c] for c in SUMMED if c in totals},
                "capitals": rmb_capitals(Decimal(totals.get("subsidy_yuan", 0))),
            }
        )
    summary_columns = ("free_hours", "beyond_allowance_hours", "subsidy_yuan")
    summary = _table(
        summary_name,
        (title, second),
        ("operator", *summary_columns, "capitals"),
        summary_rows,
        lang,
    )
    header = (w["operator"], *summary.header[1:-1], w["capitals"].split("（")[0])
    total_row = (*summary.rows[-1][:-1], rmb_capitals(Decimal(summary.rows[-1][3])))
    summary = Sheet(
        summary.name,
        summary.title,
        (TEXT, HOURS, HOURS, YUAN, TEXT),
        header,
        (*summary.rows[:-1], total_row),
        summary.capitals,
        summary.signing,
    )
    return [summary, *sheets]


def _width(value: Any) -> int:
    text = (
        f"{value:,.2f}" if isinstance(value, Decimal) else str(value if value is not None else "")
    )
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def workbook(
    report: Report, shown: Presentation, digest: str, signature_rows: Sequence[tuple[str, str]]
) -> Any:
    """The openpyxl ``Workbook`` (saved by ``writers``, which fixes its bytes)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, Side
    from openpyxl.utils import get_column_letter

    bold = Font(bold=True)
    thin = Side(style="thin")
    wb = Workbook()
    wb.remove(wb.active)
    for sheet in layout(report, shown):
        ws = wb.create_sheet(sheet.name)
        width = len(sheet.header)
        ws.append([sheet.title[0]])
        ws.append([sheet.title[1]])
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
        ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=width)
        ws.cell(1, 1).font = Font(bold=True, size=14)
        ws.cell(1, 1).alignment = Alignment(horizontal="center")
        ws.append(list(sheet.header))
        for cell in ws[HEADER_ROW]:
            cell.font = bold
            cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
            cell.border = Border(bottom=thin)
        for row in sheet.rows:
            ws.append(list(row))
        last = HEADER_ROW + len(sheet.rows)
        for cell in ws[last]:
            cell.font = bold
            cell.border = Border(top=thin)
        for col, kind in enumerate(sheet.kinds, start=1):
            for r in range(HEADER_ROW + 1, last + 1):
                ws.cell(r, col).number_format = FORMATS[kind] if kind != TEXT else "General"
            longest = max(
                [_width(sheet.header[col - 1]) // 2 + 2]
                + [_width(row[col - 1]) for row in sheet.rows]
            )
            ws.column_dimensions[get_column_letter(col)].width = min(40, max(8, longest + 2))
        ws.append([])
        ws.append([sheet.capitals])
        ws.cell(last + 2, 1).font = bold
        ws.append([])
        block = last + 4
        step = max(1, width // 4)
        for i, label in enumerate(sheet.signing):
            ws.cell(block, 1 + i * step, label)
        ws.freeze_panes = ws.cell(HEADER_ROW + 1, 1)
        ws.print_title_rows = f"{HEADER_ROW}:{HEADER_ROW}"
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True
        ws.print_options.horizontalCentered = True
        ws.oddFooter.center.text = WORDS[shown.lang]["footer"]
        ws.evenFooter.center.text = WORDS[shown.lang]["footer"]
    table = wb.create_sheet("report")
    table.append(list(report.columns))
    for record in report.rows:  # money and hours as numbers; rates and factors as configured
        table.append(
            [_number(c, record[c]) if c in TWO_DECIMALS else record[c] for c in report.columns]
        )
    for i, column in enumerate(report.columns, start=1):
        if column in TWO_DECIMALS:
            for r in range(2, len(report.rows) + 2):
                table.cell(r, i).number_format = "0.00"
    table.freeze_panes = "A2"
    table.sheet_state = "hidden"
    params = wb.create_sheet("parameters")
    params.append(["parameter", "value"])
    for key, value in report.parameters.items():
        params.append([key, param_text(value)])
    params.append(["sha256", digest])
    for key, value in signature_rows:
        params.append([key, value])
    params.append(["layout_lang", shown.lang])
    params.sheet_state = "hidden"
    wb.active = 0
    return wb


def printed_cells(ws: Any, sheet: Sheet) -> list[tuple[Any, ...]]:
    """What a printed sheet holds below its title (header, rows, capitals, signing), as
    ``layout`` would have put it: the part ``verify`` compares."""
    out = []
    for row in ws.iter_rows(min_row=HEADER_ROW, max_row=HEADER_ROW + len(sheet.rows) + 2):
        out.append(tuple(_plain(c.value) for c in row[: len(sheet.header)]))
    return out


def expected_cells(sheet: Sheet) -> list[tuple[Any, ...]]:
    width = len(sheet.header)
    blank = (None,) * width
    return [
        tuple(_plain(v) for v in sheet.header),
        *(tuple(_plain(v) for v in row) for row in sheet.rows),
        blank,
        (sheet.capitals, *blank[1:]),
    ]


def _plain(value: Any) -> Any:
    """A cell value as openpyxl reads it back (numbers as Decimal, to compare exactly)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | datetime):
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    return value
