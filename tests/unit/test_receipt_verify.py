"""The offline receipt check and the tree head format, with a tree built in memory (no database)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tenderhall import log, merkle
from tenderhall.canonical import canonical_json
from tenderhall.platform_key import PlatformKey

KEY = PlatformKey(Ed25519PrivateKey.generate())


def build(n: int) -> tuple[list[bytes], dict[merkle.NodeKey, bytes]]:
    entries = [canonical_json({"kind": "t", "index": i, "time": "2030-01-01T00:00:00.000Z", "body": {"i": i}})
               for i in range(n)]
    nodes: dict[merkle.NodeKey, bytes] = {}
    for i, data in enumerate(entries):
        for level, index, h in merkle.completed_nodes(i, merkle.leaf_hash(data), lambda lv, ix: nodes[(lv, ix)]):
            nodes[(level, index)] = h
    return entries, nodes


def signed_head(size: int, nodes: dict[merkle.NodeKey, bytes], key: PlatformKey = KEY) -> log.TreeHead:
    root = merkle.root(size, nodes)
    stamp = "2030-01-01T00:00:00.000Z"
    return log.TreeHead(size, root, stamp, key.sign(log.tree_head_message(size, root, stamp, key.key_id)), key.key_id)


def test_the_signed_message_is_the_documented_canonical_json() -> None:
    message = log.tree_head_message(3, bytes(32), "2030-01-01T00:00:00.000Z", "ab")
    assert message == (b'{"key_id":"ab","log":"tenderhall","root_hash":"' + b"0" * 64
                       + b'","timestamp":"2030-01-01T00:00:00.000Z","tree_size":3}')


def test_iso_utc_has_milliseconds_and_z() -> None:
    moment = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    assert log.iso_utc(moment) == "2030-05-06T07:08:09.123Z"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 13])
def test_every_entry_verifies_and_tampering_does_not(size: int) -> None:
    entries, nodes = build(size)
    head = signed_head(size, nodes).as_json()
    assert log.TreeHead.from_json(head).as_json() == head
    for index, data in enumerate(entries):
        proof = merkle.inclusion_proof(index, size, nodes)
        assert log.verify_receipt_proof(data, index, head, proof, KEY.public_pem)
        assert log.verify_receipt_proof(data, index, head, [p.hex() for p in proof], KEY.public)
        assert not log.verify_receipt_proof(data + b" ", index, head, proof, KEY.public)
        assert not log.verify_receipt_proof(data, index, {**head, "timestamp": "2031-01-01T00:00:00.000Z"}, proof, KEY.public)
        other = PlatformKey(Ed25519PrivateKey.generate())
        assert not log.verify_receipt_proof(data, index, head, proof, other.public)
        if size > 1:
            assert not log.verify_receipt_proof(data, index, head, proof[:-1], KEY.public)


@pytest.mark.parametrize("bad", [None, {}, {"tree_size": "3"}, "text", {"tree_size": 1, "root_hash": "00"}])
def test_malformed_input_is_false_not_an_exception(bad: object) -> None:
    entries, nodes = build(1)
    assert not log.verify_receipt_proof(entries[0], 0, bad, [], KEY.public)  # type: ignore[arg-type]
    assert not log.verify_receipt_proof(b"\xff", 0, signed_head(1, nodes).as_json(), [], KEY.public)
    assert not log.verify_receipt_proof(entries[0], 0, signed_head(1, nodes).as_json(), [], "not a pem")
