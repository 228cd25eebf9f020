"""Passphrase-encrypted key files ("tenderhall-keys/1"): the browser backup and the CLI key file.

One format on both sides (static/tenderhall/keys.js writes and reads the same bytes):

    canonical_json({"format": "tenderhall-keys/1",
                    "kdf": {"name": "PBKDF2-SHA256", "iterations": N, "salt": b64url(16 bytes)},
                    "nonce": b64url(12 bytes),
                    "ciphertext": b64url(AES-256-GCM(key, nonce, payload, aad=b"tenderhall-keys/1"))})

    key     = PBKDF2-HMAC-SHA256(passphrase UTF-8, salt, N, 32 bytes)
    payload = canonical_json({"owner": str, "sign": b64url(PKCS#8 DER of the ECDSA P-256 key),
                              "decrypt": b64url(PKCS#8 DER of the ECDH P-256 key)})

The iteration count travels in the file so it can be raised later; 600 000 follows the
OWASP 2023 recommendation for PBKDF2-HMAC-SHA256.

The P-256 public-key helpers both sides share live here too: SubjectPublicKeyInfo DER
and b64url, and a key's id (lowercase hex SHA-256 of that DER, docs/sealing.md §1).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from tenderhall.canonical import b64url, b64url_decode, canonical_json

__all__ = [
    "KEYFILE_FORMAT",
    "KDF_NAME",
    "DEFAULT_ITERATIONS",
    "KeyFileError",
    "WrongPassphrase",
    "KeyPairs",
    "generate_keys",
    "encrypt_keyfile",
    "decrypt_keyfile",
    "public_key_spki_der",
    "key_id",
    "public_key_spki_b64url",
    "load_public_key_spki_b64url",
]

KEYFILE_FORMAT = "tenderhall-keys/1"
KDF_NAME = "PBKDF2-SHA256"
DEFAULT_ITERATIONS = 600_000
# Refuse absurd counts in a file we did not write: below this is a test key, above it a DoS.
MIN_ITERATIONS = 1
MAX_ITERATIONS = 10_000_000
SALT_SIZE = 16
NONCE_SIZE = 12
_AAD = KEYFILE_FORMAT.encode("ascii")


class KeyFileError(ValueError):
    """The key file is malformed: not JSON, wrong format, bad fields or bad keys inside."""


class WrongPassphrase(KeyFileError):
    """The passphrase does not open this key file (or the file was altered)."""


@dataclass(frozen=True)
class KeyPairs:
    """One owner's two private keys: ECDSA P-256 for signing, ECDH P-256 for HPKE unwrapping."""

    owner: str
    sign: ec.EllipticCurvePrivateKey
    decrypt: ec.EllipticCurvePrivateKey


def generate_keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    """Return fresh (sign, decrypt) P-256 private keys."""
    return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


