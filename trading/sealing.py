"""Sealed bids, format "tenderhall-sealed-bid/1": seal a bid into its ciphertext and manifest, and open it again.

docs/sealing.md is the specification; static/trading/sealing.js is the browser twin and
docs/test-vectors/sealing.json pins the two together. In short: the bid (a canonical-JSON
header with the opening summary and file list, then the files' bytes; trading.bid_container)
is encrypted under a random 32-byte content key K with AES-256-GCM in 1 MiB chunks whose
nonce and AAD bind the chunk index and a final flag (trading.bid_format); K is HPKE-wrapped
(RFC 9180) to the bidder's ECDH key and, Shamir-split k-of-n, to the custodians
(trading.key_wrap); a manifest naming the ciphertext's SHA-256 and committing to K
(HMAC-SHA256, because AES-GCM alone is not key-committing) is signed with the bidder's
ECDSA P-256 key (trading.manifest). Failures are trading.seal_errors.

Pure module: no I/O beyond the file-like objects passed in; randomness defaults to
os.urandom but may be injected.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenderhall.canonical import canonical_json
from tenderhall.keyfile import key_id
from trading.bid_container import (
    MAX_HEADER_SIZE, Container, FileSource, FilesOut, OpenedBid, PlaintextSource, check_file_name, check_summary,
    hash_source, stream_digest,
)
from trading.bid_format import (
    AEAD_NAME, CHUNK_SIZE, FORMAT, FULL_CT_CHUNK, KEY_SIZE, TAG_SIZE, chunk_aad, chunk_count, chunk_nonce,
    ct_layout,
)
from trading.key_wrap import (
    check_key_commitment, combine_shares, key_commitment, unwrap_bidder_key, wrap_bidder_key,
    wrap_shares,
)
from trading.manifest import Manifest, SealedBid, sign_manifest, validate_manifest
from trading.seal_errors import (
    BidContentInvalid, ChunkAuthFailed, DigestMismatch, ManifestInvalid, SealError, SizeMismatch,
)


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
    summary = check_summary(summary)
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

    parts = [hash_source(name, source) for name, source in files]
    header = canonical_json(
        {"summary": summary, "files": [{"name": p.name, "size": p.size, "sha256": p.sha256} for p in parts]}
    )
    if len(header) > MAX_HEADER_SIZE:
        raise BidContentInvalid(f"header is {len(header)} bytes, over the {MAX_HEADER_SIZE} limit")
    total = 4 + len(header) + sum(p.size for p in parts)
    n = chunk_count(total)
    source = PlaintextSource(struct.pack(">I", len(header)) + header, parts)

    aead = AESGCM(key)
    digest = hashlib.sha256()
    plain = bytearray(CHUNK_SIZE)
    cipher = bytearray(FULL_CT_CHUNK)
    plain_view, cipher_view = memoryview(plain), memoryview(cipher)
    written = 0
    for index in range(n):
        want = min(CHUNK_SIZE, total - index * CHUNK_SIZE)
        if source.fill(plain_view[:want]) != want:
            raise SealError("bid content ended early while sealing")
        out_view = cipher_view[: want + TAG_SIZE]
        aead.encrypt_into(chunk_nonce(index), plain_view[:want], chunk_aad(index, index == n - 1), out_view)
        digest.update(out_view)
        out.write(out_view)
        written += len(out_view)

    custodian_wraps = wrap_shares(key, custodian_keys, threshold, rng)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "tender": tender,
        "lot": lot,
        "organisation": organisation,
        "upload_id": upload_id,
        "client_time": client_time,
        "signing_key": key_id(signing_key.public_key()),
        "ciphertext": {"sha256": digest.hexdigest(), "size": written, "chunk_size": CHUNK_SIZE, "aead": AEAD_NAME},
        "key_commitment": key_commitment(key),
        "bidder_wrap": wrap_bidder_key(key, bidder_public_key),
        "custodian_wraps": custodian_wraps,
        "threshold": threshold,
    }
    validate_manifest(manifest)  # the same checks the server will make, before we sign
    return SealedBid(manifest=manifest, signature=sign_manifest(manifest, signing_key))


def check_content_key(manifest: Manifest | dict[str, Any], key: bytes) -> None:
    """Return if `key` is the content key the manifest commits to; raise KeyCommitmentMismatch if not.

    Call it on every K before using it: right after unwrapping the bidder wrap or combining
    custodian shares (open_bid calls it too, before reading any ciphertext). AES-GCM is not
    key-committing, so without this a bidder could hand the custodians a different K under
    which the same ciphertext also authenticates. The comparison is constant-time. A dict is
    validated first (ManifestInvalid); a key that is not 32 bytes raises SealError.
    """
    checked = manifest if isinstance(manifest, Manifest) else validate_manifest(manifest)
    check_key_commitment(checked.key_commitment, key)


def content_key_from_bidder_wrap(manifest: Manifest, bidder_private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unwrap K from manifest.bidder_wrap and check it against the key commitment (WrapInvalid, KeyCommitmentMismatch)."""
    key = unwrap_bidder_key(manifest.bidder_wrap.enc, bidder_private_key)
    check_content_key(manifest, key)
    return key


