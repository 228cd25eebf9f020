"""Password hashing (scrypt) and the password policy."""

import pytest

from tenderhall import passwords
from tenderhall.passwords import PasswordPolicyError

N = 2**10


def test_hash_then_verify_roundtrip() -> None:
    stored = passwords.hash_password("correct horse battery", n=N)
    assert stored.startswith(f"scrypt${N}$8$1$")
    assert passwords.verify_password("correct horse battery", stored)


def test_each_hash_has_its_own_salt() -> None:
    assert passwords.hash_password("correct horse battery", n=N) != passwords.hash_password("correct horse battery", n=N)


def test_wrong_password_is_refused() -> None:
    stored = passwords.hash_password("correct horse battery", n=N)
    assert not passwords.verify_password("correct horse batterY", stored)
    assert not passwords.verify_password("", stored)


@pytest.mark.parametrize("stored", [
    "",
    "garbage",
    "bcrypt$1024$8$1$AAAA$BBBB",
    "scrypt$notanumber$8$1$AAAA$BBBB",
    "scrypt$1024$8$1$!!!$BBBB",
    "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # N not a power of 2
    "scrypt$1024$8$1$AAAA",
])
def test_malformed_stored_hash_returns_false(stored: str) -> None:
    assert passwords.verify_password("correct horse battery", stored) is False


def test_unicode_password_roundtrip() -> None:
    stored = passwords.hash_password("正确的马电池钉书钉", n=N)
    assert passwords.verify_password("正确的马电池钉书钉", stored)


@pytest.mark.parametrize("password, reason", [
    ("short1!", "at least 10 characters"),
    ("a" * 257, "at most 256 characters"),
    ("abababababab", "at least 4 different characters"),
])
def test_policy_refuses_with_reason(password: str, reason: str) -> None:
    with pytest.raises(PasswordPolicyError, match=reason):
        passwords.check_policy(password)


def test_policy_accepts_a_reasonable_password() -> None:
    passwords.check_policy("correct horse battery")


def test_the_stand_in_hash_for_unknown_users_is_made_once_per_cost() -> None:
    from tenderhall.passwords import dummy_hash

    assert dummy_hash(2**10) is dummy_hash(2**10)
    assert not passwords.verify_password("anything", dummy_hash(2**10))
