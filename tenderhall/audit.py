"""`tenderhall audit verify`: recompute the transparency log and check every signed tree head."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tenderhall import db
from tenderhall.log import TreeHead, VerifyReport, verify_log
from tenderhall.platform_key import load_public_pem


class AuditError(RuntimeError):
    """The audit cannot run (no key to check against, no database); message for people."""


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
