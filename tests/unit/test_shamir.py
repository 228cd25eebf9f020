"""trading.shamir against the npm shamir-secret-sharing library it must match byte for byte."""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import pytest

from trading import shamir

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "docs/test-vectors/shamir.json").read_text(encoding="utf-8"))


def replay(hex_bytes: str):
    pool = bytearray(bytes.fromhex(hex_bytes))

    def rng(size: int) -> bytes:
        out = bytes(pool[:size])
        del pool[:size]
        return out

    return rng, pool


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["label"])
def test_split_reproduces_the_npm_library_shares_from_the_same_randomness(case):
    rng, pool = replay(case["random"])
    shares = shamir.split(bytes.fromhex(case["secret"]), case["n"], case["k"], rng)
    assert [s.hex() for s in shares] == case["shares"]
    assert not pool, "randomness must be consumed exactly as the library does"


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["label"])
def test_any_k_of_the_library_shares_combine_to_the_secret(case):
    shares = [bytes.fromhex(s) for s in case["shares"]]
    for subset in itertools.combinations(shares, case["k"]):
        assert shamir.combine(list(subset)).hex() == case["secret"]


def test_field_tables_match_the_library_source():
    source = (ROOT / "static/vendor/shamir-secret-sharing.js").read_text(encoding="utf-8")

    def table(name: str) -> bytes:
        body = re.search(name + r"\s*=\s*new Uint8Array\(\[(.*?)\]\)", source, re.S).group(1)
        return bytes(int(x, 0) for x in re.findall(r"0x[0-9a-f]{2}|\d+", body))

    exp, log = table("EXP_TABLE"), table("LOG_TABLE")
    assert exp == shamir._EXP
    assert log[2:] == shamir._LOG[2:]  # log(0) is undefined and log(1) is 0 = 255 (mod 255)


def test_any_k_of_n_recover_and_k_minus_1_do_not():
    secret = os.urandom(32)
    shares = shamir.split(secret, 5, 3, os.urandom)
    for subset in itertools.combinations(shares, 3):
        assert shamir.combine(list(subset)) == secret
    for subset in itertools.combinations(shares, 2):
        assert shamir.combine(list(subset)) != secret
    assert shamir.combine(shares) == secret


@pytest.mark.parametrize(
    ("n", "k"), [(1, 1), (2, 1), (2, 3), (256, 2)],
)
def test_split_refuses_counts_outside_the_library_limits(n, k):
    with pytest.raises(shamir.ShamirError):
        shamir.split(b"secret", n, k, os.urandom)


def test_combine_refuses_duplicate_x_zero_x_and_unequal_lengths():
    a, b = shamir.split(b"\x01\x02", 2, 2, os.urandom)
    with pytest.raises(shamir.ShamirError, match="same x"):
        shamir.combine([a, a])
    with pytest.raises(shamir.ShamirError, match="x coordinate 0"):
        shamir.combine([a, b[:-1] + b"\x00"])
    with pytest.raises(shamir.ShamirError, match="same length"):
        shamir.combine([a, b + b"\x00"])
    with pytest.raises(shamir.ShamirError):
        shamir.combine([a])
