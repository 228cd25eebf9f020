"""The transparency log: an append-only RFC 9162 Merkle tree in PostgreSQL with signed tree heads.

Each entry is the canonical JSON ``{"kind", "index", "time", "body"}``; its leaf hash is
``SHA-256(0x00 || entry bytes)`` (RFC 9162 §2.1.1) and ``log_entries.body`` keeps exactly those
bytes. Appending stores the perfect subtrees the new leaf completes in ``log_nodes`` and signs a
tree head for the new size, so every size 1..n has a signed head and any root or proof needs only
O(log n) stored nodes. The signed message of a tree head is::

    canonical_json({"log": "tenderhall", "tree_size": n, "root_hash": hex,
                    "timestamp": "YYYY-MM-DDTHH:MM:SS.mmmZ", "key_id": sha256(SPKI DER) hex})

JSON encodings: hashes are lowercase hex, signatures unpadded base64url.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tenderhall import db, merkle
from tenderhall.canonical import b64url, b64url_decode, canonical_json
from tenderhall.platform_key import PlatformKey, load_public_pem, verify_with

LOG_NAME = "tenderhall"
MAX_PAGE = 100
# A verify report lists this many problems; the first one is what matters, the rest is context.
MAX_PROBLEMS = 20


class LogError(ValueError):
    """A request the log cannot answer (an index or size outside the log); message for people."""


# --- values -------------------------------------------------------------------------------


def iso_utc(moment: datetime) -> str:
    """The log's timestamp form: UTC, millisecond precision, 'Z' suffix."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now_ms() -> datetime:
    # Truncated to milliseconds so that the stored timestamptz gives back the signed string.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def tree_head_message(tree_size: int, root_hash: bytes, timestamp: str, key_id: str) -> bytes:
    """The exact bytes the platform signs for a tree head."""
    return canonical_json({"log": LOG_NAME, "tree_size": tree_size, "root_hash": root_hash.hex(),
                           "timestamp": timestamp, "key_id": key_id})


