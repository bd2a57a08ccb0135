"""The CSV registries (``[registry] venues_csv``, ``access_points_csv``: long lists,
thousands of rows): their rows as entries for the same schema as the TOML tables
(``schema.VenueEntry``, ``schema.AccessPointEntry``), and their problems as
``file.csv:line: column: reason``."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.config.checks import did_you_mean
from controller.config.problems import ConfigProblem, KeyPath


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int  # where the row starts (a quoted cell may span lines)
    cells: Mapping[str, str]  # every expected column, stripped ("" when absent)


@dataclass(slots=True)
class CsvRows:
    rows: list[CsvRow] = field(default_factory=list)
    problems: list[ConfigProblem] = field(default_factory=list)


def read_rows(file: Path, columns: Sequence[str]) -> CsvRows:
    """The rows of a registry CSV under its header; raises ``OSError`` or
    ``UnicodeDecodeError`` when the file cannot be read (the caller names the setting)."""
    text = file.read_text(encoding="utf-8-sig")
    out = CsvRows()
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    line = 0
    for row in reader:
        start, line = line + 1, reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            missing = [c for c in columns if c not in header]
            if missing:
                out.problems.append(
                    ConfigProblem(
                        file,
                        start,
                        "header",
                        f"missing column(s) {', '.join(missing)}; "
                        f"expected header: {','.join(columns)}",
                    )
                )
            for col in (c for c in header if c not in columns):
                hint = did_you_mean(col, columns)
                out.problems.append(
                    ConfigProblem(file, start, "header", f"unknown column '{col}'{hint}")
                )
            if missing:
                return out
            continue
        if len(row) > len(header):
            out.problems.append(
                ConfigProblem(
                    file, start, "row", f"{len(row)} fields, but the header has {len(header)}"
                )
            )
            continue
        cells = dict(zip(header, (cell.strip() for cell in row), strict=False))
        out.rows.append(CsvRow(start, {c: cells.get(c, "") for c in columns}))
    if header is None:
        out.problems.append(
            ConfigProblem(file, None, "header", f"empty file; expected header: {','.join(columns)}")
        )
    return out


def venue_entry(row: CsvRow) -> dict[str, Any]:
    """A venues CSV row as a ``[[venues]]`` table: an empty cell is a missing key."""
    entry: dict[str, Any] = {k: v for k, v in row.cells.items() if v and not k.startswith("name_")}
    entry["name"] = {"zh": row.cells["name_zh"], "en": row.cells["name_en"]}
    return entry


def access_point_entry(row: CsvRow) -> dict[str, Any]:
    return {k: v for k, v in row.cells.items() if v}


def column_problem(file: Path, line: int, key: KeyPath, message: str) -> ConfigProblem:
    """A schema problem of a CSV row, named by its column (a name by ``name_zh``)."""
    column = str(key[0]) if key else ""
    if column == "name":
        column = "name_zh"
    if message == f"missing required key '{column}'":
        message = f"missing value for '{column}'"
    return ConfigProblem(file, line, column, message)
