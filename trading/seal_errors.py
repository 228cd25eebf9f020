"""Sealed-bid failures: one exception family shared by sealing, manifests, key wraps and the container."""

from __future__ import annotations


class SealError(Exception):
    """Base of every sealed-bid failure."""


class ManifestInvalid(SealError):
    """The manifest is malformed: a missing, extra or ill-typed field, or an impossible value."""


class SignatureInvalid(SealError):
    """The manifest signature is malformed or does not verify under the signing key."""


class DigestMismatch(SealError):
    """A SHA-256 (of the ciphertext, or of a file inside the bid) differs from the one promised."""


class SizeMismatch(SealError):
    """The ciphertext is shorter or longer than the manifest says."""


class WrapInvalid(SealError):
    """An HPKE-wrapped key or share is malformed or does not open with the given private key."""


class BidContentInvalid(SealError):
    """The decrypted plaintext is not a well-formed bid container (header, file list, lengths)."""


class ChunkAuthFailed(SealError):
    """Chunk `index` failed AES-GCM authentication: tampered, truncated, reordered, spliced or wrong key."""

    def __init__(self, index: int, final: bool) -> None:
        self.index = index
        self.final = final
        kind = "final chunk" if final else "chunk"
        super().__init__(
            f"{kind} {index} failed authentication (tampered, reordered, truncated, spliced, or wrong content key)"
        )


class KeyCommitmentMismatch(SealError):
    """A content key (unwrapped by the bidder or combined from custodian shares) is not the committed one.

    AES-GCM is not key-committing: one ciphertext can authenticate under two keys (an
    "invisible salamander"), so a bidder could wrap one K to itself and share another with the
    custodians. The signed manifest's key_commitment pins the one K every opener must hold.
    """

    def __init__(self) -> None:
        super().__init__("the content key does not match the manifest's key commitment")
