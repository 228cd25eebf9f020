"""Unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters, last is a check."""

from __future__ import annotations

# GB 32100: the code alphabet omits I, O, S, V and Z.
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


class CreditCodeError(ValueError):
    """Not a valid unified social credit code; the message says why."""


def check_character(first17: str) -> str:
    """The 18th character for the first 17 (GB 32100 §4.2: mod 31)."""
    total = sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS))
    return ALPHABET[(31 - total % 31) % 31]


def validate(code: str) -> str:
    """Return the code upper-cased if valid; raise CreditCodeError otherwise."""
    code = code.strip().upper()
    if len(code) != 18:
        raise CreditCodeError(f"a unified social credit code has 18 characters, not {len(code)}")
    bad = sorted({c for c in code if c not in ALPHABET})
    if bad:
        raise CreditCodeError(f"character(s) {''.join(bad)} are not allowed in a unified social credit code")
    if not code[8:16].isalnum():
        raise CreditCodeError("malformed organisation code part")
    expected = check_character(code[:17])
    if code[17] != expected:
        raise CreditCodeError(f"check character is {code[17]} but should be {expected}")
    return code


def make(first17: str) -> str:
    """Complete 17 characters with their check character (demo data and tests)."""
    return first17 + check_character(first17)
