"""trading.sealing: the sealed-bid format (docs/sealing.md), end to end and attack by attack."""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import json
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenderhall import keyfile
from tenderhall.canonical import b64url, b64url_decode, canonical_json
from trading import bid_container, bid_format, key_wrap, seal_errors, sealing
from trading.bid_format import CHUNK_SIZE, TAG_SIZE
from trading.manifest import Manifest, validate_manifest, verify_signature

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "docs/test-vectors/sealing.json").read_text(encoding="utf-8"))
FULL = CHUNK_SIZE + TAG_SIZE
SUMMARY = {"price": "1234567.89", "duration_days": 180, "bond_paid": True}


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def keys():
    return {"sign": new_key(), "decrypt": new_key(), "custodians": [new_key() for _ in range(5)]}


def seal(keys, files, *, custodians=0, threshold=0, content_key=None, summary=SUMMARY):
    out = io.BytesIO()
    sealed = sealing.seal_bid(
        summary=summary, files=files, tender="ZB-2025-0042", lot="01", organisation="91110000MA01ABCD1X",
        upload_id="6f1c2e4a-8b3d-4c5e-9f70-1a2b3c4d5e6f", client_time="2025-03-14T09:26:53Z",
        signing_key=keys["sign"], bidder_public_key=keys["decrypt"].public_key(),
        custodian_keys=[k.public_key() for k in keys["custodians"][:custodians]], threshold=threshold,
        out=out, content_key=content_key,
    )
    return sealed, out.getvalue()


def open_all(keys, sealed, ciphertext: bytes, content_key: bytes | None = None):
    manifest = validate_manifest(sealed.manifest)
    if content_key is None:
        content_key = key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, keys["decrypt"])
    files: dict[str, io.BytesIO] = {}

    def sink(name: str, size: int) -> io.BytesIO:
        files[name] = io.BytesIO()
        return files[name]

    opened = sealing.open_bid(io.BytesIO(ciphertext), content_key, manifest, sink)
    return opened, {name: f.getvalue() for name, f in files.items()}


def container_size(files: list[tuple[str, bytes]]) -> int:
    header = canonical_json(
        {"summary": SUMMARY, "files": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files]}
    )
    return 4 + len(header) + sum(len(d) for _, d in files)


def sized_file(total_plaintext: int) -> bytes:
    """A file that makes the whole container exactly `total_plaintext` bytes."""
    size = total_plaintext - container_size([("f", b"")])
    while True:
        data = b"\xab" * size
        delta = total_plaintext - container_size([("f", data)])
        if delta == 0:
            return data
        size += delta


def encrypt_container(plaintext: bytes, key: bytes) -> bytes:
    """Chunk-encrypt arbitrary plaintext, to build malformed containers the sealer would refuse."""
    aead = AESGCM(key)
    n = bid_format.chunk_count(len(plaintext))
    return b"".join(
        aead.encrypt(bid_format.chunk_nonce(i), plaintext[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE], bid_format.chunk_aad(i, i == n - 1))
        for i in range(n)
    )


def with_ciphertext(manifest: dict, ciphertext: bytes, key: bytes | None = None) -> Manifest:
    """The manifest rewritten to name `ciphertext` (and, given `key`, to commit to it)."""
    m = copy.deepcopy(manifest)
    m["ciphertext"]["sha256"] = hashlib.sha256(ciphertext).hexdigest()
    m["ciphertext"]["size"] = len(ciphertext)
    if key is not None:
        m["key_commitment"] = key_wrap.key_commitment(key)
    return validate_manifest(m)


# ---------------------------------------------------------------------------- roundtrips


@pytest.mark.parametrize(
    "files",
    [
        [],
        [("empty.pdf", b"")],
        [("one.bin", b"x")],
        [("exact-chunk.bin", b"\x01" * CHUNK_SIZE)],
        [("chunk-plus-one.bin", b"\x02" * (CHUNK_SIZE + 1))],
        [("a.pdf", b"A" * 1000), ("技术标.docx", os.urandom(2 * CHUNK_SIZE + 7)), ("z", b"")],
    ],
    ids=["no files", "0 bytes", "1 byte", "1 MiB file", "1 MiB + 1 file", "several files"],
)
def test_sealed_bid_opens_with_the_bidder_key(keys, files):
    sealed, ciphertext = seal(keys, files)
    verify_signature(sealed.manifest, sealed.signature, keys["sign"].public_key())
    opened, written = open_all(keys, sealed, ciphertext)
    assert dict(opened.summary) == SUMMARY
    assert [(f.name, f.size, f.sha256) for f in opened.files] == [
        (n, len(d), hashlib.sha256(d).hexdigest()) for n, d in files
    ]
    assert written == dict(files)
    assert sealed.manifest["ciphertext"]["size"] == len(ciphertext)
    assert sealing.ciphertext_digest(io.BytesIO(ciphertext)) == (sealed.manifest["ciphertext"]["sha256"], len(ciphertext))


