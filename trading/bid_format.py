"""The "tenderhall-sealed-bid/1" wire constants and chunk framing (docs/sealing.md §3).

Each 1 MiB plaintext chunk is sealed with AES-256-GCM under a nonce and AAD that bind its
index and whether it is the final one, so chunks cannot be reordered, spliced or cut off.
"""

from __future__ import annotations

import re
import struct

FORMAT = "tenderhall-sealed-bid/1"
CHUNK_SIZE = 1 << 20  # plaintext bytes per chunk
TAG_SIZE = 16
KEY_SIZE = 32
AEAD_NAME = "AES-256-GCM"
CHUNK_AAD_PREFIX = b"tenderhall-bid-v1"
FULL_CT_CHUNK = CHUNK_SIZE + TAG_SIZE
READ_SIZE = 1 << 20

HEX64 = re.compile(r"[0-9a-f]{64}")


def chunk_count(plaintext_size: int) -> int:
    """n = max(1, ceil(plaintext_size / CHUNK_SIZE))."""
    return max(1, -(-plaintext_size // CHUNK_SIZE))


def ciphertext_size(plaintext_size: int) -> int:
    return plaintext_size + TAG_SIZE * chunk_count(plaintext_size)


def ct_layout(size: int) -> tuple[int, int] | None:
    """(chunk count, final chunk's ciphertext length) for a ciphertext size, or None if impossible."""
    if size < TAG_SIZE:
        return None
    n = max(1, -(-size // FULL_CT_CHUNK))
    last = size - (n - 1) * FULL_CT_CHUNK
    # A final chunk shorter than a tag cannot exist, and an empty final chunk only when n == 1.
    if last < TAG_SIZE or (last == TAG_SIZE and n > 1):
        return None
    return n, last


def chunk_nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack(">Q", index)


def chunk_aad(index: int, final: bool) -> bytes:
    return CHUNK_AAD_PREFIX + struct.pack(">Q", index) + (b"\x01" if final else b"\x00")
