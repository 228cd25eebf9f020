"""tenderhall.keyfile: the passphrase-encrypted key file shared by the browser backup and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tenderhall import keyfile
from tenderhall.canonical import b64url, b64url_decode, canonical_json

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "docs/test-vectors/sealing.json").read_text(encoding="utf-8"))
FAST = 1000  # PBKDF2 iterations for tests; production files carry 600 000


def same_key(a: ec.EllipticCurvePrivateKey, b: ec.EllipticCurvePrivateKey) -> bool:
    return a.private_numbers() == b.private_numbers()


def test_keyfile_roundtrip_restores_both_keys_and_owner():
    sign, decrypt = keyfile.generate_keys()
    data = keyfile.encrypt_keyfile("91110000MA01ABCD1X", sign, decrypt, "pass phrase", iterations=FAST)
    opened = keyfile.decrypt_keyfile(data, "pass phrase")
    assert opened.owner == "91110000MA01ABCD1X"
    assert same_key(opened.sign, sign) and same_key(opened.decrypt, decrypt)


def test_keyfile_is_canonical_json_and_records_its_iterations():
    sign, decrypt = keyfile.generate_keys()
    data = keyfile.encrypt_keyfile("o", sign, decrypt, "p", iterations=FAST)
    parsed = json.loads(data)
    assert canonical_json(parsed) == data
    assert parsed["kdf"] == {"name": "PBKDF2-SHA256", "iterations": FAST, "salt": parsed["kdf"]["salt"]}
    assert len(b64url_decode(parsed["kdf"]["salt"])) == 16 and len(b64url_decode(parsed["nonce"])) == 12


def test_default_iterations_are_600000():
    assert keyfile.DEFAULT_ITERATIONS == 600_000


def test_wrong_passphrase_is_reported_as_such():
    sign, decrypt = keyfile.generate_keys()
    data = keyfile.encrypt_keyfile("o", sign, decrypt, "right", iterations=FAST)
    with pytest.raises(keyfile.WrongPassphrase, match="wrong passphrase"):
        keyfile.decrypt_keyfile(data, "wrong")


def test_altered_ciphertext_is_refused():
    sign, decrypt = keyfile.generate_keys()
    parsed = json.loads(keyfile.encrypt_keyfile("o", sign, decrypt, "p", iterations=FAST))
    raw = bytearray(b64url_decode(parsed["ciphertext"]))
    raw[0] ^= 1
    parsed["ciphertext"] = b64url(bytes(raw))
    with pytest.raises(keyfile.WrongPassphrase):
        keyfile.decrypt_keyfile(canonical_json(parsed), "p")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other/1"), "format"),
        (lambda d: d.pop("nonce"), "missing field 'nonce'"),
        (lambda d: d.update(extra=1), "unexpected field 'extra'"),
        (lambda d: d["kdf"].update(name="scrypt"), "kdf.name"),
        (lambda d: d["kdf"].update(iterations=0), "iterations"),
        (lambda d: d["kdf"].update(iterations="1000"), "kdf.iterations must be a int"),
        (lambda d: d["kdf"].update(salt="AAAA"), "salt must be 16 bytes"),
        (lambda d: d.update(nonce="not base64!"), "nonce is not unpadded base64url"),
    ],
)
def test_malformed_keyfile_names_the_fault(mutate, message):
    sign, decrypt = keyfile.generate_keys()
    parsed = json.loads(keyfile.encrypt_keyfile("o", sign, decrypt, "p", iterations=FAST))
    mutate(parsed)
    with pytest.raises(keyfile.KeyFileError, match=message):
        keyfile.decrypt_keyfile(json.dumps(parsed).encode(), "p")


def test_not_json_is_a_keyfile_error():
    with pytest.raises(keyfile.KeyFileError, match="not JSON"):
        keyfile.decrypt_keyfile(b"\xff\x00", "p")


def test_keyfile_vector_reproduces_and_opens():
    v = VECTORS["keyfile"]
    keys = VECTORS["keys"]
    opened = keyfile.decrypt_keyfile(v["file"].encode(), v["passphrase"])
    assert opened.owner == v["owner"]
    assert keyfile.public_key_spki_b64url(opened.sign) == keys["bidder_sign_spki"]
    assert keyfile.public_key_spki_b64url(opened.decrypt) == keys["bidder_decrypt_spki"]
    again = keyfile.encrypt_keyfile(
        v["owner"], opened.sign, opened.decrypt, v["passphrase"], v["iterations"],
        salt=bytes.fromhex(v["salt"]), nonce=bytes.fromhex(v["nonce"]),
    )
    assert again.decode() == v["file"]


def test_spki_b64url_roundtrips():
    sign, _ = keyfile.generate_keys()
    text = keyfile.public_key_spki_b64url(sign)
    assert keyfile.load_public_key_spki_b64url(text).public_numbers() == sign.public_key().public_numbers()
    with pytest.raises(keyfile.KeyFileError):
        keyfile.load_public_key_spki_b64url("AAAA")
