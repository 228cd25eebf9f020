from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tenderhall.formatting import display_zone, when, yuan, yuan_in_words


def test_times_show_in_the_centre_zone_with_their_offset() -> None:
    zone = display_zone("Asia/Shanghai")
    assert when("2026-11-25T00:27:29.99Z", zone) == "2026-11-25 08:27:29 (UTC+08:00)"
    assert when(datetime(2026, 1, 1, 16, 0, tzinfo=timezone.utc), zone, seconds=False) == "2026-01-02 00:00 (UTC+08:00)"
    assert when(None, zone) == ""


def test_unknown_zone_falls_back_to_china_standard_time() -> None:
    assert when("2026-11-25T00:00:00Z", display_zone("No/Such_Zone")) == "2026-11-25 08:00:00 (UTC+08:00)"


def test_yuan_groups_digits_and_keeps_two_places() -> None:
    assert yuan(Decimal("12800000")) == "12,800,000.00"
    assert yuan("6120500.5") == "6,120,500.50"
    assert yuan("n/a") == "n/a" and yuan(None) == ""


# The PBOC's own examples in 《正确填写票据和结算凭证的基本规定》 §4; where it gives two forms the
# one yuan_in_words chose comes first in its docstring.
@pytest.mark.parametrize(("amount", "words"), [
    ("1409.50", "壹仟肆佰零玖元伍角"),
    ("6007.14", "陆仟零柒元壹角肆分"),
    ("1680.32", "壹仟陆佰捌拾元叁角贰分"),
    ("107000.53", "壹拾万零柒仟元伍角叁分"),
    ("16409.02", "壹万陆仟肆佰零玖元零贰分"),
    ("325.04", "叁佰贰拾伍元零肆分"),
])
def test_yuan_in_words_writes_the_pboc_examples(amount: str, words: str) -> None:
    assert yuan_in_words(Decimal(amount)) == words


@pytest.mark.parametrize(("amount", "words"), [
    ("1234567.89", "壹佰贰拾叁万肆仟伍佰陆拾柒元捌角玖分"),
    ("1", "壹元整"),
    ("10", "壹拾元整"),
    ("15", "壹拾伍元整"),
    ("100", "壹佰元整"),
    ("110000", "壹拾壹万元整"),
    ("1000000", "壹佰万元整"),
    ("1500000.00", "壹佰伍拾万元整"),
])
def test_yuan_in_words_whole_amounts_end_in_zheng(amount: str, words: str) -> None:
    assert yuan_in_words(Decimal(amount)) == words


@pytest.mark.parametrize(("amount", "words"), [
    ("10.50", "壹拾元伍角"),
    ("10.5", "壹拾元伍角"),
    ("100.05", "壹佰元零伍分"),
    ("100.55", "壹佰元伍角伍分"),
    ("20000.20", "贰万元贰角"),
    ("0.50", "伍角"),
    ("0.05", "伍分"),
    ("0.55", "伍角伍分"),
])
def test_yuan_in_words_jiao_and_fen(amount: str, words: str) -> None:
    assert yuan_in_words(Decimal(amount)) == words


@pytest.mark.parametrize(("amount", "words"), [
    ("1005", "壹仟零伍元整"),
    ("1050", "壹仟零伍拾元整"),
    ("1500", "壹仟伍佰元整"),
    ("10005000", "壹仟万零伍仟元整"),
    ("10000500", "壹仟万零伍佰元整"),
    ("100500", "壹拾万零伍佰元整"),
    ("1010101010.10", "壹拾亿零壹仟零壹拾万零壹仟零壹拾元壹角"),
    ("20030004", "贰仟零叁万零肆元整"),
])
def test_yuan_in_words_one_ling_for_each_run_of_zeros(amount: str, words: str) -> None:
    assert yuan_in_words(Decimal(amount)) == words


@pytest.mark.parametrize(("amount", "words"), [
    ("9999", "玖仟玖佰玖拾玖元整"),
    ("10000", "壹万元整"),
    ("10001", "壹万零壹元整"),
    ("99999999", "玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元整"),
    ("100000000", "壹亿元整"),
    ("100000001", "壹亿零壹元整"),
    ("100010000", "壹亿零壹万元整"),
    ("110000000", "壹亿壹仟万元整"),
    ("1000000000000", "壹万亿元整"),
    ("1000100000000", "壹万零壹亿元整"),
    ("1000000010000", "壹万亿零壹万元整"),
    ("9999999999999999.99", "玖仟玖佰玖拾玖万玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分"),
])
def test_yuan_in_words_wan_and_yi_boundaries(amount: str, words: str) -> None:
    assert yuan_in_words(Decimal(amount)) == words


def test_yuan_in_words_of_zero_and_of_ints() -> None:
    assert yuan_in_words(Decimal("0")) == "零元整"
    assert yuan_in_words(Decimal("0.00")) == "零元整"
    assert yuan_in_words(Decimal("-0")) == "零元整"
    assert yuan_in_words(1500000) == "壹佰伍拾万元整"


def test_yuan_in_words_rounds_to_fen_half_up() -> None:
    assert yuan_in_words(Decimal("1.005")) == "壹元零壹分"
    assert yuan_in_words(Decimal("1.0049")) == "壹元整"
    assert yuan_in_words(Decimal("0.004")) == "零元整"
    assert yuan_in_words(Decimal("9.995")) == "壹拾元整"
    assert yuan_in_words(Decimal("9999999999999999.994")) == yuan_in_words(Decimal("9999999999999999.99"))


@pytest.mark.parametrize("amount", ["-1", "-0.01", "-0.001", "10000000000000000", "9999999999999999.995",
                                    "1E+40", "NaN", "Infinity"])
def test_yuan_in_words_refuses_negative_huge_and_non_finite_amounts(amount: str) -> None:
    with pytest.raises(ValueError):
        yuan_in_words(Decimal(amount))


def test_yuan_in_words_refuses_floats() -> None:
    with pytest.raises(TypeError):
        yuan_in_words(10.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        yuan_in_words("10.50")  # type: ignore[arg-type]
