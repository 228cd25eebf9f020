"""The platform's data key: seals personal data at rest (experts' ID numbers, drawn names).

A 32-byte random key made at first start in the data directory with mode 0600, beside the
signing key. Subkeys are derived with HKDF-SHA256 per purpose, so a value sealed for one
purpose never opens under another: `seal`/`open` are AES-256-GCM with the caller's context
bound as associated data (a sealed ID number moved to another expert's row fails to open),
and `blind_index` is an HMAC that lets the database enforce uniqueness of a value it
cannot read. A database dump without this file reveals none of it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = b"\x01"


class SealError(ValueError):
    """A sealed value that does not open: wrong key, wrong context, or altered bytes."""


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=b"tenderhall-data/" + purpose.encode()).derive(master)


@dataclass(frozen=True)
class DataKey:
    master: bytes

    def __repr__(self) -> str:  # never print the key
        return "DataKey(...)"

    def seal(self, purpose: str, context: bytes, plaintext: bytes) -> bytes:
        """version ‖ nonce ‖ AES-256-GCM(plaintext) with (purpose, context) as associated data."""
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + AESGCM(_derive(self.master, "seal/" + purpose)).encrypt(nonce, plaintext, context)

    def open(self, purpose: str, context: bytes, sealed: bytes) -> bytes:
        """The plaintext of `seal(purpose, context, …)`; SealError for anything else."""
        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != VERSION:
            raise SealError("not a sealed value")
        try:
            return AESGCM(_derive(self.master, "seal/" + purpose)).decrypt(sealed[1:1 + NONCE_BYTES],
                                                                           sealed[1 + NONCE_BYTES:], context)
        except InvalidTag:
            raise SealError("the sealed value does not open with this key and context") from None

    def blind_index(self, purpose: str, value: bytes) -> bytes:
        """HMAC-SHA256 under a purpose subkey: equal values give equal indexes, nothing else is learnt."""
        return hmac.new(_derive(self.master, "index/" + purpose), value, hashlib.sha256).digest()

    def subkey(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (e.g. per-draw pseudonyms), never the master itself."""
        return _derive(self.master, "key/" + purpose)


def load_or_create(path: Path) -> DataKey:
    """Load the key at `path`, or create it there with mode 0600 (atomically, no clobber)."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        master = path.read_bytes()
        if len(master) != KEY_BYTES:
            raise ValueError(f"{path} does not hold a {KEY_BYTES}-byte data key")
        return DataKey(master)
    path.parent.mkdir(parents=True, exist_ok=True)
    master = os.urandom(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another instance won the race; use its key
        return load_or_create(path)
    with os.fdopen(fd, "wb") as out:
        out.write(master)
    return DataKey(master)
