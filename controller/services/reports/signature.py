"""Signed, verifiable reports: the city's Ed25519 signature over the figures.

The SHA-256 digest proves nothing about who made a report (anyone can edit a figure and
recompute it). So every report is also signed with the city's Ed25519 key (RFC 8032,
through the ``cryptography`` library) over exactly the bytes the digest is of: the
canonical JSON of ``{"columns", "parameters", "rows"}`` (``writers.canonical``). The
signature, the algorithm and the key id travel in each format's metadata (JSON member
``signature``; CSV ``#signature…`` lines; XLSX ``parameters`` sheet), and
``citywifi report verify`` rebuilds the canonical bytes from what the file shows and
checks them against the public key: one figure changed anywhere, in any format (in the
XLSX also on a printed sheet), and the file no longer verifies.

The key: the 32-byte Ed25519 seed, as hex, in ``[reports] signing_key_file`` (default
``<data_dir>/report-signing.key``), created 0600 on first use (``storage.keyfiles``); its
public half is published with ``citywifi report public-key`` (PEM, SubjectPublicKeyInfo)
and named in every report by its key id: the first 8 bytes of SHA-256 of the raw 32-byte
public key, as hex. Keep the seed as secret as the person key; a city that replaces it
publishes the new public key (older reports verify against the older one).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from controller.config import Config
from controller.services.reports import settlement_xlsx
from controller.services.reports.meta import Presentation, Signature, param_value
from controller.services.reports.query import ReportRequest
from controller.services.reports.subsidy import Progress, Report, build
from controller.services.reports.writers import BOM, canonical
from controller.storage.archive import Archive
from controller.storage.keyfiles import load_key_file

ALGORITHM = "Ed25519"
_META = ("sha256", "signature_algorithm", "signature_key_id", "signature", "layout_lang")
# report columns that are integers in the JSON (the rest are strings)
_INTEGERS = {c for c, (_, _, kind) in settlement_xlsx.COLUMNS.items() if kind == "count"}


class SigningKeyError(ValueError):
    """The signing key file does not hold a 32-byte seed as hex."""


def key_path(config: Config) -> Path:
    return config.reports.signing_key_file or config.redis.data_dir / "report-signing.key"


def signing_key(config: Config) -> Ed25519PrivateKey:
    """The city's signing key, generated into its file on first use."""
    path = key_path(config)
    text = load_key_file(path).decode(errors="replace")
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise SigningKeyError(f"{path}: expected 64 hex digits (an Ed25519 seed)")
    return Ed25519PrivateKey.from_private_bytes(seed)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("not an Ed25519 public key")
    return key


def sign(report: Report, key: Ed25519PrivateKey) -> Report:
    """``report`` with its signature over the canonical bytes."""
    value = base64.b64encode(key.sign(canonical(report))).decode()
    return dataclasses.replace(
        report, signature=Signature(ALGORITHM, key_id(key.public_key()), value)
    )


