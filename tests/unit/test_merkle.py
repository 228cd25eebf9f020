"""Unit tests for tenderhall.merkle against a naive RFC 9162 reference and the CT vectors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache

import pytest

from tenderhall import merkle
from tenderhall.merkle import NodeKey

MAX_SIZE = 70
MAX_CONSISTENCY = 40
DATA = tuple(b"entry %d" % i for i in range(MAX_SIZE))

# The Certificate Transparency reference test tree (RFC 6962 test vectors).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


# --- Naive reference, written straight from the RFC 9162 §2.1 definitions -------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@lru_cache(maxsize=None)
def ref_mth(d: tuple[bytes, ...]) -> bytes:
    if not d:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _k(len(d))
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: tuple[bytes, ...], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


# --- Helpers ----------------------------------------------------------------------------


class Recording(Mapping[NodeKey, bytes]):
    """A read-only view of the node store that remembers which keys were read."""

    def __init__(self, nodes: Mapping[NodeKey, bytes], allowed: set[NodeKey]) -> None:
        self._nodes = {key: nodes[key] for key in allowed}  # KeyError on anything else
        self.read: set[NodeKey] = set()

    def __getitem__(self, key: NodeKey) -> bytes:
        value = self._nodes[key]
        self.read.add(key)
        return value

    def __iter__(self) -> Iterator[NodeKey]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)


def build_store(leaf_hashes: list[bytes]) -> dict[NodeKey, bytes]:
    store: dict[NodeKey, bytes] = {}
    for index, leaf in enumerate(leaf_hashes):
        for level, i, value in merkle.completed_nodes(index, leaf, lambda l, i: store[(l, i)]):
            store[(level, i)] = value
    return store


def flip(value: bytes, at: int = 0) -> bytes:
    return value[:at] + bytes([value[at] ^ 1]) + value[at + 1 :]


@pytest.fixture(scope="module")
def store() -> dict[NodeKey, bytes]:
    return build_store([merkle.leaf_hash(d) for d in DATA])


# --- Hashing and roots ------------------------------------------------------------------


def test_hashes_follow_rfc_domain_separation() -> None:
    assert merkle.EMPTY_ROOT.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert merkle.leaf_hash(b"") == _h(b"\x00")
    assert merkle.node_hash(b"a" * 32, b"b" * 32) == _h(b"\x01" + b"a" * 32 + b"b" * 32)


def test_ct_reference_tree_roots_and_proofs() -> None:
    leaves = [merkle.leaf_hash(d) for d in CT_LEAVES]
    nodes = build_store(leaves)
    for size, expected in enumerate(CT_ROOTS, start=1):
        assert merkle.root_from_leaves(leaves[:size]).hex() == expected
        assert merkle.root(size, nodes).hex() == expected
    hexes = lambda hashes: [h.hex()[:8] for h in hashes]  # noqa: E731
    assert hexes(merkle.inclusion_proof(0, 8, nodes)) == ["96a296d2", "5f083f0a", "6b47aaf2"]
    assert hexes(merkle.inclusion_proof(5, 8, nodes)) == ["bc1a0643", "ca854ea1", "d37ee418"]
    assert hexes(merkle.consistency_proof(3, 8, nodes)) == [
        "0298d122", "07506a85", "fac54203", "6b47aaf2",
    ]  # fmt: skip
    assert hexes(merkle.consistency_proof(2, 5, nodes)) == ["5f083f0a", "bc1a0643"]
    assert hexes(merkle.consistency_proof(6, 8, nodes)) == ["0ebc5d34", "ca854ea1", "d37ee418"]


def test_roots_match_reference_for_every_size(store: dict[NodeKey, bytes]) -> None:
    leaves = [merkle.leaf_hash(d) for d in DATA]
    for size in range(MAX_SIZE + 1):
        expected = ref_mth(DATA[:size])
        assert merkle.root_from_leaves(leaves[:size]) == expected
        nodes = Recording(store, merkle.needed_for_root(size))
        assert merkle.root(size, nodes) == expected
        assert nodes.read == merkle.needed_for_root(size)


def test_completed_nodes_yields_exactly_the_perfect_subtrees() -> None:
    store: dict[NodeKey, bytes] = {}
    for index, data in enumerate(DATA):
        fetched: list[NodeKey] = []

        def get(level: int, i: int) -> bytes:
            fetched.append((level, i))
            return store[(level, i)]

        new = merkle.completed_nodes(index, merkle.leaf_hash(data), get)
        assert new[0] == (0, index, merkle.leaf_hash(data))
        # Only left siblings already stored are read, and each new node ends at this leaf.
        assert fetched == [(level - 1, 2 * i) for level, i, _ in new[1:]]
        for level, i, value in new:
            assert (i + 1) << level == index + 1
            assert (level, i) not in store
            assert value == ref_mth(DATA[i << level : (i + 1) << level])
            store[(level, i)] = value
        perfect = {(l, i) for l in range(8) for i in range(MAX_SIZE) if (i + 1) << l <= index + 1}
        assert set(store) == perfect


def test_subtree_root_matches_reference_on_aligned_ranges(store: dict[NodeKey, bytes]) -> None:
    for start in range(MAX_CONSISTENCY):
        for end in range(start, MAX_CONSISTENCY + 1):
            n = end - start
            if n and start % (1 << (n.bit_length() - 1)):
                with pytest.raises(ValueError):
                    merkle.perfect_subtrees(start, end)
                continue
            assert merkle.subtree_root(start, end, store) == ref_mth(DATA[start:end])


# --- Inclusion --------------------------------------------------------------------------


def test_inclusion_proofs_match_reference_and_verify(store: dict[NodeKey, bytes]) -> None:
    for size in range(1, MAX_SIZE + 1):
        root = ref_mth(DATA[:size])
        for index in range(size):
            needed = merkle.needed_for_inclusion(index, size)
            nodes = Recording(store, needed)
            proof = merkle.inclusion_proof(index, size, nodes)
            assert proof == ref_path(index, DATA[:size])
            assert nodes.read == needed
            assert merkle.verify_inclusion(store[(0, index)], index, size, proof, root)


def test_inclusion_verifier_rejects_tampering(store: dict[NodeKey, bytes]) -> None:
    for size in range(1, MAX_CONSISTENCY + 1):
        root = ref_mth(DATA[:size])
        for index in range(size):
            leaf = store[(0, index)]
            proof = merkle.inclusion_proof(index, size, store)
            assert not merkle.verify_inclusion(flip(leaf), index, size, proof, root)
            assert not merkle.verify_inclusion(leaf, index, size, proof, flip(root, 31))
            for i in range(len(proof)):
                bad = proof[:i] + [flip(proof[i], i)] + proof[i + 1 :]
                assert not merkle.verify_inclusion(leaf, index, size, bad, root)
            for other in (index - 1, index + 1, size, -1):
                assert not merkle.verify_inclusion(leaf, other, size, proof, root)
            for other in (size - 1, size + 1):
                # The claimed size is checked against the root a tree of that size has.
                other_root = ref_mth(DATA[:other])
                assert not merkle.verify_inclusion(leaf, index, other, proof, other_root)
            if proof:
                assert not merkle.verify_inclusion(leaf, index, size, proof[:-1], root)
            assert not merkle.verify_inclusion(leaf, index, size, proof + [root], root)
            assert not merkle.verify_inclusion(leaf, index, size, [leaf] + proof, root)


def test_inclusion_size_is_bound_only_through_path_shape(store: dict[NodeKey, bytes]) -> None:
    # RFC 9162 §2.1.3.2 accepts a size-3 path as a size-4 one (same shape): the size must
    # come from the signed tree head together with the root, never from the proof alone.
    proof = merkle.inclusion_proof(0, 3, store)
    assert merkle.verify_inclusion(store[(0, 0)], 0, 4, proof, merkle.root(3, store))


def test_inclusion_verifier_returns_false_on_malformed_input() -> None:
    leaf = merkle.leaf_hash(b"x")
    assert merkle.verify_inclusion(leaf, 0, 1, [], leaf)
    assert not merkle.verify_inclusion(leaf, 0, 0, [], merkle.EMPTY_ROOT)
    assert not merkle.verify_inclusion(leaf, 0, 1, [], leaf[:31])
    assert not merkle.verify_inclusion(leaf[:31], 0, 1, [], leaf)
    assert not merkle.verify_inclusion(leaf, 0, 2, [b"short"], leaf)
    assert not merkle.verify_inclusion(leaf, 0, 2, None, leaf)  # type: ignore[arg-type]
    assert not merkle.verify_inclusion(leaf, "0", 1, [], leaf)  # type: ignore[arg-type]
    assert not merkle.verify_inclusion(leaf, 0, -1, [], leaf)


def test_verifiers_enforce_rfc_size_checks_even_when_hashes_line_up() -> None:
    # Roots crafted to match the hashing: only the sn checks of §2.1.3.2 / §2.1.4.2 refuse.
    leaf, x = merkle.leaf_hash(b"leaf"), merkle.leaf_hash(b"x")
    assert not merkle.verify_inclusion(leaf, 0, 1, [x], merkle.node_hash(x, leaf))
    assert not merkle.verify_inclusion(leaf, 0, 2, [], leaf)
    assert not merkle.verify_consistency(1, 3, leaf, merkle.node_hash(leaf, x), [x])


# --- Consistency ------------------------------------------------------------------------


def test_consistency_proofs_match_reference_and_verify(store: dict[NodeKey, bytes]) -> None:
    for new in range(MAX_CONSISTENCY + 1):
        new_root = ref_mth(DATA[:new])
        for old in range(new + 1):
            needed = merkle.needed_for_consistency(old, new)
            nodes = Recording(store, needed)
            proof = merkle.consistency_proof(old, new, nodes)
            expected = [] if old in (0, new) else ref_subproof(old, DATA[:new], True)
            assert proof == expected
            assert nodes.read == needed
            old_root = ref_mth(DATA[:old])
            assert merkle.verify_consistency(old, new, old_root, new_root, proof)


def test_consistency_verifier_rejects_tampering(store: dict[NodeKey, bytes]) -> None:
    for new in range(2, MAX_CONSISTENCY + 1):
        new_root = ref_mth(DATA[:new])
        for old in range(1, new):
            old_root = ref_mth(DATA[:old])
            proof = merkle.consistency_proof(old, new, store)
            verify = merkle.verify_consistency
            assert not verify(old, new, flip(old_root), new_root, proof)
            assert not verify(old, new, old_root, flip(new_root), proof)
            assert not verify(new, old, new_root, old_root, proof)
            for i in range(len(proof)):
                bad = proof[:i] + [flip(proof[i], i)] + proof[i + 1 :]
                assert not verify(old, new, old_root, new_root, bad)
            for other_old in (old - 1, old + 1):
                other_root = ref_mth(DATA[:other_old])
                assert not verify(other_old, new, other_root, new_root, proof)
            for other_new in (new - 1, new + 1):
                other_root = ref_mth(DATA[:other_new])
                assert not verify(old, other_new, old_root, other_root, proof)
            assert not verify(old, new, old_root, new_root, proof[:-1])
            assert not verify(old, new, old_root, new_root, proof + [new_root])
            assert not verify(old, new, old_root, new_root, [])


def test_consistency_edge_cases() -> None:
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    verify = merkle.verify_consistency
    assert verify(3, 3, a, a, [])
    assert not verify(3, 3, a, b, [])
    assert not verify(3, 3, a, a, [a])
    assert verify(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    assert not verify(0, 0, a, a, [])
    assert verify(0, 5, merkle.EMPTY_ROOT, a, [])
    assert not verify(0, 5, a, b, [])
    assert not verify(0, 5, merkle.EMPTY_ROOT, a, [b])
    assert not verify(5, 3, a, b, [a])
    assert not verify(-1, 3, a, b, [a])
    assert not verify(1, 2, a, b, [b"short"])
    assert not verify(1, 2, a, b, None)  # type: ignore[arg-type]
    assert not verify(1, 2, "a", b, [b])  # type: ignore[arg-type]


# --- Generators refuse bad arguments ----------------------------------------------------


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (merkle.inclusion_proof, (0, 0, {})),
        (merkle.inclusion_proof, (3, 3, {})),
        (merkle.inclusion_proof, (-1, 3, {})),
        (merkle.inclusion_proof, (0, -1, {})),
        (merkle.consistency_proof, (4, 3, {})),
        (merkle.consistency_proof, (-1, 3, {})),
        (merkle.consistency_proof, (0, -1, {})),
        (merkle.root, (-1, {})),
        (merkle.needed_for_root, (-1,)),
        (merkle.needed_for_inclusion, (5, 5)),
        (merkle.needed_for_consistency, (6, 5)),
        (merkle.perfect_subtrees, (3, 2)),
        (merkle.perfect_subtrees, (1, 3)),
    ],
)
def test_generators_raise_value_error_on_bad_arguments(
    call: Callable[..., object], args: tuple[object, ...]
) -> None:
    with pytest.raises(ValueError):
        call(*args)


def test_missing_stored_node_raises_key_error() -> None:
    with pytest.raises(KeyError):
        merkle.root(3, {(1, 0): merkle.EMPTY_ROOT})