def content_key_from_shares(manifest: Manifest, shares: Sequence[bytes]) -> bytes:
    """Combine custodian shares into K and check it against the key commitment (WrapInvalid, KeyCommitmentMismatch).

    Too few or wrong shares, or shares of a different key than the bidder wrap holds, are
    refused here rather than at chunk 0.
    """
    key = combine_shares(shares)
    check_content_key(manifest, key)
    return key


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
    *,
    check_file_digests: bool = True,
) -> OpenedBid:
    """Decrypt and verify a sealed bid in one streaming pass, memory flat in its size.

    `check_file_digests=False` (allowed only with files_out=None) skips hashing the files
    against the header's digests: the opening hall uses it, since AES-GCM under the committed
    key already authenticates every plaintext byte as the bidder sealed it, so a header
    digest that disagrees can only be the bidder's own inconsistency, and it is caught the
    moment the documents are extracted (always with the check). It saves one SHA-256 pass.

    `files_out` receives the files: a directory Path (files created there, exclusively;
    removed again if opening fails), a callable (name, size) -> writable binary object
    (its writes get a memoryview valid only during the call; the caller closes), or None
    to verify only. Bytes reach `files_out` before the whole bid is verified: nothing
    written is trustworthy unless open_bid returns.

    Before anything is read or decrypted, `content_key` is checked against the manifest's
    key_commitment: KeyCommitmentMismatch (nothing reaches `files_out`, the stream is untouched).
    Then raises ChunkAuthFailed(index) for a chunk that does not authenticate under K (tamper,
    reorder, splice, truncation to a wrong length); SizeMismatch when the stream is
    shorter or longer than manifest.ciphertext.size; DigestMismatch when its SHA-256 differs
    from the manifest's or a file's from the header's; BidContentInvalid for a malformed
    container; SealError for a content key of the wrong length.
    """
    if len(content_key) != KEY_SIZE:
        raise SealError(f"content key must be {KEY_SIZE} bytes, got {len(content_key)}")
    check_content_key(manifest, content_key)  # the key-commitment check precedes any decryption
    layout = ct_layout(manifest.ciphertext.size)
    if layout is None:
        raise ManifestInvalid(f"ciphertext size {manifest.ciphertext.size} is not a possible chunked length")
    n, last = layout
    aead = AESGCM(content_key)
    if not check_file_digests and files_out is not None:
        raise ValueError("files are only written with their digests checked")
    container = Container(files_out, check_digests=check_file_digests)
    digest = hashlib.sha256()
    # The ciphertext hash runs on a worker thread (hashlib drops the GIL) while this thread
    # decrypts and hashes the files: two SHA-256 passes cost about the time of one.
    buffers = [bytearray(FULL_CT_CHUNK), bytearray(FULL_CT_CHUNK)]
    pending: list[Future[None] | None] = [None, None]
    plain = bytearray(CHUNK_SIZE)
    plain_view = memoryview(plain)
    # Without the files' hashes there is one SHA-256 pass, and AES-GCM is ten times faster than
    # it: a second thread would only add GIL hand-offs, while callers opening many bids at once
    # (the hall) get their parallelism from running bids side by side.
    pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="bid-digest")
            if n > 1 and check_file_digests else None)
    try:
        for index in range(n):
            final = index == n - 1
            want = last if final else FULL_CT_CHUNK
            slot = index % 2
            if pending[slot] is not None:
                pending[slot].result()  # type: ignore[union-attr]
                pending[slot] = None
            view = memoryview(buffers[slot])[:want]
            got = _read_exact(ciphertext, view)
            if got != want:
                read_total = index * FULL_CT_CHUNK + got
                raise SizeMismatch(
                    f"ciphertext ends after {read_total} bytes; the manifest says {manifest.ciphertext.size}"
                )
            if pool is not None:
                pending[slot] = pool.submit(digest.update, view)
            else:
                digest.update(view)
            out = plain_view[: want - TAG_SIZE]
            try:
                aead.decrypt_into(chunk_nonce(index), view, chunk_aad(index, final), out)
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
    """(lowercase hex SHA-256, size) of a ciphertext stream read to its end, memory flat."""
    return stream_digest(stream)