def public_key_spki_der(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """SubjectPublicKeyInfo DER of a public key (or of a private key's public half)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Lowercase hex SHA-256 of the key's SubjectPublicKeyInfo DER (WebCrypto "spki" export)."""
    return hashlib.sha256(public_key_spki_der(public_key)).hexdigest()


def public_key_spki_b64url(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> str:
    """b64url(SPKI DER): how public keys travel in JSON (WebCrypto exportKey("spki"))."""
    return b64url(public_key_spki_der(key))


def load_public_key_spki_b64url(text: str) -> ec.EllipticCurvePublicKey:
    """Parse b64url(SPKI DER) into a P-256 public key; KeyFileError otherwise."""
    try:
        key = serialization.load_der_public_key(b64url_decode(text))
    except ValueError as exc:
        raise KeyFileError(f"not a b64url SPKI public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError("public key is not a P-256 key")
    return key


def _derive(passphrase: str, salt: bytes, iterations: int) -> bytes:
    return PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations).derive(
        passphrase.encode("utf-8")
    )


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def encrypt_keyfile(
    owner: str,
    sign_key: ec.EllipticCurvePrivateKey,
    decrypt_key: ec.EllipticCurvePrivateKey,
    passphrase: str,
    iterations: int = DEFAULT_ITERATIONS,
    *,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """Return the canonical-JSON key file bytes protecting both keys under `passphrase`.

    `salt` and `nonce` default to fresh random values; pass them only for test vectors.
    Raises KeyFileError for an empty passphrase, a non-P-256 key or an iteration count
    outside [1, 10 000 000].
    """
    if not passphrase:
        raise KeyFileError("passphrase must not be empty")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise KeyFileError(f"iterations {iterations} outside [{MIN_ITERATIONS}, {MAX_ITERATIONS}]")
    for name, key in (("sign", sign_key), ("decrypt", decrypt_key)):
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise KeyFileError(f"{name} key must be a P-256 private key")
    salt = os.urandom(SALT_SIZE) if salt is None else salt
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    if len(salt) != SALT_SIZE or len(nonce) != NONCE_SIZE:
        raise KeyFileError("salt must be 16 bytes and nonce 12 bytes")
    payload = canonical_json({"owner": owner, "sign": b64url(_pkcs8(sign_key)), "decrypt": b64url(_pkcs8(decrypt_key))})
    ciphertext = AESGCM(_derive(passphrase, salt, iterations)).encrypt(nonce, payload, _AAD)
    return canonical_json(
        {
            "format": KEYFILE_FORMAT,
            "kdf": {"name": KDF_NAME, "iterations": iterations, "salt": b64url(salt)},
            "nonce": b64url(nonce),
            "ciphertext": b64url(ciphertext),
        }
    )


def _field(obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in obj:
        raise KeyFileError(f"{where} is missing field {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise KeyFileError(f"{where}.{name} must be a {kind.__name__}")
    return value


def _exact_keys(obj: dict[str, Any], expected: set[str], where: str) -> None:
    extra = sorted(set(obj) - expected)
    if extra:
        raise KeyFileError(f"{where} has unexpected field {extra[0]!r}")


def _b64(value: str, where: str) -> bytes:
    try:
        return b64url_decode(value)
    except ValueError:
        raise KeyFileError(f"{where} is not unpadded base64url") from None


def _load_private(value: str, where: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_der_private_key(_b64(value, where), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{where} is not a PKCS#8 private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{where} is not a P-256 private key")
    return key


def decrypt_keyfile(data: bytes | str, passphrase: str) -> KeyPairs:
    """Open a key file written by encrypt_keyfile or by the browser's backup.

    Raises WrongPassphrase when the passphrase (or the file) does not authenticate, and
    KeyFileError for anything malformed, naming the field at fault.
    """
    try:
        outer = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError("key file is not JSON") from None
    if not isinstance(outer, dict):
        raise KeyFileError("key file must be a JSON object")
    fmt = _field(outer, "format", str, "key file")
    if fmt != KEYFILE_FORMAT:
        raise KeyFileError(f"key file format {fmt!r} is not {KEYFILE_FORMAT!r}")
    _exact_keys(outer, {"format", "kdf", "nonce", "ciphertext"}, "key file")
    kdf = _field(outer, "kdf", dict, "key file")
    _exact_keys(kdf, {"name", "iterations", "salt"}, "kdf")
    if _field(kdf, "name", str, "kdf") != KDF_NAME:
        raise KeyFileError(f"kdf.name must be {KDF_NAME!r}")
    iterations = _field(kdf, "iterations", int, "kdf")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise KeyFileError(f"kdf.iterations {iterations} outside [{MIN_ITERATIONS}, {MAX_ITERATIONS}]")
    salt = _b64(_field(kdf, "salt", str, "kdf"), "kdf.salt")
    if len(salt) != SALT_SIZE:
        raise KeyFileError(f"kdf.salt must be {SALT_SIZE} bytes, got {len(salt)}")
    nonce = _b64(_field(outer, "nonce", str, "key file"), "nonce")
    if len(nonce) != NONCE_SIZE:
        raise KeyFileError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    ciphertext = _b64(_field(outer, "ciphertext", str, "key file"), "ciphertext")
    try:
        payload = AESGCM(_derive(passphrase, salt, iterations)).decrypt(nonce, ciphertext, _AAD)
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase, or the key file was altered") from None
    try:
        inner = json.loads(payload)
    except ValueError:
        raise KeyFileError("decrypted key payload is not JSON") from None
    if not isinstance(inner, dict):
        raise KeyFileError("decrypted key payload must be a JSON object")
    _exact_keys(inner, {"owner", "sign", "decrypt"}, "key payload")
    return KeyPairs(
        owner=_field(inner, "owner", str, "key payload"),
        sign=_load_private(_field(inner, "sign", str, "key payload"), "key payload.sign"),
        decrypt=_load_private(_field(inner, "decrypt", str, "key payload"), "key payload.decrypt"),
    )