@pytest.mark.parametrize("total", [CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE])
def test_container_of_exact_chunk_multiples_has_no_empty_final_chunk(keys, total):
    data = sized_file(total)
    sealed, ciphertext = seal(keys, [("f", data)])
    assert len(ciphertext) == total + TAG_SIZE * bid_format.chunk_count(total)
    assert bid_format.chunk_count(total) == -(-total // CHUNK_SIZE)
    opened, written = open_all(keys, sealed, ciphertext)
    assert written["f"] == data


def test_streams_are_sealed_from_their_current_position_with_flat_buffers(keys):
    data = os.urandom(CHUNK_SIZE + 100)
    stream = io.BytesIO(b"skip" + data)
    stream.seek(4)
    sealed, ciphertext = seal(keys, [("s.bin", stream)])
    _, written = open_all(keys, sealed, ciphertext)
    assert written["s.bin"] == data


def test_files_out_directory_receives_the_files(keys, tmp_path):
    sealed, ciphertext = seal(keys, [("a.txt", b"alpha"), ("b.txt", b"beta")])
    manifest = validate_manifest(sealed.manifest)
    key = key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, keys["decrypt"])
    sealing.open_bid(io.BytesIO(ciphertext), key, manifest, tmp_path)
    assert (tmp_path / "a.txt").read_bytes() == b"alpha" and (tmp_path / "b.txt").read_bytes() == b"beta"


def test_failed_open_removes_files_it_wrote_to_a_directory(keys, tmp_path):
    sealed, ciphertext = seal(keys, [("a.txt", b"alpha"), ("big", os.urandom(CHUNK_SIZE))])
    tampered = bytearray(ciphertext)
    tampered[-1] ^= 1
    manifest = validate_manifest(sealed.manifest)
    key = key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, keys["decrypt"])
    with pytest.raises(seal_errors.ChunkAuthFailed):
        sealing.open_bid(io.BytesIO(bytes(tampered)), key, manifest, tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- custodians


def test_any_k_of_n_custodian_shares_open_the_bid_and_k_minus_1_do_not(keys):
    sealed, ciphertext = seal(keys, [("a.pdf", b"hello")], custodians=5, threshold=3)
    manifest = validate_manifest(sealed.manifest)
    shares = [key_wrap.unwrap_share(w.enc, k) for w, k in zip(manifest.custodian_wraps, keys["custodians"])]
    assert [w.custodian for w in manifest.custodian_wraps] == [keyfile.key_id(k.public_key()) for k in keys["custodians"]]
    bidder_key = key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, keys["decrypt"])
    for subset in ([0, 1, 2], [4, 2, 0], [1, 3, 4], [0, 1, 2, 3, 4]):
        assert key_wrap.combine_shares([shares[i] for i in subset]) == bidder_key
    assert sealing.content_key_from_shares(manifest, [shares[i] for i in (3, 1, 4)]) == bidder_key
    wrong = key_wrap.combine_shares([shares[0], shares[3]])
    assert wrong != bidder_key
    with pytest.raises(seal_errors.KeyCommitmentMismatch, match="does not match the manifest's key commitment"):
        sealing.open_bid(io.BytesIO(ciphertext), wrong, manifest)
    with pytest.raises(seal_errors.KeyCommitmentMismatch):
        sealing.content_key_from_shares(manifest, [shares[0], shares[3]])


def test_a_share_does_not_open_with_another_custodians_key(keys):
    sealed, _ = seal(keys, [], custodians=2, threshold=2)
    wraps = sealed.manifest["custodian_wraps"]
    with pytest.raises(seal_errors.WrapInvalid, match="does not open"):
        key_wrap.unwrap_share(wraps[0]["enc"], keys["custodians"][1])
    with pytest.raises(seal_errors.WrapInvalid, match="does not open"):
        key_wrap.unwrap_bidder_key(wraps[0]["enc"], keys["custodians"][0])  # wrong info label
    with pytest.raises(seal_errors.WrapInvalid, match="does not open"):
        key_wrap.unwrap_bidder_key(sealed.manifest["bidder_wrap"]["enc"], keys["custodians"][0])


