"""The browser (static/trading/sealing.js, static/tenderhall/keys.js) and Python agree on sealed bids.

A tiny static server on 127.0.0.1 serves static/ and tests/browser/harness/; Chromium runs the
real modules and hands results back as JSON with binary fields in b64url.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import Page

from tenderhall import keyfile
from tenderhall.canonical import b64url, b64url_decode, canonical_json
from trading import bid_container, bid_format, key_wrap, seal_errors, sealing
from trading.manifest import validate_manifest, verify_signature

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "docs/test-vectors/sealing.json").read_text(encoding="utf-8"))
FAST = 1000  # PBKDF2 iterations for test backups
ORG = "91110000MA01ABCD1X"
SUMMARY = {"price": "1234567.89", "duration_days": 180, "quality": "合格", "bond_paid": True}


@pytest.fixture
def harness(page: Page, base_url: str) -> Page:
    page.goto(f"{base_url}/harness/index.html")
    try:
        page.wait_for_function("window.thReady === true", timeout=15_000)
    except Exception:
        pytest.fail(f"harness did not load: {page.console_messages}")  # type: ignore[attr-defined]
    return page


def call(page: Page, name: str, *args: object) -> object:
    return page.evaluate(f"(args) => window.th.{name}(...args)", list(args))


def spki(key: ec.EllipticCurvePrivateKey) -> str:
    return keyfile.public_key_spki_b64url(key)


def custodian_backups(count: int) -> list[tuple[ec.EllipticCurvePrivateKey, str]]:
    made = []
    for i in range(count):
        sign, decrypt = keyfile.generate_keys()
        made.append((decrypt, keyfile.encrypt_keyfile(f"custodian-{i}", sign, decrypt, f"pass {i}", FAST).decode()))
    return made


def open_in_python(manifest: dict, ciphertext: bytes, key: bytes) -> tuple[bid_container.OpenedBid, dict[str, bytes]]:
    files: dict[str, io.BytesIO] = {}

    def sink(name: str, size: int) -> io.BytesIO:
        files[name] = io.BytesIO()
        return files[name]

    opened = sealing.open_bid(io.BytesIO(ciphertext), key, validate_manifest(manifest), sink)
    return opened, {name: f.getvalue() for name, f in files.items()}


def test_browser_sealed_bid_opens_in_python_with_bidder_key_and_with_two_custodian_shares(harness):
    custodians = custodian_backups(3)
    made = call(harness, "createKeys", ORG, "bidder pass", FAST)
    assert made["extractable"] == [False, False]
    files = {"技术标.pdf": os.urandom(bid_format.CHUNK_SIZE + 500_000), "small.txt": b"hello", "empty.bin": b""}
    sealed = call(harness, "seal", ORG, {
        "summary": SUMMARY,
        "files": [{"name": n, "data": b64url(d)} for n, d in files.items()],
        "tender": "ZB-2025-0042", "lot": "01", "organisation": ORG,
        "uploadId": "6f1c2e4a-8b3d-4c5e-9f70-1a2b3c4d5e6f", "clientTime": "2025-03-14T09:26:53Z",
        "custodianKeysSpki": [spki(k) for k, _ in custodians], "threshold": 2,
    })
    assert sealed["verifies"] and sealed["progressPhases"] == ["hash", "encrypt"]
    manifest, ciphertext = sealed["manifest"], b64url_decode(sealed["ciphertext"])

    # The bidder's backup, written by the browser, opens in Python and holds the same keys.
    bidder = keyfile.decrypt_keyfile(made["backup"].encode(), "bidder pass")
    assert spki(bidder.sign) == made["signSpki"] and spki(bidder.decrypt) == made["decryptSpki"]

    verify_signature(manifest, sealed["signature"], bidder.sign.public_key())
    checked = validate_manifest(manifest)
    assert checked.ciphertext.size == len(ciphertext) > bid_format.CHUNK_SIZE + bid_format.TAG_SIZE
    assert sealing.ciphertext_digest(io.BytesIO(ciphertext))[0] == checked.ciphertext.sha256
    assert checked.bidder_wrap.key == keyfile.key_id(bidder.decrypt.public_key())
    assert [w.custodian for w in checked.custodian_wraps] == [keyfile.key_id(k.public_key()) for k, _ in custodians]

    key = key_wrap.unwrap_bidder_key(checked.bidder_wrap.enc, bidder.decrypt)
    assert checked.key_commitment == key_wrap.key_commitment(key)  # the browser's WebCrypto HMAC
    sealing.check_content_key(checked, key)
    opened, written = open_in_python(manifest, ciphertext, key)
    assert dict(opened.summary) == SUMMARY
    assert written == files
    assert [f.sha256 for f in opened.files] == [hashlib.sha256(d).hexdigest() for d in files.values()]

    shares = [key_wrap.unwrap_share(checked.custodian_wraps[i].enc, custodians[i][0]) for i in (0, 2)]
    assert key_wrap.combine_shares(shares) == key
    assert sealing.content_key_from_shares(checked, shares) == key
    opened_by_custodians, written_by_custodians = open_in_python(manifest, ciphertext, key_wrap.combine_shares(shares))
    assert dict(opened_by_custodians.summary) == SUMMARY and written_by_custodians == files

    tampered = bytearray(ciphertext)
    tampered[bid_format.CHUNK_SIZE + bid_format.TAG_SIZE + 9] ^= 1
    with pytest.raises(seal_errors.ChunkAuthFailed) as caught:
        open_in_python(manifest, bytes(tampered), key)
    assert caught.value.index == 1


def test_python_sealed_bid_opens_in_browser_with_a_restored_non_extractable_key(harness):
    sign, decrypt = keyfile.generate_keys()
    backup = keyfile.encrypt_keyfile(ORG, sign, decrypt, "口令 passphrase", FAST).decode()
    custodians = custodian_backups(3)
    files = [("big.bin", os.urandom(2 * bid_format.CHUNK_SIZE + 3)), ("说明.txt", "投标说明".encode()), ("z", b"")]
    out = io.BytesIO()
    sealed = sealing.seal_bid(
        summary=SUMMARY, files=files, tender="ZB-2025-0042", lot="01", organisation=ORG,
        upload_id="0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70", client_time="2025-03-14T09:26:53Z",
        signing_key=sign, bidder_public_key=decrypt.public_key(),
        custodian_keys=[k.public_key() for k, _ in custodians], threshold=2, out=out,
    )
    ciphertext = b64url(out.getvalue())

    restored = call(harness, "restore", backup, "口令 passphrase")
    assert restored["owner"] == ORG
    assert restored["extractable"] == [False, False]
    assert restored["decryptSpki"] == spki(decrypt) and restored["signSpki"] == spki(sign)

    opened = call(harness, "open", ORG, sealed.manifest, ciphertext)
    assert opened["extractable"] is False
    assert opened["summary"] == SUMMARY
    expected = [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files]
    assert [{k: f[k] for k in ("name", "size", "sha256")} for f in opened["files"]] == expected
    assert [f["actual"] for f in opened["files"]] == [e["sha256"] for e in expected]

    by_custodians = call(harness, "openWithCustodians",
                         [{"backup": b, "passphrase": f"pass {i}"} for i, (_, b) in enumerate(custodians) if i != 1],
                         sealed.manifest, ciphertext)
    assert by_custodians["summary"] == SUMMARY
    assert [f["sha256"] for f in by_custodians["files"]] == [e["sha256"] for e in expected]

    position = bid_format.CHUNK_SIZE + bid_format.TAG_SIZE + 100
    assert call(harness, "openTampered", ORG, sealed.manifest, ciphertext, position) == "ChunkAuthFailed:1"

    # openBid checks the key commitment before decrypting: a manifest committing to another key
    # is refused with the bidder's (otherwise good) key, as is one without the field.
    for commitment in (key_wrap.key_commitment(os.urandom(32)), None):
        other = dict(sealed.manifest, key_commitment=commitment)
        if commitment is None:
            del other["key_commitment"]
        with pytest.raises(Exception) as caught:
            call(harness, "open", ORG, other, ciphertext)
        expected_message = ("the content key does not match the manifest's key commitment" if commitment
                            else "manifest.key_commitment must be 64 lowercase hex digits")
        assert expected_message in str(caught.value)


def test_key_backups_interoperate_both_ways(harness):
    made = call(harness, "createKeys", "owner-a", "browser pass", FAST)
    opened = keyfile.decrypt_keyfile(made["backup"].encode(), "browser pass")
    assert opened.owner == "owner-a"
    assert spki(opened.sign) == made["signSpki"] and spki(opened.decrypt) == made["decryptSpki"]
    assert json.loads(made["backup"])["kdf"]["iterations"] == FAST
    assert canonical_json(json.loads(made["backup"])) == made["backup"].encode()
    with pytest.raises(keyfile.WrongPassphrase):
        keyfile.decrypt_keyfile(made["backup"].encode(), "other")

    sign, decrypt = keyfile.generate_keys()
    backup = keyfile.encrypt_keyfile("owner-b", sign, decrypt, "python pass", FAST).decode()
    restored = call(harness, "restore", backup, "python pass")
    assert restored["owner"] == "owner-b" and restored["signSpki"] == spki(sign) and restored["decryptSpki"] == spki(decrypt)
    assert call(harness, "wrongPassphrase", backup, "nope") == "WrongPassphrase"

    v = VECTORS["keyfile"]
    keys = VECTORS["keys"]
    assert call(harness, "encryptKeyfileVector", v, keys["bidder_sign_pkcs8"], keys["bidder_decrypt_pkcs8"]) == v["file"]


def test_browser_reproduces_the_sealing_test_vectors_and_canonical_json(harness):
    call(harness, "createKeys", "vector-owner", "p", FAST)
    for case in VECTORS["cases"]:
        inputs = case["inputs"]
        files = []
        for f in inputs["files"]:
            if "data" in f:
                files.append(f)
            else:
                size = f["pattern_size"]
                data = bytes((7 * i + 3) % 256 for i in range(256)) * (size // 256) + bytes((7 * i + 3) % 256 for i in range(size % 256))
                files.append({"name": f["name"], "data": b64url(data)})
        custodian_spkis = [VECTORS["keys"]["custodians"][i]["spki"] for i in inputs["custodians"]]
        sealed = call(harness, "seal", "vector-owner", {
            "summary": inputs["summary"], "files": files, "tender": inputs["tender"], "lot": inputs["lot"],
            "organisation": inputs["organisation"], "uploadId": inputs["upload_id"], "clientTime": inputs["client_time"],
            "custodianKeysSpki": custodian_spkis, "threshold": inputs["threshold"],
            "contentKey": b64url(bytes.fromhex(inputs["content_key"])),
        })
        ciphertext = b64url_decode(sealed["ciphertext"])
        assert hashlib.sha256(ciphertext).hexdigest() == case["expected"]["ciphertext_sha256"], case["name"]
        assert sealed["manifest"]["ciphertext"]["sha256"] == case["expected"]["ciphertext_sha256"]
        assert sealed["manifest"]["key_commitment"] == case["expected"]["key_commitment"], case["name"]
        for wrap, i in zip(sealed["manifest"]["custodian_wraps"], inputs["custodians"]):
            assert wrap["custodian"] == VECTORS["keys"]["custodians"][i]["key_id"]

    tricky = {"b": [1, -2, 0, 9007199254740991], "a": "\u2028 \"q\" \\ \n \x01 é 中 😀", "ä": True, "z": None, "\ue000": 1, "😀": 2}
    assert call(harness, "canonical", tricky).encode("utf-8") == canonical_json(tricky)