def build_signed(
    archive: Archive,
    config: Config,
    req: ReportRequest,
    now: float,
    progress: Progress | None = None,
) -> Report:
    """``subsidy.build``, signed with the city's key (blocking: run it in a thread)."""
    return sign(build(archive, config, req, now, progress), signing_key(config))


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``verify`` found: valid or not (and why), and what the report claims to be."""

    valid: bool
    reason: str
    format: str
    key_id: str
    parameters: Mapping[str, Any]


class UnreadableReport(ValueError):
    """The file is no report this program wrote (no table or no signature found)."""


@dataclass(frozen=True, slots=True)
class _Claim:
    report: Report
    signature: Signature | None
    printed_ok: bool = True  # XLSX: the printed sheets agree with the table


def verify(body: bytes, public: Ed25519PublicKey) -> Verdict:
    """Check a report file (JSON, CSV or XLSX, told apart by their first bytes)."""
    if body.startswith(b"PK\x03\x04"):
        fmt, claim = "xlsx", _from_xlsx(body)
    elif body.startswith(BOM.encode()):
        fmt, claim = "csv", _from_csv(body)
    else:
        fmt, claim = "json", _from_json(body)
    params = claim.report.parameters
    sig = claim.signature
    if sig is None:
        return Verdict(False, "the report carries no signature", fmt, "", params)
    if sig.algorithm != ALGORITHM:
        return Verdict(False, f"unknown algorithm {sig.algorithm!r}", fmt, sig.key_id, params)
    if sig.key_id != key_id(public):
        reason = f"signed by key {sig.key_id}, not by this public key ({key_id(public)})"
        return Verdict(False, reason, fmt, sig.key_id, params)
    try:
        public.verify(base64.b64decode(sig.value, validate=True), canonical(claim.report))
    except (InvalidSignature, ValueError):
        reason = "the signature does not match the figures (the report was changed)"
        return Verdict(False, reason, fmt, sig.key_id, params)
    if not claim.printed_ok:
        reason = "a printed sheet differs from the signed table (the workbook was changed)"
        return Verdict(False, reason, fmt, sig.key_id, params)
    return Verdict(True, "signature valid", fmt, sig.key_id, params)


def _signature(meta: Mapping[str, Any]) -> Signature | None:
    if "signature" not in meta:
        return None
    return Signature(
        str(meta.get("signature_algorithm", "")),
        str(meta.get("signature_key_id", "")),
        str(meta["signature"]),
    )


def _from_json(body: bytes) -> _Claim:
    try:
        doc = json.loads(body)
        report = Report(tuple(doc["columns"]), doc["rows"], doc["parameters"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UnreadableReport(f"not a JSON report ({exc})") from None
    return _Claim(report, _signature(doc.get("signature") or {}))


def _typed(column: str, text: str) -> Any:
    return int(text) if column in _INTEGERS else text


def _from_csv(body: bytes) -> _Claim:
    lines = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    if not lines or not lines[0]:
        raise UnreadableReport("not a CSV report (no header)")
    columns = tuple(lines[0])
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    meta: dict[str, str] = {}
    try:
        for line in lines[1:]:
            if not line:
                continue
            if line[0].startswith("#"):
                key = line[0][1:]
                if key == "parameter":
                    continue
                if key in _META:
                    meta[key] = line[1]
                else:
                    params[key] = param_value(line[1])
                continue
            rows.append({c: _typed(c, v) for c, v in zip(columns, line, strict=True)})
    except (ValueError, IndexError) as exc:
        raise UnreadableReport(f"not a CSV report ({exc})") from None
    return _Claim(Report(columns, rows, params), _signature(meta))


def _cell_text(column: str, value: Any) -> Any:
    """A hidden-table cell as the JSON has it (money and hours always with two decimals;
    rates and factors are kept as text there, exactly as configured)."""
    if column in _INTEGERS:
        return int(value)
    if column in settlement_xlsx.TWO_DECIMALS and isinstance(value, int | float):
        return f"{float(value):.2f}"
    return "" if value is None else str(value)


def _from_xlsx(body: bytes) -> _Claim:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(body))
        table = list(book["report"].iter_rows(values_only=True))
        pairs = list(book["parameters"].iter_rows(min_row=2, values_only=True))
        columns = tuple(str(c) for c in table[0])
        rows = [{c: _cell_text(c, v) for c, v in zip(columns, r, strict=True)} for r in table[1:]]
    except (KeyError, ValueError, IndexError, zipfile.BadZipFile, OSError) as exc:
        raise UnreadableReport(f"not a settlement workbook ({exc})") from None
    params: dict[str, Any] = {}
    meta: dict[str, str] = {}
    for key, value in pairs:
        text = "" if value is None else str(value)
        if key in _META:
            meta[str(key)] = text
        else:
            params[str(key)] = param_value(text)
    report = Report(columns, rows, params)
    return _Claim(report, _signature(meta), _printed_agree(book, report, meta))


def _printed_agree(book: Any, report: Report, meta: Mapping[str, str]) -> bool:
    """Every printed sheet holds what ``layout`` makes of the signed table."""
    printed = [ws for ws in book.worksheets if ws.sheet_state == "visible"]
    lang = meta.get("layout_lang", "zh")
    names: dict[str, str] = {}
    if "operator_id" in report.columns and printed:
        operators = sorted({str(r["operator_id"]) for r in report.rows})
        column_a = [
            ws_row[0]
            for ws_row in printed[0].iter_rows(
                min_row=settlement_xlsx.HEADER_ROW + 1,
                max_row=settlement_xlsx.HEADER_ROW + len(operators),
                values_only=True,
            )
        ]
        names = {op: str(name) for op, name in zip(operators, column_a, strict=False)}
    shown = Presentation(lang, "", datetime(2000, 1, 1), names)
    sheets = settlement_xlsx.layout(report, shown)
    if len(sheets) != len(printed):
        return False
    return all(
        settlement_xlsx.printed_cells(ws, sheet) == settlement_xlsx.expected_cells(sheet)
        for ws, sheet in zip(printed, sheets, strict=True)
    )