def test_wraps_are_hpke_enc_followed_by_ciphertext(keys):
    sealed, _ = seal(keys, [], custodians=2, threshold=2)
    bidder = b64url_decode(sealed.manifest["bidder_wrap"]["enc"])
    assert len(bidder) == 65 + 32 + 16 and bidder[0] == 4  # uncompressed P-256 point first
    assert len(b64url_decode(sealed.manifest["custodian_wraps"][0]["enc"])) == 65 + 33 + 16


@pytest.mark.parametrize(("custodians", "threshold"), [(0, 1), (1, 1), (2, 1), (2, 3), (3, 0)])
def test_seal_refuses_impossible_custodian_thresholds(keys, custodians, threshold):
    with pytest.raises(seal_errors.ManifestInvalid):
        seal(keys, [], custodians=custodians, threshold=threshold)


# ---------------------------------------------------------------------------- attacks


def two_chunk_bid(keys, content_key=None):
    return seal(keys, [("big.bin", os.urandom(2 * CHUNK_SIZE + 5))], content_key=content_key)


def test_one_flipped_byte_fails_the_chunk_that_holds_it(keys):
    sealed, ciphertext = two_chunk_bid(keys)
    for position, index in ((10, 0), (FULL + 3, 1), (len(ciphertext) - 1, 2)):
        tampered = bytearray(ciphertext)
        tampered[position] ^= 0x40
        with pytest.raises(seal_errors.ChunkAuthFailed) as caught:
            open_all(keys, sealed, bytes(tampered))
        assert caught.value.index == index
        assert f"chunk {index} failed authentication" in str(caught.value)


def test_dropping_the_last_chunk_fails_on_size_then_on_the_final_flag(keys):
    sealed, ciphertext = two_chunk_bid(keys)
    truncated = ciphertext[: 2 * FULL]
    with pytest.raises(seal_errors.SizeMismatch, match="ends after"):
        open_all(keys, sealed, truncated)
    # Even with a manifest rewritten to the truncated length, chunk 1 was not sealed as final.
    manifest = with_ciphertext(sealed.manifest, truncated)
    key = key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, keys["decrypt"])
    with pytest.raises(seal_errors.ChunkAuthFailed) as caught:
        sealing.open_bid(io.BytesIO(truncated), key, manifest)
    assert caught.value.index == 1 and caught.value.final


def test_trailing_bytes_after_the_last_chunk_fail_on_size(keys):
    sealed, ciphertext = seal(keys, [("a", b"abc")])
    with pytest.raises(seal_errors.SizeMismatch, match="longer"):
        open_all(keys, sealed, ciphertext + b"\x00")


def test_reordering_two_chunks_fails(keys):
    sealed, ciphertext = two_chunk_bid(keys)
    swapped = ciphertext[FULL : 2 * FULL] + ciphertext[:FULL] + ciphertext[2 * FULL :]
    with pytest.raises(seal_errors.ChunkAuthFailed) as caught:
        open_all(keys, sealed, swapped)
    assert caught.value.index == 0


def test_splicing_a_chunk_from_another_bid_fails(keys):
    sealed_a, ct_a = two_chunk_bid(keys)
    _, ct_b = two_chunk_bid(keys)
    spliced = ct_a[:FULL] + ct_b[FULL : 2 * FULL] + ct_a[2 * FULL :]
    with pytest.raises(seal_errors.ChunkAuthFailed) as caught:
        open_all(keys, sealed_a, spliced)
    assert caught.value.index == 1


def test_splice_under_a_reused_key_is_still_caught_by_the_signed_digest(keys):
    # Content keys are never reused, but if they were the AEAD alone could not tell two bids'
    # chunk 1 apart; the manifest's SHA-256 still does.
    key = os.urandom(32)
    sealed_a, ct_a = two_chunk_bid(keys, key)
    _, ct_b = two_chunk_bid(keys, key)
    spliced = ct_a[:FULL] + ct_b[FULL : 2 * FULL] + ct_a[2 * FULL :]
    with pytest.raises(seal_errors.SealError):  # a file hash or the ciphertext digest
        open_all(keys, sealed_a, spliced, key)


