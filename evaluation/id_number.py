"""Resident identity card numbers (公民身份号码, GB 11643-1999): 18 characters, the last a check."""

from __future__ import annotations

from datetime import date

# GB 11643-1999 §8.2: ISO 7064 MOD 11-2 over the first 17 digits.
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK = "10X98765432"


class IdNumberError(ValueError):
    """Not a valid identity number; the message says why (never repeating the number)."""


def check_character(first17: str) -> str:
    return CHECK[sum(int(c) * w for c, w in zip(first17, WEIGHTS)) % 11]


def validate(number: str, *, today: date) -> str:
    """The number upper-cased if valid: 17 digits, a real birth date not in the future, the check character."""
    number = number.strip().upper()
    if len(number) != 18:
        raise IdNumberError(f"an identity number has 18 characters, not {len(number)}")
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise IdNumberError("an identity number is 17 digits and a digit or X")
    if number[0] == "0":
        raise IdNumberError("the address code is not a division code")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise IdNumberError("the birth date part is not a date") from None
    if born > today or born.year < 1900:
        raise IdNumberError("the birth date part is out of range")
    expected = check_character(number[:17])
    if number[17] != expected:
        raise IdNumberError("the check character does not match (GB 11643 MOD 11-2)")
    return number


def make(first17: str) -> str:
    """Complete 17 digits with their check character (demo data and tests)."""
    return first17 + check_character(first17)


def masked(number: str) -> str:
    """What pages show: the region's first digits and the check character, the rest hidden."""
    return number[:3] + "*" * 11 + number[-4:] if len(number) == 18 else "*" * len(number)
