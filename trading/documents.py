"""One document of an opened bid, decrypted on demand for the evaluation, with no plaintext on disk.

After the opening the server keeps each bid's content key (opening_bids.content_key) for the
evaluation; the documents stay encrypted at rest. An expert reading a document gets its bytes
decrypted from the stored ciphertext as they are read: every chunk is authenticated by
AES-GCM before any of its bytes are passed on, and the file is checked against the digest
the bidder put in the container header when it ends. Decryption stops once the document has
been read; the files after it are never decrypted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

from trading.bid_container import OpenedFile
from trading.manifest import Manifest
from trading.sealing import open_bid

# Chunks handed to an async reader at once: about 4 MiB in flight (1 MiB plaintext chunks).
QUEUE_CHUNKS = 4


class DocumentNotFound(LookupError):
    """The bid holds no file of that name."""


class _Stop(Exception):
    """Ends decryption early: the document is read, or its reader went away."""


class _Writer:
    """Passes the document on and hashes it: once the container has checked the header's digest,
    this one is that digest."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self.digest = hashlib.sha256()

    def write(self, piece: memoryview) -> None:
        self.digest.update(piece)
        self._write(bytes(piece))


def read_document(ciphertext: BinaryIO, manifest: Manifest, content_key: bytes, name: str,
                  write: Callable[[bytes], None]) -> OpenedFile:
    """Pass the bytes of document `name` to `write` as they authenticate; return its header entry.

    Raises DocumentNotFound when the bid has no such file (known only once the whole bid has
    been decrypted: callers check the name against the files listed at the opening first),
    and what open_bid raises: KeyCommitmentMismatch, ChunkAuthFailed, DigestMismatch (the
    document's bytes differ from its header digest: then `write` has had them all, and the
    caller must discard what it passed on), BidContentInvalid. An exception from `write`
    stops decryption and propagates.
    """
    found: list[tuple[int, _Writer]] = []

    def files_out(file_name: str, size: int) -> Any:
        if found:  # the document ended, and its digest was checked, before the next file began
            raise _Stop
        if file_name == name:
            found.append((size, _Writer(write)))
            return found[0][1]
        return None  # decrypted and authenticated, but not kept

    with contextlib.suppress(_Stop):
        open_bid(ciphertext, content_key, manifest, files_out)
    if not found:
        raise DocumentNotFound(f"the bid holds no document named {name!r}")
    size, writer = found[0]
    return OpenedFile(name, size, writer.digest.hexdigest())


async def stream_document(path: Path, manifest: Manifest, content_key: bytes, name: str) -> AsyncIterator[bytes]:
    """read_document on a worker thread, as an async iterator with bounded buffering.

    Stopping the iteration (a reader that disconnects) stops the decryption at its next chunk.
    The errors of read_document are raised from the iterator, after the bytes already yielded.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(QUEUE_CHUNKS)
    gone = threading.Event()

    def put(item: bytes | BaseException | None) -> None:
        while True:  # waits for room in the queue, unless the reader has gone
            if gone.is_set():
                raise _Stop
            try:
                asyncio.run_coroutine_threadsafe(asyncio.wait_for(queue.put(item), 1.0), loop).result()
                return
            except TimeoutError:
                continue

    def work() -> None:
        try:
            with path.open("rb") as ciphertext:
                read_document(ciphertext, manifest, content_key, name, put)
            put(None)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, who raises it
            if not gone.is_set():
                with contextlib.suppress(_Stop):
                    put(exc)

    worker = loop.run_in_executor(None, work)
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        gone.set()
        while not queue.empty():  # unblock a worker waiting to put
            queue.get_nowait()
        await worker