def test_wrong_content_key_is_refused_by_the_key_commitment(keys):
    sealed, ciphertext = seal(keys, [("a", b"abc")])
    with pytest.raises(seal_errors.KeyCommitmentMismatch):
        open_all(keys, sealed, ciphertext, os.urandom(32))


def test_wrong_content_key_under_a_matching_commitment_still_fails_chunk_zero(keys):
    # Defence in depth: a manifest that commits to another key (it would not be signed by an
    # honest sealer) gets past the commitment, and AES-GCM still refuses chunk 0.
    sealed, ciphertext = seal(keys, [("a", b"abc")])
    other = os.urandom(32)
    with pytest.raises(seal_errors.ChunkAuthFailed) as caught:
        sealing.open_bid(io.BytesIO(ciphertext), other, with_ciphertext(sealed.manifest, ciphertext, other))
    assert caught.value.index == 0 and caught.value.final


def test_ciphertext_digest_mismatch_is_reported(keys):
    sealed, ciphertext = seal(keys, [("a", b"abc")])
    manifest = copy.deepcopy(sealed.manifest)
    manifest["ciphertext"]["sha256"] = "0" * 64
    key = key_wrap.unwrap_bidder_key(manifest["bidder_wrap"]["enc"], keys["decrypt"])
    with pytest.raises(seal_errors.DigestMismatch, match="ciphertext SHA-256"):
        sealing.open_bid(io.BytesIO(ciphertext), key, validate_manifest(manifest))


