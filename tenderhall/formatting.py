"""How pages show times and money: centre-local time with its offset, yuan with digit grouping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def display_zone(name: str) -> timezone | ZoneInfo:
    """The configured zone; China has one offset and no DST, so UTC+8 stands in if tzdata is missing."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone(timedelta(hours=8), "UTC+08:00")


def when(value: datetime | str | None, zone: timezone | ZoneInfo, *, seconds: bool = True) -> str:
    """'2026-11-25 08:27:29 (UTC+08:00)' for an aware datetime or ISO 8601 text; '' for None."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    local = moment.astimezone(zone)
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + f" (UTC{offset[:3]}:{offset[3:]})"


def yuan(value: Decimal | str | int | None) -> str:
    """'12,800,000.00' from a Decimal or decimal text; the text as given if it is no number."""
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return f"{amount:,.2f}"


# Chinese financial numerals (大写数字) and their place units, per PBOC 《正确填写票据和结算凭证的基本规定》.
_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_PLACES = ("", "拾", "佰", "仟")
# The unit closing each group of four digits, lowest group first; the fourth group counts
# 万亿 (its 亿 comes from the group below, written even when that group is all zeros).
_GROUPS = ("", "万", "亿", "万")
YUAN_IN_WORDS_MAX = Decimal("9999999999999999.99")  # numeric(18,2)
_FEN = Decimal("0.01")


def yuan_in_words(amount: Decimal | int) -> str:
    """The amount in Chinese financial capitals (大写金额), without the 人民币 prefix the caller adds.

    Follows PBOC 《正确填写票据和结算凭证的基本规定》 (银发〔1997〕280号) §4, choosing where it allows
    a choice:
    - 整 only after 元: 100 → 壹佰元整; none after 角 or 分 (its own example ¥1,409.50 →
      壹仟肆佰零玖元伍角), so 10.50 → 壹拾元伍角 and 0.50 → 伍角.
    - Every run of zeros inside the integer part is one 零, also where the run covers the 万
      or 亿 place (rule 3 allows writing it or not; writing it keeps one rule for every run):
      1005 → 壹仟零伍元整, 10005000 → 壹仟万零伍仟元整, 100010000 → 壹亿零壹万元整.
    - 零 after 元 when 角 is 0 and 分 is not (rule 4, mandatory): 100.05 → 壹佰元零伍分; none
      when only the 元 place is 0 and 角 is not (rule 3 allows either):
      1680.32 → 壹仟陆佰捌拾元叁角贰分.
    - A leading 1 is 壹拾, never a bare 拾 (10 → 壹拾元整); less than a yuan has no 元 part
      (0.05 → 伍分); zero is 零元整.

    The amount is first rounded to fen (0.01) half up. Raises ValueError for a negative amount,
    NaN or infinity, or more than 9999999999999999.99 after rounding (numeric(18,2)); TypeError
    for anything but a Decimal or an int (money is never a float).
    """
    if isinstance(amount, bool) or not isinstance(amount, (Decimal, int)):
        raise TypeError(f"yuan_in_words takes a Decimal or an int, not {type(amount).__name__}")
    value = Decimal(amount)
    if not value.is_finite():
        raise ValueError("the amount must be a finite number")
    if value < 0:
        raise ValueError("a negative amount has no 大写金额")
    if value > YUAN_IN_WORDS_MAX + 1:  # checked before quantize, which fails past 28 digits
        raise ValueError(f"the amount exceeds {YUAN_IN_WORDS_MAX}")
    value = value.quantize(_FEN, rounding=ROUND_HALF_UP)
    if value > YUAN_IN_WORDS_MAX:
        raise ValueError(f"the amount exceeds {YUAN_IN_WORDS_MAX}")
    fen_total = int(value * 100)
    whole, jiao, fen = fen_total // 100, fen_total // 10 % 10, fen_total % 10

    words = _integer_words(whole)
    if whole:
        words += "元"
    if jiao == 0 and fen == 0:
        return (words or "零元") + "整"
    if jiao:
        words += _DIGITS[jiao] + "角"
    elif whole:
        words += "零"
    if fen:
        words += _DIGITS[fen] + "分"
    return words


def _integer_words(whole: int) -> str:
    """壹佰贰拾叁万肆仟伍佰陆拾柒 for 1234567; '' for 0. At most 16 digits."""
    digits = str(whole) if whole else ""
    out: list[str] = []
    zero_pending = False  # a run of zeros after a written digit: one 零 if another digit follows
    group_used = False  # whether the current group of four wrote a digit
    for i, ch in enumerate(digits):
        position = len(digits) - 1 - i  # 0 is the 元 place
        digit = int(ch)
        if digit:
            if zero_pending:
                out.append("零")
                zero_pending = False
            out.append(_DIGITS[digit] + _PLACES[position % 4])
            group_used = True
        elif out:
            zero_pending = True
        if position % 4 == 0 and position:
            group = position // 4
            # 亿 closes both the 亿 group and, when it is empty, the 万亿 group above it.
            if group_used or (group == 2 and whole >= 10**12):
                out.append(_GROUPS[group])
            group_used = False
    return "".join(out)
