"""Bid receipts: a receipt built from a log append verifies offline; any alteration fails."""

from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tenderhall import log, merkle
from tenderhall.canonical import canonical_json
from tenderhall.platform_key import PlatformKey
from trading import receipts

BODY = dict(tender="t-1", lot="L1", bid="b-3", manifest_sha256="a" * 64, ciphertext_sha256="b" * 64, size=1040,
            received_at="2026-11-21T10:00:00.123456Z")


def _append(signer: PlatformKey, index: int, body: dict) -> log.AppendResult:
    """What log.append_entry gives for entry `index` in a log whose earlier entries are fillers."""
    entries = [{"kind": "filler", "index": i, "time": "2026-11-21T09:00:00.000Z", "body": {"n": i}} for i in range(index)]
    entry = {"kind": receipts.LOG_KIND, "index": index, "time": "2026-11-21T10:00:00.124Z", "body": body}
    leaves = [merkle.leaf_hash(canonical_json(e)) for e in entries + [entry]]
    nodes: dict = {}
    for i, leaf in enumerate(leaves):
        for lv, ix, h in merkle.completed_nodes(i, leaf, lambda lv, ix: nodes[(lv, ix)]):
            nodes[(lv, ix)] = h
    size = index + 1
    root = merkle.root(size, nodes)
    ts = "2026-11-21T10:00:00.125Z"
    head = log.TreeHead(size, root, ts, signer.sign(log.tree_head_message(size, root, ts, signer.key_id)), signer.key_id)
    return log.AppendResult(index, leaves[-1], entry, head, merkle.inclusion_proof(index, size, nodes))


@pytest.fixture
def signer() -> PlatformKey:
    return PlatformKey(Ed25519PrivateKey.generate())


def _receipt(signer: PlatformKey, index: int = 4) -> dict:
    appended = _append(signer, index, receipts.log_body(**BODY))
    return receipts.build_receipt(signer=signer, organisation="91110000000000001X", upload_id="u-1",
                                  appended=appended, **BODY)


@pytest.mark.parametrize("index", [0, 1, 4, 6])
def test_receipt_verifies(signer: PlatformKey, index: int) -> None:
    receipt = _receipt(signer, index)
    receipts.verify_receipt(receipt, signer.public)
    receipts.verify_receipt(receipt, signer.public_pem)
    assert receipt["log_index"] == index and receipt["receipt"] == receipts.RECEIPT_FORMAT


@pytest.mark.parametrize("path,value", [
    (("size",), 1041), (("ciphertext_sha256",), "c" * 64), (("log_index",), 3),
    (("inclusion_proof", 0), "00" * 32), (("tree_head", "root_hash"), "11" * 32),
    (("log_entry", "body", "size"), 9), (("signature",), "AAAA"),
])
def test_any_alteration_fails(signer: PlatformKey, path: tuple, value: object) -> None:
    receipt = copy.deepcopy(_receipt(signer))
    target = receipt
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(receipts.ReceiptInvalid):
        receipts.verify_receipt(receipt, signer.public)


def test_resigned_receipt_with_altered_entry_fails_on_the_proof(signer: PlatformKey) -> None:
    # Even the platform cannot rewrite the entry after the fact: the proof binds it to the signed head.
    receipt = _receipt(signer)
    receipt["log_entry"]["time"] = "2026-11-21T09:59:59.000Z"
    unsigned = {k: v for k, v in receipt.items() if k != "signature"}
    from tenderhall.canonical import b64url
    receipt["signature"] = b64url(signer.sign(canonical_json(unsigned)))
    with pytest.raises(receipts.ReceiptInvalid, match="inclusion proof"):
        receipts.verify_receipt(receipt, signer.public)


def test_another_platform_key_is_refused(signer: PlatformKey) -> None:
    with pytest.raises(receipts.ReceiptInvalid, match="another platform key"):
        receipts.verify_receipt(_receipt(signer), Ed25519PrivateKey.generate().public_key())


def test_manifest_digest_is_of_canonical_json() -> None:
    assert receipts.manifest_digest({"b": 1, "a": "x"}) == receipts.manifest_digest({"a": "x", "b": 1})
