"""A report as CSV (UTF-8 with BOM, for Excel), JSON or XLSX, each with its digest.

The digest is the SHA-256 of the report's canonical JSON: the object
``{"columns", "parameters", "rows"}`` serialised with sorted keys, no spaces and UTF-8
(``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)``). It is
the same for the three formats of one query (they hold the same figures) and is exactly
the JSON export minus its ``digest`` member, so anyone can recompute it. Nothing in a
body depends on the time of the request: the same query on the same archive gives the
same bytes (XLSX included: fixed document dates and zip entry times).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from datetime import datetime
from typing import Any

from controller.services.reports.meta import Presentation
from controller.services.reports.subsidy import Report

BOM = "\ufeff"
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_EPOCH = datetime(2000, 1, 1)  # fixed XLSX document dates (reproducible bytes)


def canonical(report: Report) -> bytes:
    body = {"columns": list(report.columns), "parameters": report.parameters, "rows": report.rows}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(report: Report) -> str:
    return hashlib.sha256(canonical(report)).hexdigest()


def _param_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def to_csv(report: Report) -> bytes:
    """Header and rows; then a blank line and ``#`` lines: the parameters and the digest."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(report.columns)
    for row in report.rows:
        writer.writerow([row[c] for c in report.columns])
    writer.writerow([])
    writer.writerow(["#parameter", "value"])
    for key, value in report.parameters.items():
        writer.writerow([f"#{key}", _param_text(value)])
    writer.writerow(["#sha256", digest(report)])
    writer.writerows([f"#{k}", v] for k, v in signature_rows(report))
    return (BOM + out.getvalue()).encode("utf-8")


def to_json(report: Report) -> bytes:
    body = {
        "parameters": report.parameters,
        "columns": list(report.columns),
        "rows": report.rows,
        "digest": {"sha256": digest(report)},
    }
    if report.signature is not None:
        body["signature"] = dict(signature_rows(report))
    return json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8")


def to_xlsx(report: Report) -> bytes:
    # imported here for start-up cost: only an XLSX export needs openpyxl (~0.2 s to import)
    from openpyxl.writer.excel import ExcelWriter

    from controller.services.reports import settlement_xlsx

    shown = report.presentation or Presentation("zh", "", _EPOCH, {})
    wb = settlement_xlsx.workbook(report, shown, digest(report), signature_rows(report))
    wb.properties.creator = "citywifi"
    wb.properties.created = _EPOCH
    wb.properties.modified = _EPOCH
    raw = io.BytesIO()
    # ExcelWriter directly: openpyxl's save_workbook stamps "modified" with the clock
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(wb, archive).save()
    return _fixed_zip(raw.getvalue())


def _fixed_zip(data: bytes) -> bytes:
    """Rewrite a zip with fixed entry times and order, so equal content gives equal bytes."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def signature_rows(report: Report) -> list[tuple[str, str]]:
    """The signature's metadata lines (none for an unsigned report), the same in every
    format: ``signature_algorithm``, ``signature_key_id``, ``signature``."""
    sig = report.signature
    if sig is None:
        return []
    return [
        ("signature_algorithm", sig.algorithm),
        ("signature_key_id", sig.key_id),
        ("signature", sig.value),
    ]


def render(report: Report, fmt: str) -> bytes:
    if fmt == "csv":
        return to_csv(report)
    if fmt == "json":
        return to_json(report)
    if fmt == "xlsx":
        return to_xlsx(report)
    raise ValueError(f"unknown format {fmt!r}")
