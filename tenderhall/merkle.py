"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and verifiers; no I/O.

Storage model: the hash of every *perfect* subtree (complete and aligned) is stored once,
keyed ``(level, index)``; level 0 is the leaves and node ``(l, i)`` covers leaves
``[i * 2**l, (i + 1) * 2**l)``. Every range the RFC 9162 recursion reaches is a right fold
of such nodes, so the ``needed_for_*`` functions name the keys a computation reads (fetch
them in one query) and ``root`` / ``inclusion_proof`` / ``consistency_proof`` then compute
from that mapping, raising ``KeyError`` if a needed node is missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

NodeKey = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # leaves [start, end)

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) per RFC 9162 §2.1.1


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = HASH(0x00 || d) (RFC 9162 §2.1.1); the prefix separates leaves from nodes."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || left || right), the interior node hash of RFC 9162 §2.1.1."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): the RFC 9162 §2.1.1 split point k."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (RFC 9162 §2.1.1), iteratively in O(n).

    Pairing level by level and promoting an odd last node unchanged gives the same tree
    as splitting at the largest power of two below n.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def completed_nodes(
    leaf_index: int, leaf_hash: bytes, get: Callable[[int, int], bytes]
) -> list[tuple[int, int, bytes]]:
    """The (level, index, hash) of every perfect subtree completed by appending this leaf.

    The leaf itself comes first (level 0), then each ancestor it completes, lowest first.
    ``get(level, index)`` is called only for left siblings, which were stored earlier.
    Raises ValueError for a negative index or a hash that is not 32 bytes.
    """
    if leaf_index < 0:
        raise ValueError(f"leaf index must be >= 0, got {leaf_index}")
    if len(leaf_hash) != HASH_SIZE:
        raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
    level, index, current = 0, leaf_index, bytes(leaf_hash)
    out = [(level, index, current)]
    # A node (l, i) completes when its right child (l-1, 2i+1) does: i.e. while index is odd.
    while index % 2 == 1:
        current = node_hash(get(level, index - 1), current)
        level, index = level + 1, index // 2
        out.append((level, index, current))
    return out


def perfect_subtrees(start: int, end: int) -> list[NodeKey]:
    """The stored perfect subtrees whose right fold is MTH(D[start:end]), largest first.

    Splitting at the largest power of two below n (RFC 9162 §2.1.1) peels off perfect
    subtrees of sizes given by the binary digits of n = end - start. They are aligned,
    hence stored, when start is a multiple of the largest power of two <= n, which holds
    for every range the RFC recursion visits from [0, size). Otherwise, or for
    start < 0 or end < start, raises ValueError. An empty range gives [].
    """
    if start < 0 or end < start:
        raise ValueError(f"invalid leaf range [{start}, {end})")
    n = end - start
    if n and start % (1 << (n.bit_length() - 1)):
        raise ValueError(f"leaf range [{start}, {end}) is not aligned to stored subtrees")
    out: list[NodeKey] = []
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


def subtree_root(start: int, end: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    """MTH(D[start:end]) (RFC 9162 §2.1.1) from stored perfect nodes; see perfect_subtrees."""
    keys = perfect_subtrees(start, end)
    if not keys:
        return EMPTY_ROOT
    current = nodes[keys[-1]]
    for key in reversed(keys[:-1]):
        current = node_hash(nodes[key], current)
    return current


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")


def _inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose MTHs make PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), leaf first."""
    _check_size(size)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    start, end, out = 0, size, []
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:  # PATH(m, D[0:k]) : MTH(D[k:n])
            out.append((start + k, end))
            end = start + k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            out.append((start, start + k))
            start += k
    return out[::-1]  # the recursion appends on the way back up


def _consistency_ranges(old: int, new: int) -> list[Range]:
    """The ranges whose MTHs make PROOF(old, D[0:new]) (RFC 9162 §2.1.4.1), in proof order.

    Empty when old == 0 or old == new: every tree extends the empty tree and itself.
    """
    _check_size(old)
    _check_size(new)
    if old > new:
        raise ValueError(f"old size {old} is larger than new size {new}")
    if old in (0, new):
        return []
    start, end, m, complete, out = 0, new, old, True, []
    while m != end - start:
        k = _split(end - start)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            out.append((start + k, end))
            end = start + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            out.append((start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        out.append((start, end))
    return out[::-1]


def _needed(ranges: list[Range]) -> set[NodeKey]:
    return {key for start, end in ranges for key in perfect_subtrees(start, end)}


def needed_for_root(size: int) -> set[NodeKey]:
    """The stored node keys root(size, ...) reads. Raises ValueError if size < 0."""
    _check_size(size)
    return set(perfect_subtrees(0, size))


def needed_for_inclusion(index: int, size: int) -> set[NodeKey]:
    """The keys inclusion_proof(index, size, ...) reads; ValueError as inclusion_proof."""
    return _needed(_inclusion_ranges(index, size))


def needed_for_consistency(old: int, new: int) -> set[NodeKey]:
    """The keys consistency_proof(old, new, ...) reads; ValueError as consistency_proof."""
    return _needed(_consistency_ranges(old, new))


def root(size: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    """MTH(D[0:size]); EMPTY_ROOT for size 0. Raises ValueError if size < 0."""
    _check_size(size)
    return subtree_root(0, size, nodes)


def inclusion_proof(index: int, size: int, nodes: Mapping[NodeKey, bytes]) -> list[bytes]:
    """PATH(index, D[0:size]) per RFC 9162 §2.1.3.1, leaf-side sibling first.

    Raises ValueError if size < 0 or index is not in [0, size).
    """
    return [subtree_root(s, e, nodes) for s, e in _inclusion_ranges(index, size)]


def consistency_proof(old: int, new: int, nodes: Mapping[NodeKey, bytes]) -> list[bytes]:
    """PROOF(old, D[0:new]) per RFC 9162 §2.1.4.1; [] when old is 0 or equals new.

    Raises ValueError if a size is negative or old > new.
    """
    return [subtree_root(s, e, nodes) for s, e in _consistency_ranges(old, new)]


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_path(value: object) -> bool:
    return isinstance(value, Sequence) and all(_is_hash(p) for p in value)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether proof shows leaf_hash at index in the tree (size, root); RFC 9162 §2.1.3.2.

    Never raises: malformed input is simply not a proof. The size is bound only through
    the shape of the path, so it must come from a signed tree head alongside root.
    """
    if not (_is_size(index) and _is_size(size) and _is_hash(leaf_hash) and _is_hash(root)):
        return False
    if index >= size or not _is_path(proof):
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:  # the path is longer than the tree is deep
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:  # skip levels where this node has no right sibling
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether proof shows tree (new_size, new_root) extends (old_size, old_root).

    RFC 9162 §2.1.4.2 for 0 < old < new. Equal sizes need an empty proof and equal roots;
    old size 0 needs an empty proof and old_root == EMPTY_ROOT; old > new is False.
    Never raises.
    """
    if not (_is_size(old_size) and _is_size(new_size)):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root)) or old_size > new_size:
        return False
    if not _is_path(proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root and (old_size > 0 or old_root == EMPTY_ROOT)
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:  # step 1: an empty path proves nothing
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # old tree is perfect: its root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:  # step 3: levels already complete in the old tree; path[0] covers them
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # the path is longer than the new tree is deep
            return False
        if fn & 1 or fn == sn:  # c is a left sibling, inside both trees
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:  # c is a right sibling that only the new tree has
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
