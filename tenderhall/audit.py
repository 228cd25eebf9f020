"""Checking the transparency log: recompute it and check every signed tree head (`tenderhall audit verify`)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tenderhall import db, log, merkle
from tenderhall.canonical import canonical_json
from tenderhall.log import TreeHead
from tenderhall.platform_key import as_public_key, key_id_of, load_public_pem, verify_with

# A verify report lists this many problems; the first one is what matters, the rest is context.
MAX_PROBLEMS = 20


class AuditError(RuntimeError):
    """The audit cannot run (no key to check against, no database); message for people."""


# --- recomputing the whole log ------------------------------------------------------------


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
    key = as_public_key(public_key)
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
        entries_s = _Stream(await log.entry_cursor(conn))
        nodes_s = _Stream(await log.node_cursor(conn))
        heads_s = _Stream(await log.tree_head_cursor(conn))

        async def check_heads_at(size: int) -> None:
            nonlocal prev_head, last_good_size, heads_checked
            seen = False
            while (row := await heads_s.peek()) is not None and row["tree_size"] <= size:
                await heads_s.pop()
                head = log.head_from_row(row)
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


# --- the `tenderhall audit verify` command ------------------------------------------------


def load_verify_key(settings: Any, public_key: str | bytes | Path | None = None) -> Ed25519PublicKey:
    """The key to check signatures against.

    `public_key` is a PEM text/bytes or a path to a PEM public key (e.g. saved from
    /.well-known/tenderhall-log-key, the independent auditor's case); without it, the public
    half of the platform key in the data directory (never created here). AuditError otherwise.
    """
    if public_key is not None:
        if isinstance(public_key, Path) or (isinstance(public_key, str) and "-----BEGIN" not in public_key):
            path = Path(public_key)
            if not path.exists():
                raise AuditError(f"public key file {path} does not exist")
            public_key = path.read_bytes()
        try:
            return load_public_pem(public_key)
        except ValueError as exc:
            raise AuditError(f"cannot read the public key: {exc}") from None
    path: Path = settings.platform_key_path
    if not path.exists():
        raise AuditError(f"no platform key at {path}; pass the log's public key (PEM) to check against")
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise AuditError(f"cannot read the platform key {path}: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise AuditError(f"{path} does not hold an Ed25519 key")
    return private.public_key()


def print_report(report: VerifyReport, out: TextIO) -> None:
    for line in report.lines():
        print(line, file=out)


def load_known_heads(paths: list[Path]) -> list[TreeHead]:
    """Tree heads kept outside the platform: a JSON file holding a tree head, a receipt or a list of them.

    AuditError for a file that is missing or holds no tree head.
    """
    heads = []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AuditError(f"cannot read tree head file {path}: {exc}") from None
        for item in data if isinstance(data, list) else [data]:
            head = item.get("tree_head", item) if isinstance(item, dict) else item
            try:
                heads.append(TreeHead.from_json(head))
            except (ValueError, KeyError, TypeError) as exc:
                raise AuditError(f"{path}: not a signed tree head ({exc})") from None
    return heads


async def check_known_heads(conn: asyncpg.Connection, public_key: Ed25519PublicKey, heads: list[TreeHead]) -> list[str]:
    """Problems with heads someone kept (e.g. from a receipt): the log must still hold what they signed.

    This is what catches a log cut back to an earlier size, entries and heads deleted together,
    which the log alone cannot show.
    """
    problems = []
    size = await conn.fetchval("SELECT count(*) FROM log_entries")
    for head in heads:
        if not head.verify(public_key):
            problems.append(f"known tree head {head.tree_size}: its signature is not the platform key's")
            continue
        if head.tree_size > size:
            problems.append(f"known tree head {head.tree_size}: the log holds only {size} entries; "
                            f"entries {size}..{head.tree_size - 1} were removed")
            continue
        stored = await conn.fetchval("SELECT root_hash FROM log_tree_heads WHERE tree_size = $1", head.tree_size)
        if stored is None or bytes(stored) != head.root_hash:
            problems.append(f"known tree head {head.tree_size}: the log's root at that size differs; "
                            "its entries were rewritten")
    return problems


async def verify_with_connection(conn: asyncpg.Connection, public_key: Ed25519PublicKey,
                                 out: TextIO | None = None, known_heads: list[TreeHead] | None = None) -> int:
    """Run the audit on an open connection, print the report; 0 when the log is intact, else 1."""
    out = out or sys.stdout
    report = await verify_log(conn, public_key)
    print_report(report, out)
    problems = await check_known_heads(conn, public_key, known_heads or [])
    for problem in problems:
        print(problem, file=out)
    if known_heads and not problems:
        print(f"{len(known_heads)} known tree head(s) match the log", file=out)
    return 0 if report.ok and not problems else 1


async def run_verify(dsn: str, settings: Any, *, public_key: str | bytes | Path | None = None,
                     known_heads: list[Path] | None = None,
                     out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The body of `tenderhall audit verify`: 0 if the whole log verifies, 1 otherwise.

    A missing key or an unreachable database is reported on `err` (stderr) and gives 1.
    """
    err = err or sys.stderr
    try:
        key = load_verify_key(settings, public_key)
        heads = load_known_heads(known_heads or [])
    except AuditError as exc:
        print(f"error: {exc}", file=err)
        return 1
    try:
        conn = await db.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: cannot connect to the database: {exc}", file=err)
        return 1
    try:
        return await verify_with_connection(conn, key, out, heads)
    finally:
        await conn.close()
