"""Sealed bids, format "tenderhall-sealed-bid/1": seal, validate, verify, unwrap and open.

docs/sealing.md is the specification; static/trading/sealing.js is the browser twin and
docs/test-vectors/sealing.json pins the two together. In short: the bid (a canonical-JSON
header with the opening summary and file list, then the files' bytes) is encrypted under
a random 32-byte content key K with AES-256-GCM in 1 MiB chunks whose nonce and AAD bind
the chunk index and a final flag; K is HPKE-wrapped (RFC 9180) to the bidder's ECDH key
and, Shamir-split k-of-n, to the custodians; a manifest naming the ciphertext's SHA-256
is signed with the bidder's ECDSA P-256 key.

Pure module: no I/O beyond the file-like objects passed in; randomness defaults to
os.urandom but may be injected.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Union

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenderhall.canonical import CanonicalJSONError, b64url, b64url_decode, canonical_json
from trading import shamir

__all__ = [
    "FORMAT", "CHUNK_SIZE", "TAG_SIZE", "KEY_SIZE", "AEAD_NAME", "CHUNK_AAD_PREFIX",
    "BIDDER_WRAP_INFO", "SHARE_WRAP_INFO", "MAX_HEADER_SIZE",
    "SealError", "ManifestInvalid", "SignatureInvalid", "DigestMismatch", "ChunkAuthFailed",
    "SizeMismatch", "WrapInvalid", "BidContentInvalid",
    "CiphertextInfo", "BidderWrap", "CustodianWrap", "Manifest", "SealedBid", "OpenedFile", "OpenedBid",
    "key_id", "check_file_name", "chunk_count", "ciphertext_size",
    "seal_bid", "sign_manifest", "validate_manifest", "verify_signature",
    "unwrap_bidder_key", "unwrap_share", "combine_shares", "open_bid", "ciphertext_digest",
]

FORMAT = "tenderhall-sealed-bid/1"
CHUNK_SIZE = 1 << 20  # plaintext bytes per chunk
TAG_SIZE = 16
KEY_SIZE = 32
AEAD_NAME = "AES-256-GCM"
CHUNK_AAD_PREFIX = b"tenderhall-bid-v1"
BIDDER_WRAP_INFO = b"tenderhall/v1/bid-key"
SHARE_WRAP_INFO = b"tenderhall/v1/key-share"
MAX_HEADER_SIZE = 1 << 20  # the header is held in memory while opening; keep it bounded
MAX_FILE_NAME_BYTES = 255
_ENC_SIZE = 65  # DHKEM(P-256) encapsulated key: an uncompressed point
_BIDDER_WRAP_SIZE = _ENC_SIZE + KEY_SIZE + TAG_SIZE
_SHARE_WRAP_SIZE = _ENC_SIZE + KEY_SIZE + 1 + TAG_SIZE
_FULL_CT_CHUNK = CHUNK_SIZE + TAG_SIZE
_READ_SIZE = 1 << 20

_HEX64 = re.compile(r"[0-9a-f]{64}")
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_CLIENT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
# GB 32100-2015 unified social credit code: shape only; the check digit is accounts' job.
_USCC = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")


def _suite() -> hpke.Suite:
    # RFC 9180 base mode: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
    return hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


# ---------------------------------------------------------------------------- errors


class SealError(Exception):
    """Base of every sealed-bid failure."""


class ManifestInvalid(SealError):
    """The manifest is malformed: a missing, extra or ill-typed field, or an impossible value."""


class SignatureInvalid(SealError):
    """The manifest signature is malformed or does not verify under the signing key."""


class DigestMismatch(SealError):
    """A SHA-256 (of the ciphertext, or of a file inside the bid) differs from the one promised."""


class SizeMismatch(SealError):
    """The ciphertext is shorter or longer than the manifest says."""


class WrapInvalid(SealError):
    """An HPKE-wrapped key or share is malformed or does not open with the given private key."""


class BidContentInvalid(SealError):
    """The decrypted plaintext is not a well-formed bid container (header, file list, lengths)."""


class ChunkAuthFailed(SealError):
    """Chunk `index` failed AES-GCM authentication: tampered, truncated, reordered, spliced or wrong key."""

    def __init__(self, index: int, final: bool) -> None:
        self.index = index
        self.final = final
        kind = "final chunk" if final else "chunk"
        super().__init__(
            f"{kind} {index} failed authentication (tampered, reordered, truncated, spliced, or wrong content key)"
        )


# ---------------------------------------------------------------------------- values


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


@dataclass(frozen=True)
class OpenedFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class OpenedBid:
    summary: Mapping[str, str | int | bool]
    files: tuple[OpenedFile, ...]


# ---------------------------------------------------------------------------- helpers


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Lowercase hex SHA-256 of the key's SubjectPublicKeyInfo DER (WebCrypto "spki" export)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def check_file_name(name: object) -> str:
    """Return `name` if it is a safe bare file name; BidContentInvalid otherwise.

    Refused: non-strings, empty, "." and "..", any "/" or "\\" or NUL, more than 255 UTF-8 bytes.
    """
    if not isinstance(name, str) or not name:
        raise BidContentInvalid("file name must be a non-empty string")
    if name in (".", ".."):
        raise BidContentInvalid(f"file name {name!r} is not allowed")
    for bad in ("/", "\\", "\x00"):
        if bad in name:
            raise BidContentInvalid(f"file name {name!r} contains {bad!r}")
    if len(name.encode("utf-8")) > MAX_FILE_NAME_BYTES:
        raise BidContentInvalid(f"file name is longer than {MAX_FILE_NAME_BYTES} bytes")
    return name


def chunk_count(plaintext_size: int) -> int:
    """n = max(1, ceil(plaintext_size / CHUNK_SIZE))."""
    return max(1, -(-plaintext_size // CHUNK_SIZE))


def ciphertext_size(plaintext_size: int) -> int:
    return plaintext_size + TAG_SIZE * chunk_count(plaintext_size)


def _ct_layout(size: int) -> tuple[int, int] | None:
    """(chunk count, final chunk's ciphertext length) for a ciphertext size, or None if impossible."""
    if size < TAG_SIZE:
        return None
    n = max(1, -(-size // _FULL_CT_CHUNK))
    last = size - (n - 1) * _FULL_CT_CHUNK
    # A final chunk shorter than a tag cannot exist, and an empty final chunk only when n == 1.
    if last < TAG_SIZE or (last == TAG_SIZE and n > 1):
        return None
    return n, last


def _nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack(">Q", index)


def _aad(index: int, final: bool) -> bytes:
    return CHUNK_AAD_PREFIX + struct.pack(">Q", index) + (b"\x01" if final else b"\x00")


def _check_summary(summary: object) -> dict[str, str | int | bool]:
    if not isinstance(summary, dict):
        raise BidContentInvalid("summary must be an object")
    for key, value in summary.items():
        if not isinstance(key, str) or not key:
            raise BidContentInvalid("summary keys must be non-empty strings")
        if not isinstance(value, (str, int, bool)):
            raise BidContentInvalid(f"summary.{key} must be a string, integer or boolean")
    try:
        canonical_json(summary)
    except CanonicalJSONError as exc:
        raise BidContentInvalid(f"summary: {exc}") from None
    return summary


def _raw_signature(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


# ---------------------------------------------------------------------------- sealing

FileSource = Union[BinaryIO, bytes, bytearray, memoryview]


@dataclass
class _Part:
    name: str
    source: FileSource
    start: int  # stream position to rewind to (0 for bytes)
    size: int
    sha256: str


def _hash_source(name: str, source: FileSource) -> _Part:
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        return _Part(name, view, 0, len(view), hashlib.sha256(view).hexdigest())
    # A stream is read twice (hash for the header, then encrypt), so it must be seekable.
    start = source.tell()
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(_READ_SIZE)
    view = memoryview(buf)
    while count := source.readinto(view):  # type: ignore[attr-defined]
        digest.update(view[:count])
        size += count
    source.seek(start)
    return _Part(name, source, start, size, digest.hexdigest())


class _PlaintextSource:
    """Copies the container bytes (length, header, files) into caller buffers, re-hashing streams.

    A stream is hashed again as it is encrypted, so a file that changes between the two
    reads fails here instead of producing a bid whose header lies about its content.
    """

    def __init__(self, head: bytes, parts: list[_Part]) -> None:
        self._parts = [_Part("header", memoryview(head), 0, len(head), ""), *parts]
        self._index = 0
        self._offset = 0
        self._digest: Any = None

    def fill(self, view: memoryview) -> int:
        filled = 0
        while filled < len(view) and self._index < len(self._parts):
            part = self._parts[self._index]
            take = min(part.size - self._offset, len(view) - filled)
            target = view[filled : filled + take]
            if isinstance(part.source, memoryview):
                target[:] = part.source[self._offset : self._offset + take]
                count = take
            else:
                if self._digest is None:
                    self._digest = hashlib.sha256()
                count = part.source.readinto(target) if take else 0  # type: ignore[union-attr]
                if take and not count:
                    raise SealError(f"file {part.name!r} got shorter while it was being sealed")
                self._digest.update(target[:count])
            filled += count
            self._offset += count
            if self._offset == part.size:
                if self._digest is not None and self._digest.hexdigest() != part.sha256:
                    raise SealError(f"file {part.name!r} changed while it was being sealed")
                self._digest = None
                self._index += 1
                self._offset = 0
        return filled


def seal_bid(
    *,
    summary: dict[str, str | int | bool],
    files: Sequence[tuple[str, FileSource]],
    tender: str,
    lot: str,
    organisation: str,
    upload_id: str,
    client_time: str,
    signing_key: ec.EllipticCurvePrivateKey,
    bidder_public_key: ec.EllipticCurvePublicKey,
    custodian_keys: Sequence[ec.EllipticCurvePublicKey],
    threshold: int,
    out: BinaryIO,
    content_key: bytes | None = None,
    rng: Callable[[int], bytes] = os.urandom,
) -> SealedBid:
    """Encrypt a bid into `out` chunk by chunk and return its signed manifest.

    `files` are (name, bytes-like or seekable binary stream); streams are read twice
    (hashed for the header, then encrypted) from their current position, with memory flat
    in their size. `custodian_keys` is empty with threshold 0, or 2..255 ECDH keys with
    2 <= threshold <= len(custodian_keys) (the limits of shamir-secret-sharing).
    `content_key` and `rng` exist for test vectors; leave them alone otherwise.
    Raises BidContentInvalid (summary, file names), ManifestInvalid (metadata, custodians),
    SealError (a stream changed while being read).
    """
    summary = _check_summary(summary)
    names = [check_file_name(name) for name, _ in files]
    if len(set(names)) != len(names):
        raise BidContentInvalid("two files have the same name")
    if custodian_keys and not 2 <= threshold <= len(custodian_keys):
        raise ManifestInvalid(f"threshold {threshold} must be between 2 and {len(custodian_keys)} custodians")
    if not custodian_keys and threshold != 0:
        raise ManifestInvalid("threshold must be 0 when there are no custodians")
    if len(custodian_keys) == 1 or len(custodian_keys) > 255:
        raise ManifestInvalid("custodians must number 0, or between 2 and 255")
    key = rng(KEY_SIZE) if content_key is None else content_key
    if len(key) != KEY_SIZE:
        raise SealError("content key must be 32 bytes")

    parts = [_hash_source(name, source) for name, source in files]
    header = canonical_json(
        {"summary": summary, "files": [{"name": p.name, "size": p.size, "sha256": p.sha256} for p in parts]}
    )
    if len(header) > MAX_HEADER_SIZE:
        raise BidContentInvalid(f"header is {len(header)} bytes, over the {MAX_HEADER_SIZE} limit")
    total = 4 + len(header) + sum(p.size for p in parts)
    n = chunk_count(total)
    source = _PlaintextSource(struct.pack(">I", len(header)) + header, parts)

    aead = AESGCM(key)
    digest = hashlib.sha256()
    plain = bytearray(CHUNK_SIZE)
    cipher = bytearray(_FULL_CT_CHUNK)
    plain_view, cipher_view = memoryview(plain), memoryview(cipher)
    written = 0
    for index in range(n):
        want = min(CHUNK_SIZE, total - index * CHUNK_SIZE)
        if source.fill(plain_view[:want]) != want:
            raise SealError("bid content ended early while sealing")
        out_view = cipher_view[: want + TAG_SIZE]
        aead.encrypt_into(_nonce(index), plain_view[:want], _aad(index, index == n - 1), out_view)
        digest.update(out_view)
        out.write(out_view)
        written += len(out_view)

    suite = _suite()
    custodian_wraps: list[dict[str, str]] = []
    if custodian_keys:
        shares = shamir.split(key, len(custodian_keys), threshold, rng)
        for public, share in zip(custodian_keys, shares):
            enc = suite.encrypt(share, public, info=SHARE_WRAP_INFO)
            custodian_wraps.append({"custodian": key_id(public), "enc": b64url(enc)})
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "tender": tender,
        "lot": lot,
        "organisation": organisation,
        "upload_id": upload_id,
        "client_time": client_time,
        "signing_key": key_id(signing_key.public_key()),
        "ciphertext": {"sha256": digest.hexdigest(), "size": written, "chunk_size": CHUNK_SIZE, "aead": AEAD_NAME},
        "bidder_wrap": {
            "key": key_id(bidder_public_key),
            "enc": b64url(suite.encrypt(key, bidder_public_key, info=BIDDER_WRAP_INFO)),
        },
        "custodian_wraps": custodian_wraps,
        "threshold": threshold,
    }
    validate_manifest(manifest)  # the same checks the server will make, before we sign
    return SealedBid(manifest=manifest, signature=sign_manifest(manifest, signing_key))


def sign_manifest(manifest: dict[str, Any], signing_key: ec.EllipticCurvePrivateKey) -> str:
    """b64url of the raw r||s (IEEE P1363) ECDSA P-256/SHA-256 signature of canonical_json(manifest)."""
    return b64url(_raw_signature(signing_key.sign(canonical_json(manifest), ec.ECDSA(hashes.SHA256()))))


# ---------------------------------------------------------------------------- manifest

_TOP_FIELDS = (
    "format", "tender", "lot", "organisation", "upload_id", "client_time", "signing_key",
    "ciphertext", "bidder_wrap", "custodian_wraps", "threshold",
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
    if not _HEX64.fullmatch(value):
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
    chunk_size 1048576 and aead "AES-256-GCM"; wraps valid b64url of the right length;
    custodians distinct; threshold 0 with no custodians, else 2 <= threshold <= custodians.
    It does not check the signature (verify_signature) or anything needing K.
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
    if _ct_layout(size) is None:
        raise ManifestInvalid(f"manifest.ciphertext.size {size} is not a possible chunked ciphertext length")
    if _int(c, "chunk_size", "manifest.ciphertext") != CHUNK_SIZE:
        raise ManifestInvalid(f"manifest.ciphertext.chunk_size must be {CHUNK_SIZE}")
    if c["aead"] != AEAD_NAME:
        raise ManifestInvalid(f"manifest.ciphertext.aead must be {AEAD_NAME!r}")

    b = _exact(m["bidder_wrap"], ("key", "enc"), "manifest.bidder_wrap")
    bidder_wrap = BidderWrap(
        key=_hex64(b, "key", "manifest.bidder_wrap", "a key id"),
        enc=_enc(b, "enc", "manifest.bidder_wrap", _BIDDER_WRAP_SIZE),
    )
    raw_wraps = m["custodian_wraps"]
    if not isinstance(raw_wraps, list):
        raise ManifestInvalid("manifest.custodian_wraps must be a list")
    wraps = []
    for i, raw in enumerate(raw_wraps):
        where = f"manifest.custodian_wraps[{i}]"
        w = _exact(raw, ("custodian", "enc"), where)
        wraps.append(
            CustodianWrap(custodian=_hex64(w, "custodian", where, "a key id"), enc=_enc(w, "enc", where, _SHARE_WRAP_SIZE))
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
        bidder_wrap=bidder_wrap, custodian_wraps=tuple(wraps), threshold=threshold,
    )


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
        raw = b64url_decode(signature_b64)
    except ValueError:
        raise SignatureInvalid("signature is not unpadded base64url") from None
    if len(raw) != 64:
        raise SignatureInvalid(f"signature must be 64 bytes (raw r||s), got {len(raw)}")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        signing_public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureInvalid(f"manifest signature does not verify under key {expected}") from None


# ---------------------------------------------------------------------------- unwrapping


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

    Too few or wrong shares give a wrong K silently; open_bid then fails on chunk 0.
    """
    if any(len(s) != KEY_SIZE + 1 for s in shares):
        raise WrapInvalid(f"each share must be {KEY_SIZE + 1} bytes")
    try:
        return shamir.combine(shares)
    except shamir.ShamirError as exc:
        raise WrapInvalid(f"cannot combine shares: {exc}") from None


# ---------------------------------------------------------------------------- opening

FilesOut = Union[Callable[[str, int], Any], Path, None]


class _Container:
    """Parses the decrypted container incrementally: length, header, then each file's bytes."""

    def __init__(self, files_out: FilesOut) -> None:
        self._files_out = files_out
        self._head = bytearray()
        self._header_len: int | None = None
        self.summary: dict[str, str | int | bool] = {}
        self.files: list[OpenedFile] = []
        self._current = -1
        self._remaining = 0
        self._digest: Any = None
        self._sink: Any = None
        self.created: list[Path] = []
        self.header_done = False

    def feed(self, view: memoryview) -> None:
        pos = 0
        while pos < len(view) or (self.header_done and self._remaining == 0 and self._current < len(self.files)):
            if not self.header_done:
                need = (4 if self._header_len is None else 4 + self._header_len) - len(self._head)
                take = min(need, len(view) - pos)
                self._head += view[pos : pos + take]
                pos += take
                if self._header_len is None and len(self._head) == 4:
                    (self._header_len,) = struct.unpack(">I", self._head)
                    if self._header_len > MAX_HEADER_SIZE:
                        raise BidContentInvalid(f"header length {self._header_len} exceeds {MAX_HEADER_SIZE}")
                if self._header_len is not None and len(self._head) == 4 + self._header_len:
                    self._parse_header(bytes(self._head[4:]))
                    self.header_done = True
                    self._next_file()
                continue
            if self._current >= len(self.files):
                raise BidContentInvalid(f"{len(view) - pos} bytes follow the last file")
            take = min(self._remaining, len(view) - pos)
            piece = view[pos : pos + take]
            self._digest.update(piece)
            if self._sink is not None:
                self._sink.write(piece)
            pos += take
            self._remaining -= take
            if self._remaining == 0:
                self._finish_file()
                self._next_file()

    def _parse_header(self, raw: bytes) -> None:
        try:
            header = json.loads(raw)
            if canonical_json(header) != raw:
                raise BidContentInvalid("header is not in canonical JSON form")
        except (ValueError, CanonicalJSONError) as exc:
            if isinstance(exc, BidContentInvalid):
                raise
            raise BidContentInvalid(f"header is not valid JSON: {exc}") from None
        if not isinstance(header, dict) or set(header) != {"summary", "files"}:
            raise BidContentInvalid("header must hold exactly 'summary' and 'files'")
        self.summary = _check_summary(header["summary"])
        if not isinstance(header["files"], list):
            raise BidContentInvalid("header.files must be a list")
        names = set()
        for i, entry in enumerate(header["files"]):
            if not isinstance(entry, dict) or set(entry) != {"name", "size", "sha256"}:
                raise BidContentInvalid(f"header.files[{i}] must hold exactly name, size, sha256")
            name = check_file_name(entry["name"])
            size, sha = entry["size"], entry["sha256"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise BidContentInvalid(f"header.files[{i}].size must be a non-negative integer")
            if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
                raise BidContentInvalid(f"header.files[{i}].sha256 must be 64 lowercase hex digits")
            if name in names:
                raise BidContentInvalid(f"header.files names {name!r} twice")
            names.add(name)
            self.files.append(OpenedFile(name=name, size=size, sha256=sha))

    def _next_file(self) -> None:
        self._current += 1
        if self._current >= len(self.files):
            return
        entry = self.files[self._current]
        self._remaining = entry.size
        self._digest = hashlib.sha256()
        if isinstance(self._files_out, Path):
            path = self._files_out / entry.name
            self._sink = path.open("xb")
            self.created.append(path)
        elif self._files_out is not None:
            self._sink = self._files_out(entry.name, entry.size)
        else:
            self._sink = None

    def _finish_file(self) -> None:
        entry = self.files[self._current]
        if isinstance(self._files_out, Path):
            self._sink.close()
        self._sink = None
        actual = self._digest.hexdigest()
        if actual != entry.sha256:
            raise DigestMismatch(f"file {entry.name!r} has SHA-256 {actual}, the header says {entry.sha256}")

    def finish(self) -> None:
        if not self.header_done:
            raise BidContentInvalid("plaintext ends inside the header")
        if self._current < len(self.files):
            raise BidContentInvalid(f"plaintext ends inside file {self.files[self._current].name!r}")

    def abort(self) -> None:
        if isinstance(self._files_out, Path):
            if self._sink is not None:
                self._sink.close()
            for path in self.created:
                path.unlink(missing_ok=True)


def _read_exact(stream: BinaryIO, view: memoryview) -> int:
    got = 0
    while got < len(view):
        count = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not count:
            break
        got += count
    return got


def open_bid(
    ciphertext: BinaryIO,
    content_key: bytes,
    manifest: Manifest,
    files_out: FilesOut = None,
) -> OpenedBid:
    """Decrypt and verify a sealed bid in one streaming pass, memory flat in its size.

    `files_out` receives the files: a directory Path (files created there, exclusively;
    removed again if opening fails), a callable (name, size) -> writable binary object
    (its writes get a memoryview valid only during the call; the caller closes), or None
    to verify only. Bytes reach `files_out` before the whole bid is verified: nothing
    written is trustworthy unless open_bid returns.

    Raises ChunkAuthFailed(index) for a chunk that does not authenticate under K (tamper,
    reorder, splice, truncation to a wrong length, wrong K); SizeMismatch when the stream is
    shorter or longer than manifest.ciphertext.size; DigestMismatch when its SHA-256 differs
    from the manifest's or a file's from the header's; BidContentInvalid for a malformed
    container; SealError for a content key of the wrong length.
    """
    if len(content_key) != KEY_SIZE:
        raise SealError(f"content key must be {KEY_SIZE} bytes, got {len(content_key)}")
    layout = _ct_layout(manifest.ciphertext.size)
    if layout is None:
        raise ManifestInvalid(f"ciphertext size {manifest.ciphertext.size} is not a possible chunked length")
    n, last = layout
    aead = AESGCM(content_key)
    container = _Container(files_out)
    digest = hashlib.sha256()
    # The ciphertext hash runs on a worker thread (hashlib drops the GIL) while this thread
    # decrypts and hashes the files: two SHA-256 passes cost about the time of one.
    buffers = [bytearray(_FULL_CT_CHUNK), bytearray(_FULL_CT_CHUNK)]
    pending: list[Future[None] | None] = [None, None]
    plain = bytearray(CHUNK_SIZE)
    plain_view = memoryview(plain)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bid-digest") if n > 1 else None
    try:
        for index in range(n):
            final = index == n - 1
            want = last if final else _FULL_CT_CHUNK
            slot = index % 2
            if pending[slot] is not None:
                pending[slot].result()  # type: ignore[union-attr]
                pending[slot] = None
            view = memoryview(buffers[slot])[:want]
            got = _read_exact(ciphertext, view)
            if got != want:
                read_total = index * _FULL_CT_CHUNK + got
                raise SizeMismatch(
                    f"ciphertext ends after {read_total} bytes; the manifest says {manifest.ciphertext.size}"
                )
            if pool is not None:
                pending[slot] = pool.submit(digest.update, view)
            else:
                digest.update(view)
            out = plain_view[: want - TAG_SIZE]
            try:
                aead.decrypt_into(_nonce(index), view, _aad(index, final), out)
            except InvalidTag:
                raise ChunkAuthFailed(index, final) from None
            container.feed(out)
        if ciphertext.read(1):
            raise SizeMismatch(f"ciphertext is longer than the manifest's {manifest.ciphertext.size} bytes")
        for future in pending:
            if future is not None:
                future.result()
        actual = digest.hexdigest()
        if actual != manifest.ciphertext.sha256:
            raise DigestMismatch(f"ciphertext SHA-256 is {actual}; the manifest says {manifest.ciphertext.sha256}")
        container.finish()
    except BaseException:
        container.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return OpenedBid(summary=container.summary, files=tuple(container.files))


def ciphertext_digest(stream: BinaryIO) -> tuple[str, int]:
    """(lowercase hex SHA-256, size) of a stream read to its end, memory flat."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(_READ_SIZE)
    view = memoryview(buf)
    while count := stream.readinto(view):  # type: ignore[attr-defined]
        digest.update(view[:count])
        size += count
    return digest.hexdigest(), size