def container(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", len(header)) + header + body


@pytest.mark.parametrize(
    ("plaintext", "error", "message"),
    [
        (container(b'{"files":[],"summary":{}}', b"x"), seal_errors.BidContentInvalid, "follow the last file"),
        (container(b'{"summary":{},"files":[]}'), seal_errors.BidContentInvalid, "canonical"),
        (container(b"not json"), seal_errors.BidContentInvalid, "not valid JSON"),
        (struct.pack(">I", 100) + b"{}", seal_errors.BidContentInvalid, "inside the header"),
        (
            container(canonical_json({"summary": {}, "files": [{"name": "a", "size": 3, "sha256": "0" * 64}]}), b"abc"),
            seal_errors.DigestMismatch,
            "file 'a'",
        ),
        (
            container(canonical_json({"summary": {}, "files": [{"name": "a", "size": 3, "sha256": "0" * 64}]}), b"ab"),
            seal_errors.BidContentInvalid,
            "inside file 'a'",
        ),
        (
            container(canonical_json({"summary": {}, "files": [{"name": "../x", "size": 0, "sha256": "0" * 64}]})),
            seal_errors.BidContentInvalid,
            "contains '/'",
        ),
        (container(canonical_json({"summary": {"p": [1]}, "files": []})), seal_errors.BidContentInvalid, "summary.p"),
        (struct.pack(">I", bid_container.MAX_HEADER_SIZE + 1), seal_errors.BidContentInvalid, "exceeds"),
    ],
    ids=["trailing", "key order", "not json", "short header", "file hash", "short file", "traversal", "summary type", "huge header"],
)
def test_malformed_containers_are_refused_after_authentication(keys, plaintext, error, message):
    sealed, _ = seal(keys, [])
    key = os.urandom(32)
    ciphertext = encrypt_container(plaintext, key)
    with pytest.raises(error, match=message):
        sealing.open_bid(io.BytesIO(ciphertext), key, with_ciphertext(sealed.manifest, ciphertext, key))


# ---------------------------------------------------------------------------- signatures


def test_signature_is_raw_r_s_and_verifies(keys):
    sealed, _ = seal(keys, [])
    assert len(b64url_decode(sealed.signature)) == 64
    verify_signature(sealed.manifest, sealed.signature, keys["sign"].public_key())


def test_manifest_changed_after_signing_fails_verification(keys):
    sealed, _ = seal(keys, [])
    for field, value in (("lot", "02"), ("client_time", "2025-03-14T09:26:54Z"), ("threshold", 2)):
        changed = dict(sealed.manifest, **{field: value})
        with pytest.raises(seal_errors.SignatureInvalid, match="does not verify"):
            verify_signature(changed, sealed.signature, keys["sign"].public_key())


def test_bad_signatures_are_refused(keys):
    sealed, _ = seal(keys, [])
    raw = bytearray(b64url_decode(sealed.signature))
    raw[5] ^= 1
    with pytest.raises(seal_errors.SignatureInvalid, match="does not verify"):
        verify_signature(sealed.manifest, b64url(bytes(raw)), keys["sign"].public_key())
    with pytest.raises(seal_errors.SignatureInvalid, match="64 bytes"):
        verify_signature(sealed.manifest, b64url(b"\x01" * 70), keys["sign"].public_key())
    with pytest.raises(seal_errors.SignatureInvalid, match="base64url"):
        verify_signature(sealed.manifest, "a+b=", keys["sign"].public_key())
    with pytest.raises(seal_errors.SignatureInvalid, match="does not name the key"):
        verify_signature(sealed.manifest, sealed.signature, new_key().public_key())


# ---------------------------------------------------------------------------- manifest validation


def manifest_mutations():
    def set_(path, value):
        def apply(m):
            target = m
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value
        return apply

    def delete(path):
        def apply(m):
            target = m
            for part in path[:-1]:
                target = target[part]
            del target[path[-1]]
        return apply

    return [
        (delete(["tender"]), "missing field 'tender'"),
        (set_(["surprise"], 1), "unexpected field 'surprise'"),
        (set_(["format"], "tenderhall-sealed-bid/2"), "manifest.format"),
        (set_(["tender"], 42), r"manifest.tender must be a string, got int"),
        (set_(["tender"], ""), "manifest.tender must be 1 to"),
        (set_(["organisation"], "1234"), "unified social credit code"),
        (set_(["upload_id"], "6F1C2E4A-8B3D-4C5E-9F70-1A2B3C4D5E6F"), "UUID4"),
        (set_(["client_time"], "2025-03-14 09:26:53"), "client_time"),
        (set_(["client_time"], "2025-02-30T09:26:53Z"), "client_time"),
        (set_(["signing_key"], "AB" * 32), "signing_key must be a key id"),
        (set_(["signing_key"], "ab" * 31), "signing_key must be a key id"),
        (set_(["ciphertext", "sha256"], "xyz"), "ciphertext.sha256 must be a SHA-256"),
        (set_(["ciphertext", "size"], -1), "must not be negative"),
        (set_(["ciphertext", "size"], True), "ciphertext.size must be an integer, got bool"),
        (set_(["ciphertext", "size"], 15), "not a possible chunked"),
        (set_(["ciphertext", "size"], FULL + 16), "not a possible chunked"),
        (set_(["ciphertext", "size"], FULL + 8), "not a possible chunked"),
        (set_(["ciphertext", "size"], "100"), "ciphertext.size must be an integer"),
        (set_(["ciphertext", "chunk_size"], 65536), "chunk_size must be 1048576"),
        (set_(["ciphertext", "aead"], "ChaCha20-Poly1305"), "aead"),
        (delete(["ciphertext", "aead"]), "manifest.ciphertext is missing field 'aead'"),
        (set_(["ciphertext"], []), "manifest.ciphertext must be an object"),
        (delete(["key_commitment"]), "manifest is missing field 'key_commitment'"),
        (set_(["key_commitment"], "AB" * 32), r'manifest.key_commitment must be HMAC-SHA256\(K, "tenderhall/v1/key-commitment"\): 64 lowercase hex'),
        (set_(["key_commitment"], "ab" * 31), r"manifest.key_commitment must be HMAC-SHA256.*64 lowercase hex"),
        (set_(["key_commitment"], "ab" * 33), r"manifest.key_commitment must be HMAC-SHA256.*64 lowercase hex"),
        (set_(["key_commitment"], "g" * 64), r"manifest.key_commitment must be HMAC-SHA256.*64 lowercase hex"),
        (set_(["key_commitment"], 7), "manifest.key_commitment must be a string, got int"),
        (set_(["key_commitment"], None), "manifest.key_commitment must be a string, got NoneType"),
        (set_(["bidder_wrap", "enc"], "AAAA"), "must decode to 113 bytes"),
        (set_(["bidder_wrap", "enc"], "a+b="), "not unpadded base64url"),
        (set_(["bidder_wrap", "key"], "nope"), "bidder_wrap.key must be a key id"),
        (set_(["custodian_wraps"], {}), "custodian_wraps must be a list"),
        (set_(["threshold"], 3), "threshold 3 exceeds the 2 custodian wraps"),
        (set_(["threshold"], 1), "at least 2"),
        (set_(["threshold"], "2"), "threshold must be an integer"),
        (lambda m: m["custodian_wraps"].pop(), "0 or 2 to 255 wraps"),
        (lambda m: m.update(custodian_wraps=[], threshold=2), "must be 0 without custodians"),
        (lambda m: m["custodian_wraps"][1].update(custodian=m["custodian_wraps"][0]["custodian"]), "same custodian twice"),
        (lambda m: m["custodian_wraps"][0].update(extra=1), r"custodian_wraps\[0\] has unexpected field 'extra'"),
    ]


@pytest.mark.parametrize(("mutate", "message"), manifest_mutations())
def test_validate_manifest_names_the_fault(keys, mutate, message):
    sealed, _ = seal(keys, [], custodians=2, threshold=2)
    manifest = copy.deepcopy(sealed.manifest)
    mutate(manifest)
    with pytest.raises(seal_errors.ManifestInvalid, match=message):
        validate_manifest(manifest)


def test_validated_manifest_round_trips_to_the_signed_dict(keys):
    sealed, _ = seal(keys, [], custodians=3, threshold=2)
    assert validate_manifest(sealed.manifest).to_dict() == sealed.manifest
    assert sealed.submission() == {"manifest": sealed.manifest, "signature": sealed.signature}


def test_validate_manifest_refuses_a_non_object():
    with pytest.raises(seal_errors.ManifestInvalid, match="must be an object"):
        validate_manifest([])


# ---------------------------------------------------------------------------- file names and summary


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "..\\x", "nul\x00", "x" * 256, "é" * 128, 5])
def test_unsafe_file_names_are_refused(keys, name):
    with pytest.raises(seal_errors.BidContentInvalid):
        seal(keys, [(name, b"data")])


