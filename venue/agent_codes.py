"""代理码: the per-project code an agent's staff member shows at the entrance, and the rules of a scan.

Pure: the randomness and the day are passed in. A code is 128 random bits in RFC 4648 base32
without padding (26 characters, A–Z and 2–7: easy to read out, type or scan); it is shown once
and only its SHA-256 is stored. The QR payload is `THAC1:<code>` (the 1 versions the format).

The QR symbol (ISO/IEC 18004, error correction level M: 15 % of it may be smudged or torn) is
drawn by segno as a standalone SVG, with the SVG namespace and a white quiet zone, so a page can
show it as an `<img>` from a data URI whatever the page's colours.

A scan answers `accepted`, or refuses in this order (the first that applies):

- unknown_code    not a code, or no code has this digest
- wrong_project   the scanner said which tender it admits for, and the code is another tender's
- wrong_day       the code is not for today (the day in the display time zone)
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import uuid
from datetime import date

import segno

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


def qr_svg(payload: str) -> str:
    """The QR symbol of `payload` as a standalone SVG document (4 px a module, the 4-module quiet
    zone of ISO/IEC 18004 included); ValueError (segno's DataOverflowError) if the payload is too
    long for any QR version."""
    out = io.BytesIO()
    segno.make_qr(payload, error="m").save(out, kind="svg", scale=4, xmldecl=False, nl=False, light="#fff")
    return out.getvalue().decode("utf-8")


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
