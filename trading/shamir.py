"""Shamir k-of-n secret sharing over GF(2^8), byte-compatible with npm `shamir-secret-sharing`.

The browser splits a bid's content key with the vendored privy-io library
(static/vendor/shamir-secret-sharing.js, version 0.0.4); custodians may combine their
shares in Python, and the other way round, so both sides must agree to the byte:

- field GF(2^8) with the AES reduction polynomial x^8 + x^4 + x^3 + x + 1 (0x11b);
- each byte of the secret is the constant term of its own random polynomial of degree k-1;
- a share is the y values (one per secret byte) followed by ONE x byte, distinct, nonzero;
- `split` consumes randomness in the library's order (255 bytes to shuffle the x
  coordinates, then k-1 coefficient bytes per secret byte), so with the same random bytes
  it returns the library's shares exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["ShamirError", "split", "combine"]


class ShamirError(ValueError):
    """Arguments or shares that cannot be split or combined (counts, lengths, duplicates)."""


def _tables() -> tuple[bytes, bytes]:
    # Powers of the generator 0xe5 modulo 0x11b, as in the library (and HashiCorp Vault).
    exp = bytearray(256)
    log = bytearray(256)
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        value = _slow_mul(value, 0xE5)
    exp[255] = exp[0]
    return bytes(exp), bytes(log)


def _slow_mul(a: int, b: int) -> int:
    """Carry-less multiply modulo 0x11b; used only to build the tables."""
    result = 0
    while b:
        if b & 1:
            result ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11B
        b >>= 1
    return result


_EXP, _LOG = _tables()


def _mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[(_LOG[a] + _LOG[b]) % 255]


def _div(a: int, b: int) -> int:
    if b == 0:
        raise ShamirError("division by zero in GF(2^8)")
    if a == 0:
        return 0
    return _EXP[(_LOG[a] - _LOG[b]) % 255]


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    # Horner's rule; addition in GF(2^8) is XOR.
    result = 0
    for coefficient in reversed(coefficients):
        result = _mul(result, x) ^ coefficient
    return result


def _shuffled_coordinates(rng: Callable[[int], bytes]) -> bytes:
    # The library's (deliberately simple, slightly biased) shuffle of 1..255; the bias does
    # not matter for Shamir's security, and copying it keeps us byte-compatible.
    coordinates = bytearray(range(1, 256))
    indices = _random(rng, 255)
    for i in range(255):
        j = indices[i] % 255
        coordinates[i], coordinates[j] = coordinates[j], coordinates[i]
    return bytes(coordinates)


def _random(rng: Callable[[int], bytes], size: int) -> bytes:
    data = rng(size)
    if len(data) != size:
        raise ShamirError(f"rng returned {len(data)} bytes, expected {size}")
    return data


def split(secret: bytes, n: int, k: int, rng: Callable[[int], bytes]) -> list[bytes]:
    """Split `secret` into `n` shares of which any `k` recover it.

    `rng(size)` must return `size` cryptographically random bytes (os.urandom in
    production). Raises ShamirError unless secret is non-empty and 2 <= k <= n <= 255
    (the library's limits). Each share is len(secret) + 1 bytes: y values, then x.
    """
    if not isinstance(secret, (bytes, bytearray)) or len(secret) == 0:
        raise ShamirError("secret must be non-empty bytes")
    if not 2 <= n <= 255:
        raise ShamirError(f"share count {n} must be between 2 and 255")
    if not 2 <= k <= 255:
        raise ShamirError(f"threshold {k} must be between 2 and 255")
    if n < k:
        raise ShamirError(f"share count {n} is below the threshold {k}")
    xs = _shuffled_coordinates(rng)[:n]
    shares = [bytearray(len(secret) + 1) for _ in range(n)]
    for j, share in enumerate(shares):
        share[-1] = xs[j]
    for i, byte in enumerate(secret):
        coefficients = [byte, *_random(rng, k - 1)]
        for j, share in enumerate(shares):
            share[i] = _evaluate(coefficients, xs[j])
    return [bytes(share) for share in shares]


def combine(shares: Sequence[bytes]) -> bytes:
    """Recover the secret from at least k shares by Lagrange interpolation at x = 0.

    Raises ShamirError for fewer than 2 or more than 255 shares, shares shorter than 2
    bytes or of unequal length, a zero x, or a repeated x. Fewer than k genuine shares
    (or a corrupted one) yield a wrong secret, not an error: callers must check the result
    (here, the bid's chunks fail to authenticate).
    """
    if not 2 <= len(shares) <= 255:
        raise ShamirError(f"need between 2 and 255 shares, got {len(shares)}")
    length = len(shares[0])
    for share in shares:
        if not isinstance(share, (bytes, bytearray)) or len(share) < 2:
            raise ShamirError("each share must be bytes of at least 2 bytes")
        if len(share) != length:
            raise ShamirError("all shares must have the same length")
    xs = [share[-1] for share in shares]
    if 0 in xs:
        raise ShamirError("a share has x coordinate 0")
    if len(set(xs)) != len(xs):
        raise ShamirError("two shares have the same x coordinate")
    # Lagrange basis at 0: prod_{j != i} x_j / (x_i + x_j); the same for every byte.
    basis = []
    for i, xi in enumerate(xs):
        value = 1
        for j, xj in enumerate(xs):
            if i != j:
                value = _mul(value, _div(xj, xi ^ xj))
        basis.append(value)
    secret = bytearray(length - 1)
    for byte_index in range(length - 1):
        acc = 0
        for share, weight in zip(shares, basis):
            acc ^= _mul(share[byte_index], weight)
        secret[byte_index] = acc
    return bytes(secret)