def test_accepted_file_names_include_unicode_and_dots(keys):
    for name in ("投标文件.pdf", "a..b", ".hidden", "x" * 255):
        assert bid_container.check_file_name(name) == name


def test_duplicate_file_names_and_bad_summaries_are_refused(keys):
    with pytest.raises(seal_errors.BidContentInvalid, match="same name"):
        seal(keys, [("a", b"1"), ("a", b"2")])
    with pytest.raises(seal_errors.BidContentInvalid, match="summary.price"):
        seal(keys, [], summary={"price": 1.5})
    with pytest.raises(seal_errors.BidContentInvalid, match="summary"):
        seal(keys, [], summary={"price": None})


def test_key_id_is_sha256_of_spki_der():
    key = new_key().public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert keyfile.key_id(key) == hashlib.sha256(der).hexdigest()


# ---------------------------------------------------------------------------- test vectors


def vector_files(case) -> list[tuple[str, bytes]]:
    files = []
    for f in case["inputs"]["files"]:
        if "data" in f:
            files.append((f["name"], b64url_decode(f["data"])))
        else:
            size = f["pattern_size"]
            files.append((f["name"], bytes((7 * i + 3) % 256 for i in range(256)) * (size // 256) + bytes((7 * i + 3) % 256 for i in range(size % 256))))
    return files


def private(pkcs8_b64: str) -> ec.EllipticCurvePrivateKey:
    return serialization.load_der_private_key(b64url_decode(pkcs8_b64), password=None)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vector_ciphertext_reproduces_from_its_inputs(case):
    keys = VECTORS["keys"]
    inputs = case["inputs"]
    out = io.BytesIO()
    sealed = sealing.seal_bid(
        summary=inputs["summary"], files=vector_files(case), tender=inputs["tender"], lot=inputs["lot"],
        organisation=inputs["organisation"], upload_id=inputs["upload_id"], client_time=inputs["client_time"],
        signing_key=private(keys["bidder_sign_pkcs8"]), bidder_public_key=private(keys["bidder_decrypt_pkcs8"]).public_key(),
        custodian_keys=[private(keys["custodians"][i]["pkcs8"]).public_key() for i in inputs["custodians"]],
        threshold=inputs["threshold"], out=out, content_key=bytes.fromhex(inputs["content_key"]),
    )
    ciphertext = out.getvalue()
    assert hashlib.sha256(ciphertext).hexdigest() == case["expected"]["ciphertext_sha256"]
    assert len(ciphertext) == case["expected"]["ciphertext_size"]
    if "ciphertext" in case["expected"]:
        assert b64url(ciphertext) == case["expected"]["ciphertext"]
    key = bytes.fromhex(inputs["content_key"])
    first = AESGCM(key).decrypt(bid_format.chunk_nonce(0), ciphertext[:FULL], bid_format.chunk_aad(0, len(ciphertext) <= FULL))
    header_len = struct.unpack(">I", first[:4])[0]
    assert first[4 : 4 + header_len].decode("utf-8") == case["expected"]["header"]
    assert sealed.manifest["signing_key"] == keys["bidder_sign_key_id"]
    assert sealed.manifest["bidder_wrap"]["key"] == keys["bidder_decrypt_key_id"]
    assert sealed.manifest["key_commitment"] == case["expected"]["key_commitment"]
    assert key_wrap.key_commitment(key) == case["expected"]["key_commitment"]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vector_output_verifies_and_opens_with_bidder_and_custodian_keys(case):
    keys = VECTORS["keys"]
    output = case["one_valid_output"]
    verify_signature(output["manifest"], output["signature"], private(keys["bidder_sign_pkcs8"]).public_key())
    manifest = validate_manifest(output["manifest"])
    assert manifest.key_commitment == case["expected"]["key_commitment"]
    key = sealing.content_key_from_bidder_wrap(manifest, private(keys["bidder_decrypt_pkcs8"]))
    assert key.hex() == case["inputs"]["content_key"]
    shares = [
        key_wrap.unwrap_share(w.enc, private(keys["custodians"][i]["pkcs8"]))
        for w, i in zip(manifest.custodian_wraps, case["inputs"]["custodians"])
    ]
    assert [s.hex() for s in shares] == case["expected"]["custodian_shares"]
    if shares:
        assert sealing.content_key_from_shares(manifest, shares[: manifest.threshold]) == key
    files = vector_files(case)
    out = io.BytesIO()
    sealing.seal_bid(  # regenerate the deterministic ciphertext, then open it under the vector manifest
        summary=case["inputs"]["summary"], files=files, tender="t", lot="l", organisation="91110000MA01ABCD1X",
        upload_id=case["inputs"]["upload_id"], client_time=case["inputs"]["client_time"], signing_key=new_key(),
        bidder_public_key=new_key().public_key(), custodian_keys=[], threshold=0, out=out, content_key=key,
    )
    opened = sealing.open_bid(io.BytesIO(out.getvalue()), key, manifest)
    assert dict(opened.summary) == case["inputs"]["summary"]
    assert [f.sha256 for f in opened.files] == [hashlib.sha256(d).hexdigest() for _, d in files]


def test_a_stream_that_changes_between_hashing_and_encrypting_is_refused(keys):
    class Changing(io.BytesIO):
        def seek(self, *args):  # the sealer rewinds after hashing; change the content then
            position = super().seek(*args)
            self.getbuffer()[0] ^= 1
            return position

    with pytest.raises(seal_errors.SealError, match="changed while it was being sealed"):
        seal(keys, [("a", Changing(b"original content"))])


# ---------------------------------------------------------------------------- key commitment


def test_key_commitment_is_hmac_sha256_of_the_label_under_k(keys):
    key = os.urandom(32)
    sealed, _ = seal(keys, [("a", b"abc")], content_key=key)
    expected = hmac.new(key, b"tenderhall/v1/key-commitment", hashlib.sha256).hexdigest()
    assert sealed.manifest["key_commitment"] == expected == key_wrap.key_commitment(key)
    manifest = validate_manifest(sealed.manifest)
    assert manifest.key_commitment == expected
    sealing.check_content_key(manifest, key)
    sealing.check_content_key(sealed.manifest, key)  # a dict is validated first
    assert sealing.content_key_from_bidder_wrap(manifest, keys["decrypt"]) == key


def test_check_content_key_refuses_other_keys_and_bad_lengths(keys):
    sealed, _ = seal(keys, [])
    manifest = validate_manifest(sealed.manifest)
    with pytest.raises(seal_errors.KeyCommitmentMismatch, match="^the content key does not match the manifest's key commitment$"):
        sealing.check_content_key(manifest, os.urandom(32))
    assert issubclass(seal_errors.KeyCommitmentMismatch, seal_errors.SealError)
    with pytest.raises(seal_errors.SealError, match="32 bytes"):
        sealing.check_content_key(manifest, b"\x00" * 31)
    broken = dict(sealed.manifest)
    del broken["key_commitment"]
    with pytest.raises(seal_errors.ManifestInvalid, match="missing field 'key_commitment'"):
        sealing.check_content_key(broken, os.urandom(32))


def test_the_signature_covers_the_key_commitment(keys):
    sealed, _ = seal(keys, [])
    changed = dict(sealed.manifest, key_commitment=key_wrap.key_commitment(os.urandom(32)))
    with pytest.raises(seal_errors.SignatureInvalid, match="does not verify"):
        verify_signature(changed, sealed.signature, keys["sign"].public_key())


class _CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def readinto(self, buffer):  # type: ignore[override]
        self.reads += 1
        return super().readinto(buffer)

    def read(self, *args):  # type: ignore[override]
        self.reads += 1
        return super().read(*args)


def test_mismatched_commitment_is_refused_before_any_ciphertext_is_read_or_plaintext_released(keys, tmp_path):
    # The bidder-held key K1 opens the ciphertext, but the signed manifest commits to another
    # key (as a bidder building an invisible salamander would need for one of its two keys).
    k1, k2 = os.urandom(32), os.urandom(32)
    sealed, ciphertext = seal(keys, [("a.txt", b"alpha"), ("big", os.urandom(CHUNK_SIZE + 10))], content_key=k1)
    manifest = with_ciphertext(sealed.manifest, ciphertext, k2)
    opened: list[str] = []
    stream = _CountingStream(ciphertext)

    def sink(name: str, size: int) -> io.BytesIO:
        opened.append(name)
        return io.BytesIO()

    with pytest.raises(seal_errors.KeyCommitmentMismatch):
        sealing.open_bid(stream, k1, manifest, sink)
    assert opened == [] and stream.reads == 0 and stream.tell() == 0
    with pytest.raises(seal_errors.KeyCommitmentMismatch):
        sealing.open_bid(io.BytesIO(ciphertext), k1, manifest, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_custodian_shares_of_a_different_key_are_refused(keys):
    # A dishonest bidder wraps K1 to itself but Shamir-splits K2 to the custodians: the
    # commitment (to K1, signed) lets the bidder open, and the custodians' K2 is refused before
    # it decrypts anything, so the opening hall cannot be shown a second bid.
    k1, k2 = os.urandom(32), os.urandom(32)
    sealed, ciphertext = seal(keys, [("a.txt", b"alpha")], content_key=k1)
    custodian_keys = keys["custodians"][:3]
    forged = copy.deepcopy(sealed.manifest)
    forged["custodian_wraps"] = key_wrap.wrap_shares(k2, [k.public_key() for k in custodian_keys], 2, os.urandom)
    forged["threshold"] = 2
    manifest = validate_manifest(forged)
    shares = [key_wrap.unwrap_share(w.enc, k) for w, k in zip(manifest.custodian_wraps, custodian_keys)]
    combined = key_wrap.combine_shares(shares[:2])
    assert combined == k2
    with pytest.raises(seal_errors.KeyCommitmentMismatch):
        sealing.content_key_from_shares(manifest, shares[:2])
    with pytest.raises(seal_errors.KeyCommitmentMismatch):
        sealing.check_content_key(manifest, combined)
    stream = _CountingStream(ciphertext)
    with pytest.raises(seal_errors.KeyCommitmentMismatch):
        sealing.open_bid(stream, combined, manifest)
    assert stream.reads == 0
    assert sealing.content_key_from_bidder_wrap(manifest, keys["decrypt"]) == k1
    opened, _ = open_all(keys, sealed, ciphertext)
    assert [f.name for f in opened.files] == ["a.txt"]


def test_the_hall_opening_skips_only_the_file_digests_and_never_while_writing(keys, tmp_path):
    sealed, _ = seal(keys, [])
    key = os.urandom(32)
    wrong_digest = container(canonical_json({"summary": {"p": "1"}, "files": [{"name": "a", "size": 3,
                                                                                "sha256": "0" * 64}]}), b"abc")
    ciphertext = encrypt_container(wrong_digest, key)
    manifest = with_ciphertext(sealed.manifest, ciphertext, key)
    opened = sealing.open_bid(io.BytesIO(ciphertext), key, manifest, check_file_digests=False)
    assert opened.summary == {"p": "1"} and opened.files[0].sha256 == "0" * 64  # the header's claim, unchecked
    with pytest.raises(seal_errors.DigestMismatch, match="file 'a'"):
        sealing.open_bid(io.BytesIO(ciphertext), key, manifest)  # extraction always checks
    with pytest.raises(ValueError, match="digests checked"):
        sealing.open_bid(io.BytesIO(ciphertext), key, manifest, tmp_path, check_file_digests=False)
    tampered = bytearray(ciphertext)
    tampered[-1] ^= 1
    with pytest.raises(seal_errors.SealError):  # every chunk is still authenticated
        sealing.open_bid(io.BytesIO(bytes(tampered)), key, manifest, check_file_digests=False)
