"""Amounts in Chinese capitals: the PBoC rules' own kind of examples, and properties (the
words read back to the same amount; one 零 at most in a row; 整 exactly when no 分)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.domain.rmb_capitals import LIMIT, CapitalsError, rmb_capitals

TABLE = [
    ("0", "零元整"),
    ("0.05", "伍分"),
    ("0.10", "壹角整"),
    ("0.15", "壹角伍分"),
    ("1", "壹元整"),
    ("1.50", "壹元伍角整"),
    ("10", "壹拾元整"),
    ("15", "壹拾伍元整"),
    ("101", "壹佰零壹元整"),
    ("110", "壹佰壹拾元整"),
    ("1000.05", "壹仟元零伍分"),
    ("1001", "壹仟零壹元整"),
    ("1010", "壹仟零壹拾元整"),
    ("1680.32", "壹仟陆佰捌拾元叁角贰分"),
    ("10000", "壹万元整"),
    ("10001", "壹万零壹元整"),
    ("100100", "壹拾万零壹佰元整"),
    ("107000.53", "壹拾万柒仟元伍角叁分"),
    ("325000.10", "叁拾贰万伍仟元壹角整"),
    ("6007.14", "陆仟零柒元壹角肆分"),
    ("100000000", "壹亿元整"),
    ("100001000", "壹亿零壹仟元整"),
    ("100010000", "壹亿零壹万元整"),
    ("101000000", "壹亿零壹佰万元整"),
    ("120000000", "壹亿贰仟万元整"),
    ("1000000000000", "壹万亿元整"),
    (
        "9999999999999999.99",
        "玖仟玖佰玖拾玖万亿玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分",
    ),
    ("-12.30", "负壹拾贰元叁角整"),
]


@pytest.mark.parametrize(("figures", "words"), TABLE)
def test_table(figures: str, words: str) -> None:
    if Decimal(figures) >= LIMIT:
        with pytest.raises(CapitalsError):
            rmb_capitals(Decimal(figures))
        return
    assert rmb_capitals(Decimal(figures)) == words


@pytest.mark.parametrize("bad", ["0.001", "1.005", "NaN", "Infinity", "1E16"])
def test_what_cannot_be_written(bad: str) -> None:
    with pytest.raises(CapitalsError):
        rmb_capitals(Decimal(bad))


_DIGIT = {c: i for i, c in enumerate("零壹贰叁肆伍陆柒捌玖")}
_SMALL = {"拾": 10, "佰": 100, "仟": 1000}


def read_back(words: str) -> Decimal:
    """An independent reader of capitals (units multiply what precedes them)."""
    sign = -1 if words.startswith("负") else 1
    words = words.removeprefix("负").removesuffix("整")
    yuan_part, _, small = words.rpartition("元") if "元" in words else ("", "", words)
    total = 0
    section = 0  # below 万
    high = 0  # 万 .. below 亿 when inside an 亿 group
    pending = 0
    for ch in yuan_part:
        if ch in _DIGIT:
            pending = _DIGIT[ch]
        elif ch in _SMALL:
            section += pending * _SMALL[ch]
            pending = 0
        elif ch == "万":
            high += (section + pending) * 10_000
            section = pending = 0
        elif ch == "亿":
            total = (total + high + section + pending) * 10**8
            high = section = pending = 0
    total += high + section + pending
    fen = 0
    pending = 0
    for ch in small:
        if ch in _DIGIT:
            pending = _DIGIT[ch]
        elif ch == "角":
            fen += pending * 10
            pending = 0
        elif ch == "分":
            fen += pending
            pending = 0
    return sign * (Decimal(total) + Decimal(fen) / 100)


amounts = st.integers(min_value=0, max_value=10**14 - 1).map(lambda f: Decimal(f) / 100)


@given(amounts)
def test_the_words_read_back_to_the_amount(amount: Decimal) -> None:
    words = rmb_capitals(amount)
    assert read_back(words) == amount, words


@given(amounts)
def test_the_shape_of_the_words(amount: Decimal) -> None:
    words = rmb_capitals(amount)
    assert "零零" not in words
    assert words.endswith("整") == (amount * 100 % 10 == 0)
    assert not words.endswith("零")
    if amount >= 1:
        assert "元" in words and not words.startswith("零")
        assert not words.startswith("拾")  # 壹拾, never a bare 拾 at the start
    else:
        assert "元" not in words or words == "零元整"
    assert "零元" not in words or words == "零元整"


@given(st.integers(min_value=1, max_value=10**12 - 1))
def test_every_ten_is_written_with_its_one(yuan: int) -> None:
    words = rmb_capitals(Decimal(yuan))
    for i, ch in enumerate(words):
        if ch == "拾":
            assert i > 0 and words[i - 1] in "壹贰叁肆伍陆柒捌玖", words
