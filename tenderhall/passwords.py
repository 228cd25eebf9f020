"""Password hashing with scrypt (RFC 7914) from `cryptography`, a fresh salt per password."""

from __future__ import annotations

import base64
import functools
import hmac
import os

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MIN_LENGTH = 10
MAX_LENGTH = 256


class PasswordPolicyError(ValueError):
    """The password is too short, too long or too plain."""


def check_policy(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"a password may have at most {MAX_LENGTH} characters")
    if len(set(password)) < 4:
        raise PasswordPolicyError("a password needs at least 4 different characters")


def hash_password(password: str, *, n: int = 2**15) -> str:
    """Return `scrypt$N$r$p$salt$hash` (base64) for storage."""
    salt = os.urandom(16)
    digest = Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(password.encode("utf-8"))
    enc = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${n}$8$1${enc(salt)}${enc(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of `password` against a stored hash; False for any malformed hash."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        actual = Scrypt(salt=salt, length=len(expected), n=int(n), r=int(r), p=int(p)).derive(
            password.encode("utf-8")[:MAX_LENGTH * 4]
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A hash to verify against when the user does not exist, so that timing does not tell.
# Made once per cost: hashing a fresh one per unknown username would cost twice the work.
@functools.lru_cache(maxsize=4)
def dummy_hash(n: int) -> str:
    return hash_password("not-a-real-password", n=n)
