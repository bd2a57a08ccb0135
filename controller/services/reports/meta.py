"""What travels with a report but is not its figures: how the workbook presents it, and
the signature over the figures' canonical bytes.

Neither enters the canonical form (``writers.canonical``), so the digest of one query is
the same in every language and at every generation time, and a signature can be checked
against the figures alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.config import Config


@dataclass(frozen=True, slots=True)
class Presentation:
    """The settlement workbook's language, the city it is for and when it was made."""

    lang: str  # "zh" or "en"
    city: str  # the brand's name in that language
    generated_at: datetime  # local time (quota.timezone)
    operator_names: Mapping[str, str]  # operator id -> name in that language


@dataclass(frozen=True, slots=True)
class Signature:
    """An Ed25519 signature (RFC 8032) of the canonical bytes, and which key made it."""

    algorithm: str  # "Ed25519"
    key_id: str  # hex of the first 8 bytes of SHA-256 of the raw public key
    value: str  # base64 of the 64-byte signature


def presentation(config: Config, lang: str, now: float) -> Presentation:
    def name(names: Mapping[str, str], fallback: str) -> str:
        return names.get(lang) or names.get("zh") or fallback

    return Presentation(
        lang=lang,
        city=name(config.brand.name, config.brand.ssid),
        generated_at=datetime.fromtimestamp(now, config.quota.timezone),
        operator_names={k: name(op.name, k) for k, op in config.operators.items()},
    )


def param_text(value: Any) -> str:
    """A parameter as a CSV or XLSX cell: tables and lists as compact JSON, the rest as
    text (the inverse is ``param_value``)."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def param_value(text: str) -> Any:
    """The parameter a cell holds, as the JSON report has it (for ``verify``): the report's
    parameters are strings, integers, booleans, tables and lists, and no string one looks
    like a number, a boolean or JSON."""
    if text[:1] in ("{", "["):
        return json.loads(text)
    if _INTEGER.fullmatch(text):
        return int(text)
    if text in ("True", "False"):
        return text == "True"
    return text


_INTEGER = re.compile(r"-?[0-9]+")
