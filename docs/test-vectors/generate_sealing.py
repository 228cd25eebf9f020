"""Regenerate docs/test-vectors/sealing.json (run from the repo root: python docs/test-vectors/generate_sealing.py).

Everything that is deterministic is pinned (keys, K, Shamir randomness, key-file salt and
nonce, and therefore the ciphertext); HPKE encapsulation and ECDSA signatures are random,
so the file records one valid output that every implementation must accept.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tenderhall import keyfile  # noqa: E402
from tenderhall.canonical import b64url, canonical_json  # noqa: E402
from trading import key_wrap, sealing  # noqa: E402
from trading.manifest import validate_manifest  # noqa: E402


def scalar_key(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(hashlib.sha256(label.encode()).digest(), "big"), ec.SECP256R1())


def drbg(label: str):
    state = {"counter": 0, "pool": b""}

    def rng(size: int) -> bytes:
        while len(state["pool"]) < size:
            state["pool"] += hashlib.sha256(label.encode() + state["counter"].to_bytes(4, "big")).digest()
            state["counter"] += 1
        out, state["pool"] = state["pool"][:size], state["pool"][size:]
        return out

    return rng


def pkcs8(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def pattern(size: int) -> bytes:
    # The multi-chunk file: byte i is (7*i + 3) mod 256.
    return bytes((7 * i + 3) % 256 for i in range(256)) * (size // 256) + bytes((7 * i + 3) % 256 for i in range(size % 256))


def main() -> None:
    sign = scalar_key("tenderhall test vector: bidder sign")
    decrypt = scalar_key("tenderhall test vector: bidder decrypt")
    custodians = [scalar_key(f"tenderhall test vector: custodian {i}") for i in range(3)]
    keys = {
        "bidder_sign_pkcs8": pkcs8(sign),
        "bidder_sign_spki": keyfile.public_key_spki_b64url(sign),
        "bidder_sign_key_id": keyfile.key_id(sign.public_key()),
        "bidder_decrypt_pkcs8": pkcs8(decrypt),
        "bidder_decrypt_spki": keyfile.public_key_spki_b64url(decrypt),
        "bidder_decrypt_key_id": keyfile.key_id(decrypt.public_key()),
        "custodians": [
            {"pkcs8": pkcs8(c), "spki": keyfile.public_key_spki_b64url(c), "key_id": keyfile.key_id(c.public_key())}
            for c in custodians
        ],
    }
    common = {
        "tender": "ZB-2025-0042",
        "lot": "01",
        "organisation": "91110000MA01ABCD1X",
        "client_time": "2025-03-14T09:26:53Z",
    }
    cases = []
    specs = [
        {
            "name": "small, two files, 2 of 3 custodians",
            "content_key": bytes(range(32)),
            "summary": {"price": "1234567.89", "duration_days": 180, "quality": "合格", "bond_paid": True},
            "files": [{"name": "技术标.pdf", "data": b"%PDF-1.7 tender\n"}, {"name": "empty.txt", "data": b""}],
            "upload_id": "6f1c2e4a-8b3d-4c5e-9f70-1a2b3c4d5e6f",
            "custodians": [0, 1, 2],
            "threshold": 2,
        },
        {
            "name": "multi-chunk, no custodians",
            "content_key": bytes(range(100, 132)),
            "summary": {"price": "99.00"},
            "files": [{"name": "big.bin", "pattern": 1_100_000}],
            "upload_id": "0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70",
            "custodians": [],
            "threshold": 0,
        },
    ]
    for spec in specs:
        files = [(f["name"], f["data"] if "data" in f else pattern(f["pattern"])) for f in spec["files"]]
        out = io.BytesIO()
        sealed = sealing.seal_bid(
            summary=spec["summary"], files=files, upload_id=spec["upload_id"], signing_key=sign,
            bidder_public_key=decrypt.public_key(), custodian_keys=[custodians[i].public_key() for i in spec["custodians"]],
            threshold=spec["threshold"], out=out, content_key=spec["content_key"], rng=drbg(spec["name"]), **common,
        )
        ciphertext = out.getvalue()
        manifest = validate_manifest(sealed.manifest)
        assert manifest.key_commitment == key_wrap.key_commitment(spec["content_key"])
        shares = [key_wrap.unwrap_share(w.enc, custodians[i]).hex() for w, i in zip(manifest.custodian_wraps, spec["custodians"])]
        case = {
            "name": spec["name"],
            "inputs": {
                "content_key": spec["content_key"].hex(),
                "summary": spec["summary"],
                "files": [
                    {"name": f["name"], "data": b64url(f["data"])} if "data" in f else {"name": f["name"], "pattern_size": f["pattern"]}
                    for f in spec["files"]
                ],
                "upload_id": spec["upload_id"],
                "custodians": spec["custodians"],
                "threshold": spec["threshold"],
                "shamir_rng": f"SHA-256 counter mode: sha256(name_utf8 || uint32_be(counter)), counter from 0; name = {spec['name']!r}",
                **common,
            },
            "expected": {
                "header": canonical_json(
                    {"summary": spec["summary"], "files": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files]}
                ).decode("utf-8"),
                "ciphertext_sha256": hashlib.sha256(ciphertext).hexdigest(),
                "ciphertext_size": len(ciphertext),
                "key_commitment": key_wrap.key_commitment(spec["content_key"]),
                "custodian_shares": shares,
            },
            "one_valid_output": {"manifest": sealed.manifest, "signature": sealed.signature},
        }
        if len(ciphertext) < 4096:
            case["expected"]["ciphertext"] = b64url(ciphertext)
        cases.append(case)

    keyfile_vector = {
        "owner": "91110000MA01ABCD1X",
        "passphrase": "correct horse 电池 staple",
        "iterations": 1000,
        "salt": bytes(range(16)).hex(),
        "nonce": bytes(range(200, 212)).hex(),
    }
    keyfile_vector["file"] = keyfile.encrypt_keyfile(
        keyfile_vector["owner"], sign, decrypt, keyfile_vector["passphrase"], keyfile_vector["iterations"],
        salt=bytes.fromhex(keyfile_vector["salt"]), nonce=bytes.fromhex(keyfile_vector["nonce"]),
    ).decode("utf-8")

    document = {
        "description": "Test vectors for tenderhall-sealed-bid/1 and tenderhall-keys/1; see docs/sealing.md.",
        "pattern": "pattern_size files hold byte i = (7*i + 3) mod 256",
        "keys": keys,
        "cases": cases,
        "keyfile": keyfile_vector,
    }
    path = Path(__file__).with_name("sealing.json")
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