@dataclass(frozen=True)
class TreeHead:
    """A signed tree head (STH): the root of the first `tree_size` entries, signed by the platform."""

    tree_size: int
    root_hash: bytes
    timestamp: str
    signature: bytes
    key_id: str

    def message(self) -> bytes:
        return tree_head_message(self.tree_size, self.root_hash, self.timestamp, self.key_id)

    def as_json(self) -> dict[str, Any]:
        return {"log": LOG_NAME, "tree_size": self.tree_size, "root_hash": self.root_hash.hex(),
                "timestamp": self.timestamp, "key_id": self.key_id, "signature": b64url(self.signature)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TreeHead":
        """Parse `as_json()` output; ValueError (or KeyError/TypeError) on anything malformed."""
        size = data["tree_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("tree_size must be a non-negative integer")
        if data.get("log", LOG_NAME) != LOG_NAME:
            raise ValueError("not a tenderhall tree head")
        root = bytes.fromhex(data["root_hash"])
        if len(root) != merkle.HASH_SIZE:
            raise ValueError("root_hash must be 32 bytes")
        if not isinstance(data["timestamp"], str) or not isinstance(data["key_id"], str):
            raise ValueError("timestamp and key_id must be strings")
        return cls(size, root, data["timestamp"], b64url_decode(data["signature"]), data["key_id"])

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """The signature is the given key's, over this head, and the key id names that key."""
        return self.key_id == key_id_of(public_key) and verify_with(public_key, self.signature, self.message())


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The key id the platform uses: SHA-256 of the SubjectPublicKeyInfo DER, hex."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class LogEntry:
    index: int
    kind: str
    canonical: str  # exactly the text whose UTF-8 bytes were hashed
    leaf_hash: bytes
    created_at: datetime

    @property
    def entry(self) -> dict[str, Any]:
        return json.loads(self.canonical)

    def as_json(self) -> dict[str, Any]:
        entry = self.entry
        return {"index": self.index, "kind": self.kind, "time": entry.get("time"),
                "leaf_hash": self.leaf_hash.hex(), "canonical": self.canonical, "entry": entry}


@dataclass(frozen=True)
class AppendResult:
    """What an append gives its caller: enough for a receipt that anyone can check offline."""

    index: int
    leaf_hash: bytes
    entry: dict[str, Any]
    tree_head: TreeHead
    inclusion_proof: list[bytes]

    @property
    def entry_bytes(self) -> bytes:
        return canonical_json(self.entry)

    def receipt_json(self) -> dict[str, Any]:
        """The log part of a receipt; check it with `verify_receipt_proof`."""
        return {"index": self.index, "leaf_hash": self.leaf_hash.hex(), "entry": self.entry,
                "tree_head": self.tree_head.as_json(), "inclusion_proof": [p.hex() for p in self.inclusion_proof]}


# --- SQL ----------------------------------------------------------------------------------

_NEXT_INDEX = """
SELECT coalesce(max(idx) + 1, 0) AS next, current_setting('transaction_isolation') AS isolation
FROM log_entries
"""
_FETCH_NODES = """
SELECT level, idx, hash FROM log_nodes
WHERE (level, idx) IN (SELECT * FROM unnest($1::smallint[], $2::bigint[]))
"""
_INSERT_ENTRY = "INSERT INTO log_entries (idx, kind, body, leaf_hash) VALUES ($1, $2, $3, $4)"
_INSERT_NODES = """
INSERT INTO log_nodes (level, idx, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])
"""
_INSERT_HEAD = """
INSERT INTO log_tree_heads (tree_size, root_hash, signed_at, signature, key_id) VALUES ($1, $2, $3, $4, $5)
"""
_LATEST_HEAD = "SELECT * FROM log_tree_heads ORDER BY tree_size DESC LIMIT 1"
_HEAD = "SELECT * FROM log_tree_heads WHERE tree_size = $1"
_ENTRY = "SELECT idx, kind, body, leaf_hash, created_at FROM log_entries WHERE idx = $1"
_ENTRIES = "SELECT idx, kind, body, leaf_hash, created_at FROM log_entries WHERE idx >= $1 ORDER BY idx LIMIT $2"
# verify_log streams: entries by index, nodes in the order appends complete them (by the last
# leaf they cover, then lowest level first), tree heads by size.
_STREAM_ENTRIES = "SELECT idx, body, leaf_hash FROM log_entries ORDER BY idx"
_STREAM_NODES = "SELECT level, idx, hash FROM log_nodes ORDER BY ((idx + 1) << level) - 1, level"
_STREAM_HEADS = "SELECT * FROM log_tree_heads ORDER BY tree_size"


def _head(row: asyncpg.Record) -> TreeHead:
    return TreeHead(row["tree_size"], bytes(row["root_hash"]), iso_utc(row["signed_at"]),
                    bytes(row["signature"]), row["key_id"])


def _entry(row: asyncpg.Record) -> LogEntry:
    return LogEntry(row["idx"], row["kind"], row["body"], bytes(row["leaf_hash"]), row["created_at"])


async def _fetch_nodes(conn: asyncpg.Connection, keys: set[merkle.NodeKey]) -> dict[merkle.NodeKey, bytes]:
    if not keys:
        return {}
    ordered = sorted(keys)
    rows = await conn.fetch(_FETCH_NODES, [k[0] for k in ordered], [k[1] for k in ordered])
    return {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}


# --- append -------------------------------------------------------------------------------


async def append_entry(conn: asyncpg.Connection, signer: PlatformKey, kind: str, body: dict[str, Any]) -> AppendResult:
    """Append one entry inside the caller's (READ COMMITTED) transaction and sign the new head.

    Takes the platform's order lock, so appends (and events) are numbered in commit order;
    the entry exists exactly when the caller's transaction commits. Six queries whatever
    the log size. Raises LogError for an empty kind, a non-dict body or a transaction that
    is not READ COMMITTED (its snapshot would predate the lock and miss the last entry),
    CanonicalJSONError for a body canonical JSON cannot hold (floats, …).
    """
    if not isinstance(kind, str) or not kind or len(kind) > 100:
        raise LogError("an entry kind is a string of 1 to 100 characters")
    if not isinstance(body, dict):
        raise LogError("an entry body is a JSON object")
    if not conn.is_in_transaction():
        raise LogError("append_entry runs inside the caller's transaction")
    await db.take_order_lock(conn)
    row = await conn.fetchrow(_NEXT_INDEX)
    if row["isolation"] != "read committed":
        raise LogError(f"append_entry needs a READ COMMITTED transaction, not {row['isolation']}")
    index: int = row["next"]
    size = index + 1
    moment = _now_ms()
    timestamp = iso_utc(moment)
    entry = {"kind": kind, "index": index, "time": timestamp, "body": body}
    data = canonical_json(entry)
    leaf = merkle.leaf_hash(data)

    # The nodes this leaf completes are (l, index >> l) while index >> (l-1) is odd; their
    # left siblings were stored by earlier appends. Everything else the new root and the
    # inclusion proof read is older too, so one query fetches all of it.
    new_keys, siblings = {(0, index)}, set()
    level, i = 0, index
    while i % 2 == 1:
        siblings.add((level, i - 1))
        level, i = level + 1, i // 2
        new_keys.add((level, i))
    wanted = siblings | ((merkle.needed_for_root(size) | merkle.needed_for_inclusion(index, size)) - new_keys)
    nodes = await _fetch_nodes(conn, wanted)
    completed = merkle.completed_nodes(index, leaf, lambda lv, ix: nodes[(lv, ix)])
    for lv, ix, h in completed:
        nodes[(lv, ix)] = h
    root_hash = merkle.root(size, nodes)
    proof = merkle.inclusion_proof(index, size, nodes)

    await conn.execute(_INSERT_ENTRY, index, kind, data.decode("utf-8"), leaf)
    await conn.execute(_INSERT_NODES, [c[0] for c in completed], [c[1] for c in completed], [c[2] for c in completed])
    signature = signer.sign(tree_head_message(size, root_hash, timestamp, signer.key_id))
    await conn.execute(_INSERT_HEAD, size, root_hash, moment, signature, signer.key_id)
    head = TreeHead(size, root_hash, timestamp, signature, signer.key_id)
    return AppendResult(index, leaf, entry, head, proof)


# --- reads --------------------------------------------------------------------------------


async def latest_tree_head(conn: asyncpg.Connection) -> TreeHead | None:
    """The newest signed tree head; None while the log is empty."""
    row = await conn.fetchrow(_LATEST_HEAD)
    return _head(row) if row else None


async def tree_head(conn: asyncpg.Connection, size: int) -> TreeHead | None:
    """The signed head for exactly `size` entries, or None."""
    row = await conn.fetchrow(_HEAD, size)
    return _head(row) if row else None


async def entry(conn: asyncpg.Connection, index: int) -> LogEntry | None:
    row = await conn.fetchrow(_ENTRY, index)
    return _entry(row) if row else None


async def entries(conn: asyncpg.Connection, start: int = 0, limit: int = MAX_PAGE) -> list[LogEntry]:
    """Entries from index `start` in order, at most `limit` (≤ MAX_PAGE); LogError otherwise."""
    if start < 0 or not 1 <= limit <= MAX_PAGE:
        raise LogError(f"start must be ≥ 0 and limit between 1 and {MAX_PAGE}")
    return [_entry(r) for r in await conn.fetch(_ENTRIES, start, limit)]


async def current_size(conn: asyncpg.Connection) -> int:
    head = await latest_tree_head(conn)
    return head.tree_size if head else 0


async def inclusion_proof(conn: asyncpg.Connection, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1); LogError unless 0 ≤ index < size ≤ log size."""
    current = await current_size(conn)
    if size < 1 or size > current:
        raise LogError(f"size must be between 1 and the log size {current}, got {size}")
    if not 0 <= index < size:
        raise LogError(f"index must be between 0 and {size - 1} for a tree of size {size}, got {index}")
    nodes = await _fetch_nodes(conn, merkle.needed_for_inclusion(index, size))
    return merkle.inclusion_proof(index, size, nodes)


async def consistency_proof(conn: asyncpg.Connection, old: int, new: int) -> list[bytes]:
    """PROOF(old, D[0:new]) (RFC 9162 §2.1.4.1); LogError unless 1 ≤ old ≤ new ≤ log size."""
    current = await current_size(conn)
    if new < 1 or new > current:
        raise LogError(f"new must be between 1 and the log size {current}, got {new}")
    if not 1 <= old <= new:
        raise LogError(f"old must be between 1 and new ({new}), got {old}")
    nodes = await _fetch_nodes(conn, merkle.needed_for_consistency(old, new))
    return merkle.consistency_proof(old, new, nodes)


# --- offline verification -----------------------------------------------------------------


def _as_hash(item: bytes | str) -> bytes:
    return bytes.fromhex(item) if isinstance(item, str) else bytes(item)


def _as_public_key(key: Ed25519PublicKey | str | bytes) -> Ed25519PublicKey:
    return key if isinstance(key, Ed25519PublicKey) else load_public_pem(key)


def verify_receipt_proof(
    entry_bytes: bytes,
    index: int,
    tree_head_json: Mapping[str, Any],
    proof: Sequence[bytes | str],
    platform_public_key: Ed25519PublicKey | str | bytes,
) -> bool:
    """Whether `entry_bytes` is entry `index` of the log whose head the platform signed.

    Checks the tree head's Ed25519 signature and key id against the platform key, that the
    entry (if it is a log entry object) names the same index, and the RFC 9162 inclusion
    proof (hashes as bytes or hex). Never raises: malformed input is simply False.
    """
    try:
        key = _as_public_key(platform_public_key)
        head = TreeHead.from_json(tree_head_json)
        if not head.verify(key):
            return False
        decoded = json.loads(entry_bytes)
        if isinstance(decoded, dict) and "index" in decoded and decoded["index"] != index:
            return False
        path = [_as_hash(p) for p in proof]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return False
    return merkle.verify_inclusion(merkle.leaf_hash(entry_bytes), index, head.tree_size, path, head.root_hash)


# --- full audit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of `verify_log`: problems in the order found (the first one names the fault)."""

    entries: int
    tree_heads: int
    problems: tuple[str, ...]
    first_bad_entry: int | None
    more_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        if self.ok:
            return [f"OK: {self.entries} entries, {self.tree_heads} signed tree heads; every leaf, node, "
                    "signature and consistency proof checks out"]
        out = [f"FAILED: {self.entries} entries, {self.tree_heads} signed tree heads checked"]
        if self.first_bad_entry is not None:
            out.append(f"first bad entry: {self.first_bad_entry}")
        out += [f"  {p}" for p in self.problems]
        if self.more_problems:
            out.append(f"  … and {self.more_problems} more problems")
        return out


@dataclass
class _Audit:
    problems: list[str] = field(default_factory=list)
    more: int = 0
    first_bad_entry: int | None = None

    def problem(self, text: str, entry_index: int | None = None) -> None:
        if entry_index is not None and self.first_bad_entry is None:
            self.first_bad_entry = entry_index
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.more += 1


class _Stream:
    """A server-side cursor read in batches, with one row of look-ahead."""

    def __init__(self, cursor: Any, batch: int = 500) -> None:
        self.cursor, self.batch, self.buffer, self.done = cursor, batch, [], False

    async def peek(self) -> asyncpg.Record | None:
        if not self.buffer and not self.done:
            self.buffer = list(reversed(await self.cursor.fetch(self.batch)))
            self.done = len(self.buffer) < self.batch
        return self.buffer[-1] if self.buffer else None

    async def pop(self) -> asyncpg.Record | None:
        row = await self.peek()
        if row is not None:
            self.buffer.pop()
        return row


def _fold(frontier: list[tuple[int, int, bytes]]) -> bytes:
    """MTH of the tree whose maximal perfect subtrees are `frontier` (left to right)."""
    if not frontier:
        return merkle.EMPTY_ROOT
    current = frontier[-1][2]
    for _, _, h in reversed(frontier[:-1]):
        current = merkle.node_hash(h, current)
    return current


async def verify_log(conn: asyncpg.Connection, public_key: Ed25519PublicKey | str | bytes) -> VerifyReport:
    """Recompute the whole log from the stored entry bytes and check everything stored against it.

    One repeatable-read snapshot; entries, nodes and heads are streamed with cursors and the
    recomputed tree is kept as its O(log n) frontier, so memory stays flat. Checks, in entry
    order: indexes are 0..n-1 without gaps; each stored body hashes to its stored leaf hash;
    every perfect node equals the stored log_nodes row (level 0 included, so a body rewritten
    together with its leaf hash is caught there while log_nodes is intact); every size has a
    signed head whose key id and signature verify and whose root equals the recomputed root;
    consecutive heads are consistent (a proof generated from the recomputed tree verifies
    against both signed roots).

    What the first problem says, by tampering:
    - body edited: "entry i: stored body does not hash to its leaf hash".
    - body and leaf hash rewritten: "entry i: leaf hash differs from stored tree node (0, i)".
    - body, leaf hash and log_nodes all rewritten: the signed heads still commit to the old
      data, so "tree head s: root does not match entries 0..s-1; first differing entry k",
      where k = s - 1 when head s - 1 verified (every append signs a head, so this is exact
      unless heads were deleted, in which case the report names the range of candidates).
    """
    key = _as_public_key(public_key)
    key_id = key_id_of(key)
    audit = _Audit()
    frontier: list[tuple[int, int, bytes]] = []
    # Nodes of the recomputed tree a consistency proof from the previous head may read: that
    # head's frontier plus everything completed since (see _consistency_ranges in merkle.py).
    recent: dict[merkle.NodeKey, bytes] = {}
    prev_head: TreeHead | None = None
    last_good_size = 0  # the largest size whose signed root matched the recomputed root
    first_node_mismatch: int | None = None
    heads_checked = 0
    count = 0

    async with conn.transaction(isolation="repeatable_read", readonly=True):
        entries_s = _Stream(await conn.cursor(_STREAM_ENTRIES))
        nodes_s = _Stream(await conn.cursor(_STREAM_NODES))
        heads_s = _Stream(await conn.cursor(_STREAM_HEADS))

        async def check_heads_at(size: int) -> None:
            nonlocal prev_head, last_good_size, heads_checked
            seen = False
            while (row := await heads_s.peek()) is not None and row["tree_size"] <= size:
                await heads_s.pop()
                head = _head(row)
                heads_checked += 1
                if head.tree_size < size:  # only a stray size-0 head can be behind
                    if head.root_hash != merkle.EMPTY_ROOT:
                        audit.problem(f"tree head {head.tree_size}: root is not the empty tree's")
                    continue
                seen = True
                if head.key_id != key_id:
                    audit.problem(f"tree head {size}: signed by key {head.key_id[:16]}…, not the given key {key_id[:16]}…")
                elif not verify_with(key, head.signature, head.message()):
                    audit.problem(f"tree head {size}: signature does not verify")
                recomputed = _fold(frontier)
                if head.root_hash != recomputed:
                    if first_node_mismatch is not None:
                        hint = f"first differing entry {first_node_mismatch}"
                        bad = first_node_mismatch
                    elif last_good_size == size - 1:
                        hint, bad = f"first differing entry {size - 1}", size - 1
                    else:
                        hint = f"first differing entry is one of {last_good_size}..{size - 1}"
                        bad = last_good_size
                    audit.problem(f"tree head {size}: root does not match entries 0..{size - 1}; {hint}", bad)
                else:
                    last_good_size = size
                    if prev_head is not None:
                        try:
                            proof = merkle.consistency_proof(prev_head.tree_size, size, recent)
                        except KeyError as exc:  # would be a bug in this function, not the log
                            audit.problem(f"tree heads {prev_head.tree_size}→{size}: cannot build proof ({exc})")
                        else:
                            if not merkle.verify_consistency(prev_head.tree_size, size, prev_head.root_hash,
                                                             head.root_hash, proof):
                                audit.problem(f"tree heads {prev_head.tree_size}→{size}: not consistent")
                prev_head = head
                recent.clear()
                recent.update({(lv, ix): h for lv, ix, h in frontier})
            if not seen and size > 0:
                audit.problem(f"tree head {size} is missing (every append signs one)")

        await check_heads_at(0)
        while (row := await entries_s.pop()) is not None:
            index = row["idx"]
            if index != count:
                audit.problem(f"entry {count} is missing (next stored entry is {index})", count)
                break  # the tree cannot be recomputed past a gap
            data = row["body"].encode("utf-8")
            leaf = merkle.leaf_hash(data)
            if leaf != bytes(row["leaf_hash"]):
                audit.problem(f"entry {index}: stored body does not hash to its leaf hash", index)
            try:
                decoded = json.loads(data)
                if canonical_json(decoded) != data or decoded.get("index") != index:
                    audit.problem(f"entry {index}: body is not the canonical entry for index {index}", index)
            except (ValueError, AttributeError):
                audit.problem(f"entry {index}: body is not canonical JSON", index)

            completed = [(0, index, leaf)]
            frontier.append((0, index, leaf))
            while len(frontier) >= 2 and frontier[-1][0] == frontier[-2][0]:
                (lv, ix, right), (_, _, left) = frontier.pop(), frontier.pop()
                node = (lv + 1, ix // 2, merkle.node_hash(left, right))
                frontier.append(node)
                completed.append(node)
            for lv, ix, h in completed:
                recent[(lv, ix)] = h
                first_leaf, last_leaf = ix << lv, ((ix + 1) << lv) - 1
                stored = await nodes_s.peek()
                while stored is not None and (((stored["idx"] + 1) << stored["level"]) - 1, stored["level"]) < (last_leaf, lv):
                    await nodes_s.pop()
                    audit.problem(f"tree node ({stored['level']}, {stored['idx']}) is stored but no entry completes it")
                    stored = await nodes_s.peek()
                if stored is None or (stored["level"], stored["idx"]) != (lv, ix):
                    audit.problem(f"tree node ({lv}, {ix}) for entries {first_leaf}..{last_leaf} is missing", index)
                    continue
                await nodes_s.pop()
                if bytes(stored["hash"]) != h:
                    if first_node_mismatch is None:
                        first_node_mismatch = index
                    what = (f"entry {index}: leaf hash differs from stored tree node (0, {index})" if lv == 0 else
                            f"tree node ({lv}, {ix}) does not match entries {first_leaf}..{last_leaf}")
                    audit.problem(what, index)
            count += 1
            await check_heads_at(count)

        while (stored := await nodes_s.pop()) is not None:
            audit.problem(f"tree node ({stored['level']}, {stored['idx']}) lies beyond the last entry {count - 1}")
        while (row := await heads_s.pop()) is not None:
            heads_checked += 1
            audit.problem(f"tree head {row['tree_size']} covers more entries than the log holds ({count})")

    return VerifyReport(count, heads_checked, tuple(audit.problems), audit.first_bad_entry, audit.more)
