"""Unified social credit codes (GB 32100-2015): the check character and the alphabet."""

import pytest

from tenderhall import credit_code
from tenderhall.credit_code import CreditCodeError

VALID = "91350100M000100Y43"


def test_valid_sample_is_accepted() -> None:
    assert credit_code.validate(VALID) == VALID


def test_lower_case_and_spaces_are_normalised() -> None:
    assert credit_code.validate(f"  {VALID.lower()} ") == VALID


def test_check_character_of_sample() -> None:
    assert credit_code.check_character(VALID[:17]) == "3"


def test_make_completes_a_valid_code() -> None:
    code = credit_code.make("91110000123456789")
    assert credit_code.validate(code) == code


def test_bad_check_character_names_the_expected_one() -> None:
    with pytest.raises(CreditCodeError, match="check character is 4 but should be 3"):
        credit_code.validate(VALID[:17] + "4")


@pytest.mark.parametrize("code, length", [(VALID[:17], 17), (VALID + "0", 19), ("", 0)])
def test_wrong_length_is_refused(code: str, length: int) -> None:
    with pytest.raises(CreditCodeError, match=f"18 characters, not {length}"):
        credit_code.validate(code)


@pytest.mark.parametrize("letter", ["I", "O", "S", "V", "Z"])
def test_forbidden_letters_are_refused(letter: str) -> None:
    code = VALID[:10] + letter + VALID[11:]
    with pytest.raises(CreditCodeError, match=f"character\\(s\\) {letter} are not allowed"):
        credit_code.validate(code)


def test_punctuation_is_refused() -> None:
    with pytest.raises(CreditCodeError, match="not allowed"):
        credit_code.validate(VALID[:17] + "-")
