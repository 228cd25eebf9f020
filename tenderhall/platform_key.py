"""The platform's Ed25519 signing key: signs tree heads and bid receipts.

Created at first start in the data directory with mode 0600; its public key is published
at /.well-known/tenderhall-log-key so anyone can check what the platform signed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


@dataclass(frozen=True)
class PlatformKey:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def public_pem(self) -> str:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    @property
    def key_id(self) -> str:
        return key_id_of(self.public)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The key id the platform uses: SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def verify_with(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def load_public_pem(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the platform key is not an Ed25519 key")
    return key


def as_public_key(key: Ed25519PublicKey | str | bytes) -> Ed25519PublicKey:
    """`key` itself, or the Ed25519 public key its PEM text holds; ValueError for anything else."""
    return key if isinstance(key, Ed25519PublicKey) else load_public_pem(key)


def load_or_create(path: Path) -> PlatformKey:
    """Load the key at `path`, or create it there with mode 0600 (atomically, no clobber)."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return PlatformKey(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another instance won the race; use its key
        return load_or_create(path)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return PlatformKey(key)
