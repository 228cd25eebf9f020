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
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tenderhall import db, merkle
from tenderhall.canonical import b64url, b64url_decode, canonical_json
from tenderhall.platform_key import PlatformKey, as_public_key, key_id_of, verify_with

LOG_NAME = "tenderhall"
MAX_PAGE = 100


class LogError(ValueError):
    """A request the log cannot answer (an index or size outside the log); message for people."""


# --- values -------------------------------------------------------------------------------


def iso_utc(moment: datetime) -> str:
    """The log's timestamp form: UTC, millisecond precision, 'Z' suffix."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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

# The time is the database's clock, as everywhere else, read after the order lock so that
# entry times never go backwards; truncated to milliseconds so that the stored timestamptz
# gives back the signed string.
_NEXT_INDEX = """
SELECT coalesce(max(idx) + 1, 0) AS next, current_setting('transaction_isolation') AS isolation,
       date_trunc('milliseconds', clock_timestamp()) AS now
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
# The full audit (audit.verify_log) streams: entries by index, nodes in the order appends
# complete them (by the last leaf they cover, then lowest level first), tree heads by size.
_STREAM_ENTRIES = "SELECT idx, body, leaf_hash FROM log_entries ORDER BY idx"
_STREAM_NODES = "SELECT level, idx, hash FROM log_nodes ORDER BY ((idx + 1) << level) - 1, level"
_STREAM_HEADS = "SELECT * FROM log_tree_heads ORDER BY tree_size"


def head_from_row(row: asyncpg.Record) -> TreeHead:
    """The TreeHead a log_tree_heads row holds."""
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


def _check_item(kind: Any, body: Any) -> None:
    if not isinstance(kind, str) or not kind or len(kind) > 100:
        raise LogError("an entry kind is a string of 1 to 100 characters")
    if not isinstance(body, dict):
        raise LogError("an entry body is a JSON object")


async def append_entry(conn: asyncpg.Connection, signer: PlatformKey, kind: str, body: dict[str, Any]) -> AppendResult:
    """Append one entry inside the caller's (READ COMMITTED) transaction and sign the new head.

    Takes the platform's order lock, so appends (and events) are numbered in commit order;
    the entry exists exactly when the caller's transaction commits. Six queries whatever
    the log size. Raises LogError for an empty kind, a non-dict body or a transaction that
    is not READ COMMITTED (its snapshot would predate the lock and miss the last entry),
    CanonicalJSONError for a body canonical JSON cannot hold (floats, …).
    """
    return (await _append(conn, signer, [(kind, body)]))[0]


async def append_entries(conn: asyncpg.Connection, signer: PlatformKey,
                         items: Sequence[tuple[str, dict[str, Any]]]) -> list[AppendResult]:
    """Append several entries at once: the same entries, nodes and signed heads as one
    append_entry each, in six queries for the whole batch.

    For acts that come in hundreds (a read-out of every bid, a batch of opened bids). The same
    errors as append_entry; an empty batch is refused.
    """
    if not items:
        raise LogError("append_entries needs at least one entry")
    return await _append(conn, signer, items)


async def _append(conn: asyncpg.Connection, signer: PlatformKey,
                  items: Sequence[tuple[str, dict[str, Any]]]) -> list[AppendResult]:
    for kind, body in items:
        _check_item(kind, body)
    if not conn.is_in_transaction():
        raise LogError("append_entry runs inside the caller's transaction")
    await db.take_order_lock(conn)
    row = await conn.fetchrow(_NEXT_INDEX)
    if row["isolation"] != "read committed":
        raise LogError(f"append_entry needs a READ COMMITTED transaction, not {row['isolation']}")
    first: int = row["next"]
    size = first + len(items)
    moment: datetime = row["now"]
    timestamp = iso_utc(moment)
    entries_out = [{"kind": kind, "index": first + n, "time": timestamp, "body": body}
                   for n, (kind, body) in enumerate(items)]
    datas = [canonical_json(e) for e in entries_out]
    leaves = [merkle.leaf_hash(d) for d in datas]

    # The nodes a leaf completes are (l, index >> l) while index >> (l-1) is odd; their left
    # siblings were stored by earlier appends or are completed earlier in this batch.
    # Everything else the new root and the inclusion proofs read is older too, so one query
    # fetches all of it.
    new_keys: set[merkle.NodeKey] = set()
    siblings: set[merkle.NodeKey] = set()
    for index in range(first, size):
        new_keys.add((0, index))
        level, i = 0, index
        while i % 2 == 1:
            siblings.add((level, i - 1))
            level, i = level + 1, i // 2
            new_keys.add((level, i))
    wanted = set(siblings)
    for index in range(first, size):
        wanted |= merkle.needed_for_root(index + 1) | merkle.needed_for_inclusion(index, index + 1)
    nodes = await _fetch_nodes(conn, wanted - new_keys)
    # Every entry gets its own signed head (size index + 1), exactly as if appended alone, so
    # the log's invariant holds: every size has a head (audit.verify_log checks it).
    completed: list[tuple[int, int, bytes]] = []
    results: list[AppendResult] = []
    heads: list[tuple[int, bytes, datetime, bytes, str]] = []
    for n, index in enumerate(range(first, size)):
        done = merkle.completed_nodes(index, leaves[n], lambda lv, ix: nodes[(lv, ix)])
        for lv, ix, h in done:
            nodes[(lv, ix)] = h
        completed.extend(done)
        root_hash = merkle.root(index + 1, nodes)
        signature = signer.sign(tree_head_message(index + 1, root_hash, timestamp, signer.key_id))
        heads.append((index + 1, root_hash, moment, signature, signer.key_id))
        head = TreeHead(index + 1, root_hash, timestamp, signature, signer.key_id)
        results.append(AppendResult(index, leaves[n], entries_out[n], head,
                                    merkle.inclusion_proof(index, index + 1, nodes)))

    await conn.executemany(_INSERT_ENTRY, [(first + n, items[n][0], d.decode("utf-8"), leaves[n])
                                           for n, d in enumerate(datas)])
    await conn.execute(_INSERT_NODES, [c[0] for c in completed], [c[1] for c in completed], [c[2] for c in completed])
    await conn.executemany(_INSERT_HEAD, heads)
    return results


# --- reads --------------------------------------------------------------------------------


async def latest_tree_head(conn: asyncpg.Connection) -> TreeHead | None:
    """The newest signed tree head; None while the log is empty."""
    row = await conn.fetchrow(_LATEST_HEAD)
    return head_from_row(row) if row else None


async def tree_head(conn: asyncpg.Connection, size: int) -> TreeHead | None:
    """The signed head for exactly `size` entries, or None."""
    row = await conn.fetchrow(_HEAD, size)
    return head_from_row(row) if row else None


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
        key = as_public_key(platform_public_key)
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


# --- streams for the full audit -----------------------------------------------------------
# Server-side cursors: call them inside a transaction (audit.verify_log takes one snapshot).


async def entry_cursor(conn: asyncpg.Connection) -> asyncpg.cursor.Cursor:
    """Every entry (idx, body, leaf_hash) by index."""
    return await conn.cursor(_STREAM_ENTRIES)


async def node_cursor(conn: asyncpg.Connection) -> asyncpg.cursor.Cursor:
    """Every stored tree node (level, idx, hash) in the order appends complete them."""
    return await conn.cursor(_STREAM_NODES)


async def tree_head_cursor(conn: asyncpg.Connection) -> asyncpg.cursor.Cursor:
    """Every signed tree head row by size (read them with head_from_row)."""
    return await conn.cursor(_STREAM_HEADS)
