"""The platform signing key: created once with owner-only permissions, then reused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tenderhall.platform_key import load_or_create, load_public_pem, verify_with


def test_created_with_mode_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "platform-signing-key.pem"
    first = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_or_create(path)
    assert second.key_id == first.key_id
    signature = first.sign(b"tree head")
    assert verify_with(load_public_pem(second.public_pem), signature, b"tree head")
    assert not verify_with(second.public, signature, b"another tree head")


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    load_or_create(path)
    path.chmod(0o644)
    load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_key_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    other = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    with pytest.raises(ValueError, match="Ed25519"):
        load_or_create(path)
