"""`tenderhall audit verify`: recompute the transparency log and check every signed tree head."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tenderhall import db
from tenderhall.log import VerifyReport, verify_log
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


async def verify_with_connection(conn: asyncpg.Connection, public_key: Ed25519PublicKey,
                                 out: TextIO | None = None) -> int:
    """Run the audit on an open connection, print the report; 0 when the log is intact, else 1."""
    report = await verify_log(conn, public_key)
    print_report(report, out or sys.stdout)
    return 0 if report.ok else 1


async def run_verify(dsn: str, settings: Any, *, public_key: str | bytes | Path | None = None,
                     out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The body of `tenderhall audit verify`: 0 if the whole log verifies, 1 otherwise.

    A missing key or an unreachable database is reported on `err` (stderr) and gives 1.
    """
    err = err or sys.stderr
    try:
        key = load_verify_key(settings, public_key)
    except AuditError as exc:
        print(f"error: {exc}", file=err)
        return 1
    try:
        conn = await db.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: cannot connect to the database: {exc}", file=err)
        return 1
    try:
        return await verify_with_connection(conn, key, out)
    finally:
        await conn.close()
