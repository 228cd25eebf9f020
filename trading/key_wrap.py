"""Content-key wrapping (docs/sealing.md §4-§6): HPKE (RFC 9180) to the bidder, Shamir shares to custodians,
and the key commitment that ties every route to K to the one key the manifest was sealed under."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ec

from tenderhall.canonical import b64url, b64url_decode
from tenderhall.keyfile import key_id
from trading import shamir
from trading.bid_format import KEY_SIZE, TAG_SIZE
from trading.seal_errors import KeyCommitmentMismatch, SealError, WrapInvalid

BIDDER_WRAP_INFO = b"tenderhall/v1/bid-key"
SHARE_WRAP_INFO = b"tenderhall/v1/key-share"
KEY_COMMITMENT_LABEL = b"tenderhall/v1/key-commitment"
ENC_SIZE = 65  # DHKEM(P-256) encapsulated key: an uncompressed point
BIDDER_WRAP_SIZE = ENC_SIZE + KEY_SIZE + TAG_SIZE
SHARE_WRAP_SIZE = ENC_SIZE + KEY_SIZE + 1 + TAG_SIZE


def key_commitment(key: bytes) -> str:
    """The manifest's key_commitment: lowercase hex of HMAC-SHA256(key=K, msg="tenderhall/v1/key-commitment")."""
    if len(key) != KEY_SIZE:
        raise SealError(f"content key must be {KEY_SIZE} bytes, got {len(key)}")
    return hmac.new(bytes(key), KEY_COMMITMENT_LABEL, hashlib.sha256).hexdigest()


def check_key_commitment(commitment_hex: str, key: bytes) -> None:
    """Return if HMAC-SHA256(K, label) equals `commitment_hex` (compared in constant time); else KeyCommitmentMismatch.

    SealError for a key of the wrong length. `commitment_hex` is a validated manifest's
    64-hex-digit key_commitment; anything that is not decodes to no match.
    """
    expected = bytes.fromhex(key_commitment(key))
    try:
        claimed = bytes.fromhex(commitment_hex)
    except (TypeError, ValueError):
        claimed = b""
    if not hmac.compare_digest(expected, claimed):
        raise KeyCommitmentMismatch()


def _suite() -> hpke.Suite:
    # RFC 9180 base mode: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
    return hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


def wrap_shares(
    key: bytes, custodian_keys: Sequence[ec.EllipticCurvePublicKey], threshold: int, rng: Callable[[int], bytes]
) -> list[dict[str, str]]:
    """Shamir-split `key` threshold-of-n and HPKE-wrap one share to each custodian, in order.

    The caller has checked the counts (0, or 2..255 custodians with 2 <= threshold <= n).
    """
    suite = _suite()
    custodian_wraps: list[dict[str, str]] = []
    if custodian_keys:
        shares = shamir.split(key, len(custodian_keys), threshold, rng)
        for public, share in zip(custodian_keys, shares):
            enc = suite.encrypt(share, public, info=SHARE_WRAP_INFO)
            custodian_wraps.append({"custodian": key_id(public), "enc": b64url(enc)})
    return custodian_wraps


def wrap_bidder_key(key: bytes, bidder_public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The manifest's bidder_wrap: `key` HPKE-wrapped to the bidder's own ECDH key."""
    return {
        "key": key_id(bidder_public_key),
        "enc": b64url(_suite().encrypt(key, bidder_public_key, info=BIDDER_WRAP_INFO)),
    }


def _unwrap(enc_b64: str, private_key: ec.EllipticCurvePrivateKey, info: bytes, size: int, what: str) -> bytes:
    try:
        data = b64url_decode(enc_b64)
    except ValueError:
        raise WrapInvalid(f"{what} is not unpadded base64url") from None
    try:
        plain = _suite().decrypt(data, private_key, info=info)
    except Exception:  # cryptography raises InvalidTag or ValueError variants; all mean "no"
        raise WrapInvalid(f"{what} does not open with key {key_id(private_key.public_key())}") from None
    if len(plain) != size:
        raise WrapInvalid(f"{what} holds {len(plain)} bytes, expected {size}")
    return plain


def unwrap_bidder_key(enc_b64: str, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """HPKE-open the bidder wrap with the bidder's ECDH private key; return K (32 bytes) or WrapInvalid."""
    return _unwrap(enc_b64, private_key, BIDDER_WRAP_INFO, KEY_SIZE, "bidder wrap")


def unwrap_share(enc_b64: str, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """HPKE-open a custodian wrap; return the 33-byte Shamir share or WrapInvalid."""
    return _unwrap(enc_b64, private_key, SHARE_WRAP_INFO, KEY_SIZE + 1, "custodian wrap")


def combine_shares(shares: Sequence[bytes]) -> bytes:
    """Recover K from at least `threshold` shares; WrapInvalid for malformed or duplicate shares.

    Too few or wrong shares give a wrong K silently; check it against the manifest with
    sealing.check_content_key (open_bid does so too) before using it.
    """
    if any(len(s) != KEY_SIZE + 1 for s in shares):
        raise WrapInvalid(f"each share must be {KEY_SIZE + 1} bytes")
    try:
        return shamir.combine(shares)
    except shamir.ShamirError as exc:
        raise WrapInvalid(f"cannot combine shares: {exc}") from None
