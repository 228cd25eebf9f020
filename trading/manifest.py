"""Sealed-bid manifests (docs/sealing.md §6): the signed values, their validation, signing and verification."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from tenderhall.canonical import CanonicalJSONError, b64url, b64url_decode, canonical_json
from tenderhall.keyfile import key_id
from trading.bid_format import AEAD_NAME, CHUNK_SIZE, FORMAT, HEX64, ct_layout
from trading.key_wrap import BIDDER_WRAP_SIZE, SHARE_WRAP_SIZE
from trading.seal_errors import ManifestInvalid, SignatureInvalid

_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_CLIENT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
# GB 32100-2015 unified social credit code: shape only; the check digit is accounts' job.
_USCC = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")


@dataclass(frozen=True)
class CiphertextInfo:
    sha256: str
    size: int
    chunk_size: int
    aead: str


@dataclass(frozen=True)
class BidderWrap:
    key: str
    enc: str


@dataclass(frozen=True)
class CustodianWrap:
    custodian: str
    enc: str


@dataclass(frozen=True)
class Manifest:
    """A validated manifest; `to_dict()` gives back the exact signed JSON value."""

    format: str
    tender: str
    lot: str
    organisation: str
    upload_id: str
    client_time: str
    signing_key: str
    ciphertext: CiphertextInfo
    key_commitment: str
    bidder_wrap: BidderWrap
    custodian_wraps: tuple[CustodianWrap, ...]
    threshold: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "tender": self.tender,
            "lot": self.lot,
            "organisation": self.organisation,
            "upload_id": self.upload_id,
            "client_time": self.client_time,
            "signing_key": self.signing_key,
            "ciphertext": {
                "sha256": self.ciphertext.sha256,
                "size": self.ciphertext.size,
                "chunk_size": self.ciphertext.chunk_size,
                "aead": self.ciphertext.aead,
            },
            "key_commitment": self.key_commitment,
            "bidder_wrap": {"key": self.bidder_wrap.key, "enc": self.bidder_wrap.enc},
            "custodian_wraps": [{"custodian": w.custodian, "enc": w.enc} for w in self.custodian_wraps],
            "threshold": self.threshold,
        }


@dataclass(frozen=True)
class SealedBid:
    """What the client submits: the manifest and its b64url raw r||s ECDSA signature."""

    manifest: dict[str, Any]
    signature: str

    def submission(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "signature": self.signature}


def sign_manifest(manifest: dict[str, Any], signing_key: ec.EllipticCurvePrivateKey) -> str:
    """b64url of the raw r||s (IEEE P1363) ECDSA P-256/SHA-256 signature of canonical_json(manifest)."""
    return b64url(_raw_signature(signing_key.sign(canonical_json(manifest), ec.ECDSA(hashes.SHA256()))))


def _raw_signature(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")

_TOP_FIELDS = (
    "format", "tender", "lot", "organisation", "upload_id", "client_time", "signing_key",
    "ciphertext", "key_commitment", "bidder_wrap", "custodian_wraps", "threshold",
)


def _exact(obj: object, fields: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ManifestInvalid(f"{where} must be an object")
    for name in fields:
        if name not in obj:
            raise ManifestInvalid(f"{where} is missing field {name!r}")
    for name in obj:
        if name not in fields:
            raise ManifestInvalid(f"{where} has unexpected field {name!r}")
    return obj


def _str(obj: dict[str, Any], name: str, where: str, *, max_len: int = 200) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise ManifestInvalid(f"{where}.{name} must be a string, got {type(value).__name__}")
    if not value or len(value) > max_len:
        raise ManifestInvalid(f"{where}.{name} must be 1 to {max_len} characters")
    return value


def _int(obj: dict[str, Any], name: str, where: str) -> int:
    value = obj[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ManifestInvalid(f"{where}.{name} must be an integer, got {type(value).__name__}")
    return value


def _hex64(obj: dict[str, Any], name: str, where: str, what: str) -> str:
    value = _str(obj, name, where)
    if not HEX64.fullmatch(value):
        raise ManifestInvalid(f"{where}.{name} must be {what}: 64 lowercase hex digits")
    return value


def _enc(obj: dict[str, Any], name: str, where: str, size: int) -> str:
    value = _str(obj, name, where, max_len=1000)
    try:
        raw = b64url_decode(value)
    except ValueError:
        raise ManifestInvalid(f"{where}.{name} is not unpadded base64url") from None
    if len(raw) != size:
        raise ManifestInvalid(f"{where}.{name} must decode to {size} bytes, got {len(raw)}")
    return value


def validate_manifest(manifest: object) -> Manifest:
    """Check every field of a manifest and return it as a Manifest; ManifestInvalid names the fault.

    Checks: exact field sets at every level; format; non-empty strings; organisation shaped
    as a unified social credit code; upload_id a lowercase UUID4; client_time
    YYYY-MM-DDTHH:MM:SSZ and a real instant; key ids and sha256 as 64 lowercase hex;
    ciphertext.size a possible chunked length (>= 16, no empty final chunk after the first);
    chunk_size 1048576 and aead "AES-256-GCM"; key_commitment 64 lowercase hex (that it
    matches K is check_content_key's job); wraps valid b64url of the right length;
    custodians distinct; threshold 0 with no custodians, else 2 <= threshold <= custodians.
    It does not check the signature (verify_signature) or anything needing K
    (sealing.check_content_key, open_bid).
    """
    m = _exact(manifest, _TOP_FIELDS, "manifest")
    if m["format"] != FORMAT:
        raise ManifestInvalid(f"manifest.format must be {FORMAT!r}, got {m['format']!r}")
    tender = _str(m, "tender", "manifest")
    lot = _str(m, "lot", "manifest", max_len=64)
    organisation = _str(m, "organisation", "manifest")
    if not _USCC.fullmatch(organisation):
        raise ManifestInvalid("manifest.organisation is not an 18-character unified social credit code")
    upload_id = _str(m, "upload_id", "manifest")
    if not _UUID4.fullmatch(upload_id):
        raise ManifestInvalid("manifest.upload_id must be a lowercase UUID4")
    client_time = _str(m, "client_time", "manifest")
    try:
        if not _CLIENT_TIME.fullmatch(client_time):
            raise ValueError
        datetime.strptime(client_time, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise ManifestInvalid("manifest.client_time must be a UTC time YYYY-MM-DDTHH:MM:SSZ") from None
    signing_key = _hex64(m, "signing_key", "manifest", "a key id")

    c = _exact(m["ciphertext"], ("sha256", "size", "chunk_size", "aead"), "manifest.ciphertext")
    sha = _hex64(c, "sha256", "manifest.ciphertext", "a SHA-256")
    size = _int(c, "size", "manifest.ciphertext")
    if size < 0:
        raise ManifestInvalid(f"manifest.ciphertext.size must not be negative, got {size}")
    if ct_layout(size) is None:
        raise ManifestInvalid(f"manifest.ciphertext.size {size} is not a possible chunked ciphertext length")
    if _int(c, "chunk_size", "manifest.ciphertext") != CHUNK_SIZE:
        raise ManifestInvalid(f"manifest.ciphertext.chunk_size must be {CHUNK_SIZE}")
    if c["aead"] != AEAD_NAME:
        raise ManifestInvalid(f"manifest.ciphertext.aead must be {AEAD_NAME!r}")

    key_commitment = _hex64(m, "key_commitment", "manifest", "HMAC-SHA256(K, \"tenderhall/v1/key-commitment\")")

    b = _exact(m["bidder_wrap"], ("key", "enc"), "manifest.bidder_wrap")
    bidder_wrap = BidderWrap(
        key=_hex64(b, "key", "manifest.bidder_wrap", "a key id"),
        enc=_enc(b, "enc", "manifest.bidder_wrap", BIDDER_WRAP_SIZE),
    )
    raw_wraps = m["custodian_wraps"]
    if not isinstance(raw_wraps, list):
        raise ManifestInvalid("manifest.custodian_wraps must be a list")
    wraps = []
    for i, raw in enumerate(raw_wraps):
        where = f"manifest.custodian_wraps[{i}]"
        w = _exact(raw, ("custodian", "enc"), where)
        wraps.append(
            CustodianWrap(custodian=_hex64(w, "custodian", where, "a key id"), enc=_enc(w, "enc", where, SHARE_WRAP_SIZE))
        )
    if len({w.custodian for w in wraps}) != len(wraps):
        raise ManifestInvalid("manifest.custodian_wraps names the same custodian twice")
    if len(wraps) == 1 or len(wraps) > 255:
        raise ManifestInvalid(f"manifest.custodian_wraps must hold 0 or 2 to 255 wraps, got {len(wraps)}")
    threshold = _int(m, "threshold", "manifest")
    if not wraps and threshold != 0:
        raise ManifestInvalid(f"manifest.threshold must be 0 without custodians, got {threshold}")
    if wraps and threshold > len(wraps):
        raise ManifestInvalid(f"manifest.threshold {threshold} exceeds the {len(wraps)} custodian wraps")
    if wraps and threshold < 2:
        raise ManifestInvalid(f"manifest.threshold must be at least 2 with custodians, got {threshold}")
    return Manifest(
        format=FORMAT, tender=tender, lot=lot, organisation=organisation, upload_id=upload_id,
        client_time=client_time, signing_key=signing_key,
        ciphertext=CiphertextInfo(sha256=sha, size=size, chunk_size=CHUNK_SIZE, aead=AEAD_NAME),
        key_commitment=key_commitment,
        bidder_wrap=bidder_wrap, custodian_wraps=tuple(wraps), threshold=threshold,
    )


def verify_raw_p256(public_key: ec.EllipticCurvePublicKey, message: bytes, signature_b64: object) -> None:
    """Verify a b64url raw r||s (IEEE P1363, what WebCrypto emits) ECDSA P-256/SHA-256 signature.

    SignatureInvalid naming what is wrong: not base64url, not 64 bytes, or not verifying.
    """
    try:
        raw = b64url_decode(signature_b64)  # type: ignore[arg-type]
    except ValueError:
        raise SignatureInvalid("signature is not unpadded base64url") from None
    if len(raw) != 64:
        raise SignatureInvalid(f"signature must be 64 bytes (raw r||s), got {len(raw)}")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureInvalid("signature does not verify") from None


def verify_signature(manifest: dict[str, Any], signature_b64: str, signing_public_key: ec.EllipticCurvePublicKey) -> None:
    """Return if `signature_b64` signs canonical_json(manifest) under `signing_public_key`.

    Raises SignatureInvalid when the signature is not 64 bytes of b64url, when
    manifest["signing_key"] is not that key's id, or when it does not verify;
    ManifestInvalid when the manifest cannot be put in canonical form.
    """
    try:
        message = canonical_json(manifest)
    except CanonicalJSONError as exc:
        raise ManifestInvalid(f"manifest is not canonical JSON: {exc}") from None
    expected = key_id(signing_public_key)
    if not isinstance(manifest, dict) or manifest.get("signing_key") != expected:
        raise SignatureInvalid(f"manifest.signing_key does not name the key {expected}")
    try:
        verify_raw_p256(signing_public_key, message, signature_b64)
    except SignatureInvalid as exc:
        raise SignatureInvalid(f"manifest {exc} (key {expected})") from None
