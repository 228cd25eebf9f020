"""代理码: the per-project code an agent's staff member shows at the entrance, and the rules of a scan.

Pure: the randomness and the day are passed in. A code is 128 random bits in RFC 4648 base32
without padding (26 characters, A–Z and 2–7: easy to read out, type or scan); it is shown once
and only its SHA-256 is stored. The QR payload is `THAC1:<code>` (the 1 versions the format).

A scan answers `accepted`, or refuses in this order (the first that applies):

- unknown_code    not a code, or no code has this digest
- wrong_project   the scanner said which tender it admits for, and the code is another tender's
- wrong_day       the code is not for today (the day in the display time zone)
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from datetime import date

PREFIX = "THAC1:"
CODE_BYTES = 16  # 128 bits
CODE_LENGTH = 26  # base32 of 16 bytes, padding dropped
_CODE = re.compile(r"[A-Z2-7]{26}")
_SEPARATORS = re.compile(r"[\s-]+")
SCAN_REASONS = ("accepted", "unknown_code", "wrong_project", "wrong_day")


def make_code(random_bytes: bytes) -> str:
    """The code for 16 random bytes (ValueError for any other length)."""
    if len(random_bytes) != CODE_BYTES:
        raise ValueError(f"a code is made of {CODE_BYTES} random bytes")
    return base64.b32encode(random_bytes).decode("ascii").rstrip("=")


def qr_payload(code: str) -> str:
    return PREFIX + code


def parse(text: str) -> str | None:
    """The code in what a scanner or a person typed (with or without the prefix, any case,
    spaces and hyphens ignored), or None when it cannot be one."""
    value = _SEPARATORS.sub("", text).upper()
    if value.startswith(PREFIX):
        value = value[len(PREFIX):]
    return value if _CODE.fullmatch(value) else None


def digest(code: str) -> bytes:
    """What is stored and looked up: SHA-256 of the code's ASCII text."""
    return hashlib.sha256(code.encode("ascii")).digest()


def scan_reason(code_tender: uuid.UUID, valid_on: date, today: date, for_tender: uuid.UUID | None) -> str:
    """accepted, wrong_project or wrong_day for a known code (see the module's docstring)."""
    if for_tender is not None and for_tender != code_tender:
        return "wrong_project"
    if valid_on != today:
        return "wrong_day"
    return "accepted"
