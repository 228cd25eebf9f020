"""One document of a sealed bid read on demand: authenticated bytes, the rest never decrypted, errors kept."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from trading import documents, key_wrap
from trading.bid_format import CHUNK_SIZE
from trading.documents import DocumentNotFound, read_document, stream_document
from trading.manifest import validate_manifest
from trading.seal_errors import ChunkAuthFailed, KeyCommitmentMismatch
from tests.unit.test_sealing import new_key, seal

FILES = [("商务标.pdf", os.urandom(1000)), ("技术标.pdf", os.urandom(2 * CHUNK_SIZE + 12345)),
         ("报价清单.xlsx", os.urandom(CHUNK_SIZE // 2))]


@pytest.fixture(scope="module")
def bid():
    keys = {"sign": new_key(), "decrypt": new_key(), "custodians": []}
    sealed, ciphertext = seal(keys, FILES)
    manifest = validate_manifest(sealed.manifest)
    return manifest, key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, keys["decrypt"]), ciphertext


@pytest.mark.parametrize("index", [0, 1, 2])
def test_each_document_reads_back_byte_for_byte(bid, index: int) -> None:
    manifest, key, ciphertext = bid
    out = bytearray()
    entry = read_document(io.BytesIO(ciphertext), manifest, key, FILES[index][0], out.extend)
    assert bytes(out) == FILES[index][1]
    assert (entry.size, entry.sha256) == (len(FILES[index][1]), hashlib.sha256(FILES[index][1]).hexdigest())


def test_decryption_stops_after_the_document(bid) -> None:
    manifest, key, ciphertext = bid
    stream = io.BytesIO(ciphertext)
    read_document(stream, manifest, key, FILES[0][0], lambda piece: None)
    assert stream.tell() < len(ciphertext) // 2  # the large second file was never read


def test_an_unknown_name_a_wrong_key_and_a_tampered_chunk_are_refused(bid) -> None:
    manifest, key, ciphertext = bid
    with pytest.raises(DocumentNotFound):
        read_document(io.BytesIO(ciphertext), manifest, key, "另一个.pdf", lambda piece: None)
    with pytest.raises(KeyCommitmentMismatch):
        read_document(io.BytesIO(ciphertext), manifest, bytes(32), FILES[0][0], lambda piece: None)
    tampered = bytearray(ciphertext)
    tampered[CHUNK_SIZE + 100] ^= 1  # inside the second chunk: the large file's first bytes
    out = bytearray()
    with pytest.raises(ChunkAuthFailed):
        read_document(io.BytesIO(bytes(tampered)), manifest, key, FILES[1][0], out.extend)
    assert len(out) < CHUNK_SIZE  # nothing of the forged chunk was passed on


async def test_streaming_yields_the_document_and_a_reader_may_stop_early(bid, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, key, ciphertext = bid
    path = tmp_path / "bid.bin"
    path.write_bytes(ciphertext)
    got = b"".join([piece async for piece in stream_document(path, manifest, key, FILES[1][0])])
    assert got == FILES[1][1]
    monkeypatch.setattr(documents, "QUEUE_CHUNKS", 1)
    pieces = stream_document(path, manifest, key, FILES[1][0])
    first = await pieces.__anext__()
    assert first == FILES[1][1][:len(first)]
    await pieces.aclose()  # the worker thread ends instead of waiting on a full queue
    with pytest.raises(DocumentNotFound):
        [piece async for piece in stream_document(path, manifest, key, "不存在.pdf")]
