"""Door controllers and positioning systems: machines, authenticated by a bearer token.

The token is TENDERHALL_VENUE_DEVICE_TOKEN, or else one made at first start in the data
directory (mode 0600) and printed by `tenderhall demo`. It is compared in constant time.
A logged-in admin may call the device endpoints too (testing a reader from a browser).
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from starlette.requests import HTTPConnection

from tenderhall.settings import Settings

MIN_TOKEN = 24


def load_or_create_token(settings: Settings) -> str:
    if settings.venue_device_token:
        if len(settings.venue_device_token) < MIN_TOKEN:
            raise ValueError(f"TENDERHALL_VENUE_DEVICE_TOKEN must be at least {MIN_TOKEN} characters")
        return settings.venue_device_token
    path: Path = settings.venue_device_token_path
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_ok(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
