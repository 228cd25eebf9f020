"""Registered public keys: validation of P-256 SubjectPublicKeyInfo keys and their SQL.

A key set is one ECDSA P-256 signing key and one ECDH P-256 decryption key, generated on the
owner's machine (the browser or the CLI); the server only ever sees their public halves as
SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7, RFC 5480 for EC keys). A key's id is the
lowercase hex SHA-256 of that DER, so anyone holding the key can recompute it.

The owner is a bidder organisation or a custodian user, never both (key_sets_owner_check).
Registering a new set revokes the owner's active one in the same transaction.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tenderhall.canonical import b64url
from tenderhall.keyfile import key_id, public_key_spki_der

# A P-256 SPKI is 91 bytes (122 base64url characters); anything far larger is not one.
MAX_SPKI_CHARS = 1024
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


class KeyValidationError(ValueError):
    """A submitted key set is unusable; `code` is stable, the message says exactly why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class PublicKey:
    spki: bytes
    key_id: str


@dataclass(frozen=True)
class KeySetInput:
    sign: PublicKey
    decrypt: PublicKey


@dataclass(frozen=True)
class Owner:
    """Exactly one of the two is set: a bidder organisation, or a custodian user."""

    organisation_id: uuid.UUID | None = None
    custodian_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if (self.organisation_id is None) == (self.custodian_id is None):
            raise ValueError("a key set owner is an organisation or a custodian, not both or neither")

    @property
    def label(self) -> str:
        return f"organisation:{self.organisation_id}" if self.organisation_id else f"custodian:{self.custodian_id}"


@dataclass(frozen=True)
class KeySet:
    id: uuid.UUID
    owner: Owner
    registered_by: uuid.UUID
    sign_spki: bytes
    sign_key_id: str
    decrypt_spki: bytes
    decrypt_key_id: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "organisation_id": str(self.owner.organisation_id) if self.owner.organisation_id else None,
            "custodian_id": str(self.owner.custodian_id) if self.owner.custodian_id else None,
            "sign_spki": b64url(self.sign_spki),
            "sign_key_id": self.sign_key_id,
            "decrypt_spki": b64url(self.decrypt_spki),
            "decrypt_key_id": self.decrypt_key_id,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "active": self.active,
        }


def parse_p256_spki(value: Any, field: str) -> PublicKey:
    """Decode a base64url SPKI DER and check it is an EC P-256 public key in canonical form.

    Raises KeyValidationError with code missing_key, not_base64url, not_spki, wrong_key_type,
    wrong_curve or not_canonical.
    """
    if value is None or value == "":
        raise KeyValidationError("missing_key", f"{field} is missing; send the public key as base64url SubjectPublicKeyInfo DER")
    if not isinstance(value, str):
        raise KeyValidationError("not_base64url", f"{field} must be a base64url string")
    if len(value) > MAX_SPKI_CHARS or not _B64URL.match(value):
        raise KeyValidationError("not_base64url", f"{field} is not base64url text (A-Z a-z 0-9 - _)")
    try:
        der = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise KeyValidationError("not_base64url", f"{field} is not valid base64url") from None
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        raise KeyValidationError("not_spki", f"{field} is not a DER SubjectPublicKeyInfo public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        raise KeyValidationError("wrong_key_type", f"{field} is an RSA key; an EC P-256 key is required")
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyValidationError("wrong_key_type", f"{field} is not an elliptic-curve key; an EC P-256 key is required")
    if not isinstance(key.curve, ec.SECP256R1):
        raise KeyValidationError("wrong_curve", f"{field} is on curve {key.curve.name}; P-256 (secp256r1) is required")
    # One key, one encoding: a compressed point or trailing bytes would give the same key a
    # second id, so only the canonical encoding (what WebCrypto exports) is accepted.
    if public_key_spki_der(key) != der:
        raise KeyValidationError("not_canonical", f"{field} is not in canonical DER form (uncompressed point, no extra bytes)")
    return PublicKey(der, key_id(key))


def validate_key_set(body: Any) -> KeySetInput:
    """Check a registration body {"sign_spki", "decrypt_spki"}; KeyValidationError when unusable."""
    if not isinstance(body, dict):
        raise KeyValidationError("invalid_body", 'send a JSON object {"sign_spki": ..., "decrypt_spki": ...}')
    unknown = sorted(set(body) - {"sign_spki", "decrypt_spki"})
    if unknown:
        raise KeyValidationError("invalid_body", f"unknown field(s): {', '.join(unknown)}")
    sign = parse_p256_spki(body.get("sign_spki"), "sign_spki")
    decrypt = parse_p256_spki(body.get("decrypt_spki"), "decrypt_spki")
    if sign.spki == decrypt.spki:
        raise KeyValidationError(
            "same_key", "sign_spki and decrypt_spki are the same key; generate two separate key pairs"
        )
    return KeySetInput(sign, decrypt)


# --- SQL -----------------------------------------------------------------------------------

_COLUMNS = ("id, organisation_id, custodian_id, registered_by, sign_spki, sign_key_id, "
            "decrypt_spki, decrypt_key_id, created_at, revoked_at")

LOCK_OWNER = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7401003))"
REVOKE_ACTIVE = """
UPDATE key_sets SET revoked_at = now()
WHERE revoked_at IS NULL AND organisation_id IS NOT DISTINCT FROM $1 AND custodian_id IS NOT DISTINCT FROM $2
RETURNING id"""
INSERT = f"""
INSERT INTO key_sets (id, organisation_id, custodian_id, registered_by, sign_spki, sign_key_id, decrypt_spki, decrypt_key_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING {_COLUMNS}"""
LIST_FOR_OWNER = f"""
SELECT {_COLUMNS} FROM key_sets
WHERE organisation_id IS NOT DISTINCT FROM $1 AND custodian_id IS NOT DISTINCT FROM $2
ORDER BY created_at DESC, id"""
GET = f"SELECT {_COLUMNS} FROM key_sets WHERE id = $1"


