"""An amount of yuan written in Chinese capitals (大写金额), as a payment voucher wants it.

A finance office pays from a document whose total is written twice: in figures and in
capitals, so that a figure changed by hand no longer matches its words. The writing
follows the People's Bank of China rules for bills and settlement vouchers (《正确填写票据
和结算凭证的基本规定》, part of 《支付结算办法》, 1997):

- the capitals 零壹贰叁肆伍陆柒捌玖 and the units 拾佰仟万亿, then 元 角 分;
- 壹 is always written before 拾 (壹拾元, never 拾元), so nothing can be put in front;
- an amount without 分 ends in 整 (壹仟元整, 壹元伍角整); one with 分 does not;
- a zero between figures is written as one 零, however many zeros there are
  (1,001 → 壹仟零壹元; 100,100 → 壹拾万零壹佰元); when the 元 figure is 0 but 角 is
  not, the rules allow 零 or nothing, and we write nothing (1,680.32 → 壹仟陆佰捌拾元叁角
  贰分); when 角 is 0 and 分 is not, 零 is written (1,000.05 → 壹仟元零伍分);
- less than one yuan has no 元 part (0.05 → 伍分); nothing at all is 零元整.

Pure: a ``Decimal`` in, a string out.
"""

from __future__ import annotations

from decimal import Decimal

DIGITS = "零壹贰叁肆伍陆柒捌玖"
_PLACES = ("", "拾", "佰", "仟")  # within a group of four figures, lowest first
_GROUPS = ("", "万", "亿", "万亿")  # groups of four figures, lowest first
LIMIT = Decimal(10) ** 16  # 万亿 is the largest group unit written here


class CapitalsError(ValueError):
    """The amount cannot be written: not a whole number of fen, or too large."""


def _group(value: int) -> str:
    """1..9999 in capitals, a run of inner zeros as one 零, trailing zeros dropped."""
    out: list[str] = []
    zero = False
    for place in range(3, -1, -1):
        figure = value // 10**place % 10
        if figure == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(DIGITS[figure] + _PLACES[place])
    return "".join(out)


def _yuan(value: int) -> str:
    """A positive whole number of yuan, without the 元."""
    groups: list[int] = []
    while value:
        groups.append(value % 10_000)
        value //= 10_000
    out: list[str] = []
    zero = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            zero = bool(out)
            continue
        if out and (zero or group < 1000):
            out.append("零")
        zero = False
        out.append(_group(group) + _GROUPS[index])
    return "".join(out)


def rmb_capitals(amount: Decimal) -> str:
    """``amount`` yuan (whole fen, below 10^16) in capitals; a negative one starts with 负."""
    if not amount.is_finite():
        raise CapitalsError(f"not an amount: {amount}")
    fen_total = amount * 100
    if fen_total != fen_total.to_integral_value():
        raise CapitalsError(f"{amount} is not a whole number of fen")
    if abs(amount) >= LIMIT:
        raise CapitalsError(f"{amount} is too large to write in capitals")
    count = int(fen_total)
    sign = "负" if count < 0 else ""
    count = abs(count)
    yuan, jiao, fen = count // 100, count // 10 % 10, count % 10
    if count == 0:
        return "零元整"
    text = _yuan(yuan) + "元" if yuan else ""
    if jiao:
        text += DIGITS[jiao] + "角"
    elif fen and yuan:
        text += "零"
    text += DIGITS[fen] + "分" if fen else "整"
    return sign + text
