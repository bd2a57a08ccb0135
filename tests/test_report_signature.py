"""Signed reports: the key file made 0600 on first use, the public key published, and
``citywifi report verify`` accepting each format fresh and refusing it with one figure
changed (in the XLSX both in its table and on a printed sheet), or signed by another key."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openpyxl import load_workbook

from controller.cli.serve import Controller
from controller.config import Config
from controller.services.reports.settlement_xlsx import HEADER_ROW
from controller.services.reports.signature import (
    UnreadableReport,
    key_id,
    key_path,
    load_public_pem,
    signing_key,
    verify,
)
from tests.test_reports import get, report, run_cli, scenario
from tests.test_reports_helpers import Clock

pytest_plugins = ["tests.test_reports_helpers"]  # fixtures: city, clock, ctl

Q = {"from": "2025-11-10", "to": "2025-11-11"}


def test_the_key_file_is_made_private_once(city: Config) -> None:
    path = key_path(city)
    assert not path.exists()
    first = signing_key(city)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    second = signing_key(city)
    assert first.public_key() == second.public_key()


def xlsx_edited(body: bytes, sheet: str, row: int, column: int, value: object) -> bytes:
    book = load_workbook(io.BytesIO(body))
    book[sheet].cell(row, column).value = value
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_each_format_verifies_and_an_edited_figure_does_not(
    ctl: Controller, clock: Clock, city: Config, tmp_path: Path
) -> None:
    await scenario(ctl, clock)
    public = signing_key(city).public_key()
    bodies = {fmt: (await report(ctl, **Q, format=fmt))[2] for fmt in ("json", "csv", "xlsx")}
    for fmt, body in bodies.items():
        v = verify(body, public)
        assert v.valid, (fmt, v.reason)
        assert v.parameters["from"] == "2025-11-10" and v.parameters["group"] == "venue"

    doc = json.loads(bodies["json"])
    assert doc["signature"]["signature_algorithm"] == "Ed25519"
    station = next(r for r in doc["rows"] if r["venue_id"] == "station")
    station["subsidy_yuan"] = "0.76"  # was 0.75
    edited_json = json.dumps(doc, ensure_ascii=False).encode()
    assert not verify(edited_json, public).valid

    csv_text = bodies["csv"].decode("utf-8-sig")
    assert csv_text.count(",0.75,") == 1
    edited_csv = ("\ufeff" + csv_text.replace(",0.75,", ",0.76,")).encode()
    assert not verify(edited_csv, public).valid

    book = load_workbook(io.BytesIO(bodies["xlsx"]))
    table = list(book["report"].iter_rows(values_only=True))
    column = table[0].index("subsidy_yuan") + 1
    row = next(i for i, r in enumerate(table, start=1) if "station" in r)
    resaved = xlsx_edited(bodies["xlsx"], "report", 1, 1, table[0][0])  # saved, not changed
    assert verify(resaved, public).valid
    in_table = xlsx_edited(bodies["xlsx"], "report", row, column, 0.76)
    v = verify(in_table, public)
    assert not v.valid and "changed" in v.reason
    printed = book["中国电信"]
    header = [c.value for c in printed[HEADER_ROW]]
    on_sheet = xlsx_edited(
        bodies["xlsx"], "中国电信", HEADER_ROW + 1, header.index("补贴金额（元）") + 1, 0.76
    )
    v = verify(on_sheet, public)
    assert not v.valid and "printed sheet" in v.reason

    other = Ed25519PrivateKey.generate().public_key()
    v = verify(bodies["json"], other)
    assert not v.valid and "signed by key" in v.reason

    # the command line, with the published key only (no config)
    pem = tmp_path / "city-reports.pem"
    result = run_cli("report", "public-key", "--config", str(city.source), "--out", str(pem))
    assert result.returncode == 0, result.stderr.decode()
    with pytest.raises(UnreadableReport):
        verify(b"{}", public)
    for name, body, code in (("good.xlsx", bodies["xlsx"], 0), ("edited.csv", edited_csv, 1)):
        (tmp_path / name).write_bytes(body)
        result = run_cli("report", "verify", str(tmp_path / name), "--public-key", str(pem))
        assert result.returncode == code, (name, result.stdout, result.stderr)
        if code == 0:
            out = result.stdout.decode()
            assert out.startswith("valid:") and "2025-11-10..2025-11-11, group venue" in out
        if code == 1:
            assert result.stdout.decode().startswith("INVALID:")


async def test_the_published_key_from_the_live_server_verifies_its_reports(
    ctl: Controller, clock: Clock
) -> None:
    """``GET /reports/public-key`` needs no token (a public key proves, it admits nobody);
    a report fetched from the same server verifies with it, an edited one does not."""
    await scenario(ctl, clock)
    status, headers, pem = await get(ctl, "/reports/public-key", token=None)
    assert status == 200 and headers["Content-Type"].startswith("application/x-pem-file")
    public = load_public_pem(pem)
    assert headers["X-Key-Id"] == key_id(public)
    body = (await report(ctl, **Q, format="json"))[2]
    doc = json.loads(body)
    assert verify(body, public).valid and doc["signature"]["signature_key_id"] == key_id(public)
    doc["rows"][0]["subsidy_yuan"] = "999.99"
    assert not verify(json.dumps(doc, ensure_ascii=False).encode(), public).valid
