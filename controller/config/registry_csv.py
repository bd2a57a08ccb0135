"""The venue registry's entries (operators, venues, access points), shared by the TOML
tables and the CSV registries (``[registry] venues_csv``, ``access_points_csv``: long
lists, thousands of rows), with every problem pointing at its CSV line."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from controller.config.model import AccessPoint, Operator, Venue
from controller.config.problems import ConfigProblem, KeyPath, format_key
from controller.config.reader import (
    ACCESS_POINTS_CSV_COLUMNS,
    VENUES_CSV_COLUMNS,
    Reader,
    Spot,
    did_you_mean,
    one_of,
    reason_of,
)
from controller.domain.mac import normalize_mac
from controller.domain.venue_types import VENUE_TYPES


class RegistryReader(Reader):
    """Registry entries from TOML tables and CSV rows (one check for both)."""

    # -- registry entries (shared by TOML tables and CSV rows)
    def operator(self, path: KeyPath, t: dict[str, Any]) -> None:
        spot = Spot(self.file, path)
        before = len(self.problems)
        op_id = self.string(t, path, "id", required=True, nonempty=True)
        name = self.name(t, path, "name")
        if op_id:
            self.identifier(spot, "id", op_id)
            self.declare(self.operator_spots, "operator id", spot, "id", op_id)
        if len(self.problems) == before:
            self.operators[op_id] = Operator(id=op_id, name=MappingProxyType(name))

    def venue_from_toml(self, path: KeyPath, t: dict[str, Any]) -> None:
        before = len(self.problems)
        venue_id = self.string(t, path, "id", required=True, nonempty=True)
        name = self.name(t, path, "name")
        self.venue(
            Spot(self.file, path),
            before,
            venue_id,
            name,
            self.string(t, path, "type", required=True, nonempty=True),
            self.string(t, path, "district", required=True, nonempty=True),
            self.string(t, path, "operator", required=True, nonempty=True),
        )

    def venue(
        self,
        spot: Spot,
        before: int,
        venue_id: str,
        name: Mapping[str, str],
        kind: str,
        district: str,
        operator: str,
    ) -> None:
        """Validate and add one venue; ``before`` = problem count when its parsing began."""
        if venue_id:
            self.identifier(spot, "id", venue_id)
            self.declare(self.venue_spots, "venue id", spot, "id", venue_id)
        if kind and kind not in VENUE_TYPES:
            hint = did_you_mean(kind, VENUE_TYPES)
            self.report_at(
                spot,
                "type",
                f"unknown venue type '{kind}'{hint}; valid types: {one_of(VENUE_TYPES)}",
            )
        if operator and operator not in self.operator_spots:
            self.report_at(
                spot, "operator", f"operator '{operator}' is not defined in [[operators]]"
            )
        if len(self.problems) == before:
            self.venues[venue_id] = Venue(
                id=venue_id,
                name=MappingProxyType(dict(name)),
                type=kind,
                district=district.strip(),
                operator=operator,
            )

    def access_point(self, spot: Spot, match: str, venue: str) -> None:
        before = len(self.problems)
        key = normalize_mac(match) or match.strip()
        if key:
            self.declare(self.ap_spots, "access point match", spot, "match", key)
        if venue:
            self.require_venue(spot, "venue", venue)
        if len(self.problems) == before:
            self.access_points[key] = AccessPoint(match=key, venue=venue)

    def require_venue(self, spot: Spot, key: str, venue: str) -> None:
        if venue not in self.venue_spots:
            self.report_at(
                spot, key, f"venue '{venue}' is not defined (in [[venues]] or the venues CSV)"
            )

    # -- CSV registries
    def csv_rows(
        self, file: Path, setting: str, columns: Sequence[str]
    ) -> Iterator[tuple[int, dict[str, str]]]:
        """Rows of a registry CSV as (line, {column: value}); problems name the CSV file."""
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            key: KeyPath = ("registry", setting)
            line = self.loc.line(key)
            named = f" (named at {self.file}:{line})" if line else ""
            self.problems.append(
                ConfigProblem(
                    file, None, format_key(key), f"cannot read CSV file{named}: {reason_of(exc)}"
                )
            )
            return
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
                unknown = [c for c in header if c not in columns]
                if missing:
                    self.problems.append(
                        ConfigProblem(
                            file,
                            start,
                            "header",
                            f"missing column(s) {', '.join(missing)}; "
                            f"expected header: {','.join(columns)}",
                        )
                    )
                for col in unknown:
                    hint = did_you_mean(col, columns)
                    self.problems.append(
                        ConfigProblem(file, start, "header", f"unknown column '{col}'{hint}")
                    )
                if missing:
                    return
                continue
            if len(row) > len(header):
                self.problems.append(
                    ConfigProblem(
                        file, start, "row", f"{len(row)} fields, but the header has {len(header)}"
                    )
                )
                continue
            cells = dict(zip(header, (cell.strip() for cell in row), strict=False))
            yield start, {c: cells.get(c, "") for c in columns}
        if header is None:
            self.problems.append(
                ConfigProblem(
                    file, None, "header", f"empty file; expected header: {','.join(columns)}"
                )
            )

    def csv_required(self, spot: Spot, row: Mapping[str, str], *columns: str) -> None:
        for column in columns:
            if not row[column]:
                self.report_at(spot, column, f"missing value for '{column}'")

    def venues_from_csv(self, file: Path) -> None:
        for line, row in self.csv_rows(file, "venues_csv", VENUES_CSV_COLUMNS):
            spot = Spot(file, (), line)
            before = len(self.problems)
            self.csv_required(spot, row, "id", "type", "district", "operator")
            name = self.names(spot, "name_zh", {"zh": row["name_zh"], "en": row["name_en"]})
            self.venue(spot, before, row["id"], name, row["type"], row["district"], row["operator"])

    def access_points_from_csv(self, file: Path) -> None:
        for line, row in self.csv_rows(file, "access_points_csv", ACCESS_POINTS_CSV_COLUMNS):
            spot = Spot(file, (), line)
            self.csv_required(spot, row, "match", "venue")
            self.access_point(spot, row["match"], row["venue"])
