"""Identity numbers (GB 11643-1999): check character, birth date, masking."""

from __future__ import annotations

from datetime import date

import pytest

from evaluation.id_number import IdNumberError, make, masked, validate

TODAY = date(2026, 11, 22)


def test_the_standards_example_and_made_numbers_validate() -> None:
    # GB 11643-1999's own example: 11010519491231002X.
    assert validate("11010519491231002x", today=TODAY) == "11010519491231002X"
    number = make("35010219800101123")
    assert validate(number, today=TODAY) == number


@pytest.mark.parametrize(("number", "message"), [
    ("1101051949123100", "18 characters"),
    ("11010519491231002Y", "17 digits and a digit or X"),
    ("11010519491231002A", "17 digits"),
    ("110105194912310021", "check character"),
    ("110105194902300020", "not a date"),
    ("110105203001010020", "out of range"),
    ("010105194912310020", "division code"),
])
def test_invalid_numbers_are_refused_without_echoing_them(number: str, message: str) -> None:
    with pytest.raises(IdNumberError, match=message) as caught:
        validate(number, today=TODAY)
    assert number not in str(caught.value)


def test_masking_keeps_only_the_region_prefix_and_the_last_four() -> None:
    assert masked("11010519491231002X") == "110***********002X"
    assert masked("123") == "***"