class KeyConflict(Exception):
    """One of the keys is already registered (by anyone); keys are never reused."""


def _key_set(row: asyncpg.Record) -> KeySet:
    return KeySet(
        id=row["id"],
        owner=Owner(row["organisation_id"], row["custodian_id"]),
        registered_by=row["registered_by"],
        sign_spki=bytes(row["sign_spki"]),
        sign_key_id=row["sign_key_id"],
        decrypt_spki=bytes(row["decrypt_spki"]),
        decrypt_key_id=row["decrypt_key_id"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def register(conn: asyncpg.Connection, owner: Owner, registered_by: uuid.UUID,
                   keys: KeySetInput) -> tuple[KeySet, list[uuid.UUID]]:
    """Revoke the owner's active set and insert the new one; call inside a transaction.

    Returns (the new set, ids of the sets it revoked). KeyConflict when a key is already known.
    """
    # Serialise registrations per owner so two at once cannot both pass the revoke step and
    # then trip the one-active-set index.
    await conn.execute(LOCK_OWNER, owner.label)
    revoked = [r["id"] for r in await conn.fetch(REVOKE_ACTIVE, owner.organisation_id, owner.custodian_id)]
    try:
        async with conn.transaction():  # a savepoint, so the caller's transaction survives a conflict
            row = await conn.fetchrow(
                INSERT, uuid.uuid4(), owner.organisation_id, owner.custodian_id, registered_by,
                keys.sign.spki, keys.sign.key_id, keys.decrypt.spki, keys.decrypt.key_id,
            )
    except asyncpg.UniqueViolationError as exc:
        which = {"key_sets_sign_key_id_key": "the signing key", "key_sets_decrypt_key_id_key": "the decryption key"}
        raise KeyConflict(f"{which.get(exc.constraint_name or '', 'a key')} is already registered; generate new keys") from None
    return _key_set(row), revoked


async def list_for_owner(conn: asyncpg.Connection, owner: Owner) -> list[KeySet]:
    """Every set the owner registered, newest first (the active one, then revoked ones)."""
    return [_key_set(r) for r in await conn.fetch(LIST_FOR_OWNER, owner.organisation_id, owner.custodian_id)]


async def get(conn: asyncpg.Connection, key_set_id: uuid.UUID) -> KeySet | None:
    row = await conn.fetchrow(GET, key_set_id)
    return _key_set(row) if row else None


@dataclass(frozen=True)
class Registration:
    key_set: KeySet
    revoked: list[uuid.UUID]
    log_index: int


async def register_logged(pool: asyncpg.Pool, signer: Any, owner: Owner, registered_by: uuid.UUID,
                          keys_in: KeySetInput, ip: str | None = None) -> Registration:
    """Register a key set, revoking the old one, with its transparency-log entry and audit.

    All in one transaction, so anyone can later tell which keys were valid when.
    KeyConflict when a key is already registered.
    """
    from tenderhall import accounts, log

    async with pool.acquire() as conn:
        async with conn.transaction():
            key_set, revoked = await register(conn, owner, registered_by, keys_in)
            body = {
                "key_set_id": str(key_set.id),
                "owner": owner.label,
                "sign_key_id": key_set.sign_key_id,
                "decrypt_key_id": key_set.decrypt_key_id,
                "sign_spki": b64url(key_set.sign_spki),
                "decrypt_spki": b64url(key_set.decrypt_spki),
                "revokes": [str(r) for r in revoked],
                "registered_by": str(registered_by),
            }
            appended = await log.append_entry(conn, signer, "keys.registered", body)
            await accounts.record_audit(conn, "keys.registered", actor_id=registered_by, subject=f"key_set:{key_set.id}",
                                        detail={"owner": owner.label, "revoked": body["revokes"]}, ip=ip)
    return Registration(key_set, revoked, appended.index)
