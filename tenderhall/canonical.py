"""Canonical JSON: the one byte form that is hashed and signed everywhere.

A subset of RFC 8785 (JCS): object keys sorted, no insignificant whitespace, UTF-8,
and no floating-point numbers at all (money and measures travel as decimal strings),
so that Python, the browser and the CLI produce identical bytes for the same value.
"""

from __future__ import annotations

import base64
import json
from typing import Any


class CanonicalJSONError(ValueError):
    """The value holds something canonical JSON does not allow (a float, a non-str key)."""


def _check(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        # JavaScript numbers lose integers past 2**53; refuse them rather than disagree.
        if abs(value) > 2**53 - 1:
            raise CanonicalJSONError(f"{path}: integer {value} is outside the safe range")
        return
    if isinstance(value, float):
        raise CanonicalJSONError(f"{path}: floats are not allowed; use a decimal string")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJSONError(f"{path}: object keys must be strings")
            _check(item, f"{path}.{key}")
        return
    raise CanonicalJSONError(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """Return the canonical UTF-8 bytes of `value`; raise CanonicalJSONError on floats etc."""
    _check(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5), the encoding of every binary field in our JSON."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; raise ValueError on anything else."""
    if not isinstance(text, str) or any(c in text for c in "+/= \n"):
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
