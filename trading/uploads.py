"""tus-style resumable upload handling: file layout, in-process hashers, streaming PATCH bodies to disk.

Protocol: tus 1.0 core with the creation and checksum extensions
(https://tus.io/protocols/resumable-upload). The database's `uploads.offset` is the truth;
the file under storage_dir/incoming/ may hold more bytes after a crash and is truncated
back to it at the next PATCH. Memory stays flat: the body is gathered into 4 MiB batches
written and hashed as they arrive; every RECORD_EVERY_BYTES a worker thread fsyncs them
while receiving goes on, and the offset is recorded once they are durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.requests import ClientDisconnect

from trading.tenders import ChecksumMismatch, TooLarge

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,checksum"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
BATCH_BYTES = 4 << 20
# Without a checksum the offset is made durable every so often, so a dropped connection
# (or a crashed server) resumes near where it stopped instead of at the request's start.
RECORD_EVERY_BYTES = 32 << 20
HASH_READ_BYTES = 1 << 20


def incoming_path(storage_dir: Path, upload_id: uuid.UUID) -> Path:
    return storage_dir / "incoming" / f"{upload_id}.part"


def bid_path(storage_dir: Path, tender_id: uuid.UUID, upload_id: uuid.UUID) -> Path:
    return storage_dir / "bids" / str(tender_id) / f"{upload_id}.bin"


@dataclass
class _Progress:
    """A running SHA-256 of the first `position` bytes of one upload's file."""

    digest: Any
    position: int


@dataclass
class UploadRegistry:
    """Per app instance: the running hash of each upload being received (a cache; the file is the truth).

    Hangs off the Starlette app (not a module global) so each app, and each test, has its own.
    """

    progress: dict[uuid.UUID, _Progress] = field(default_factory=dict)

    def forget(self, upload_id: uuid.UUID) -> None:
        self.progress.pop(upload_id, None)


def registry_of(app: Any) -> UploadRegistry:
    registry = getattr(app.state, "trading_uploads", None)
    if registry is None:
        registry = UploadRegistry()
        app.state.trading_uploads = registry
    return registry


class PartialFileLost(OSError):
    """The upload's bytes on disk are gone or shorter than its recorded offset: it cannot resume.

    Only this (not any OSError: a full disk or an I/O error may pass) means the upload is lost.
    """


def _hash_prefix(path: Path, length: int) -> Any:
    digest = hashlib.sha256()
    remaining = length
    with path.open("rb") as f:
        while remaining:
            block = f.read(min(HASH_READ_BYTES, remaining))
            if not block:
                raise PartialFileLost(f"{path} is shorter than the recorded offset {length}")
            digest.update(block)
            remaining -= len(block)
    return digest


async def prepare(registry: UploadRegistry, path: Path, upload_id: uuid.UUID, offset: int,
                  moved_to: Path | None = None) -> _Progress:
    """The running hash at `offset`: the in-process one, or (after a restart) re-hash the file prefix.

    Also truncates the file back to `offset`: bytes past the recorded offset were never acknowledged.
    `moved_to` is where completion moves the file (the bid path). Completion moves it there
    durably *before* its transaction commits, so that a complete upload always has its file in
    place; a crash between the two leaves the upload receiving with its file at `moved_to`, and
    here it is moved back, so the next PATCH (a zero-length one at the last byte) completes it.
    Only call this for an upload the database says is still receiving (checked under the claim):
    a complete upload's file at `moved_to` is its bid. Raises PartialFileLost when the bytes are
    gone or shorter than `offset`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() and offset and moved_to is not None and moved_to.exists() \
            and moved_to.stat().st_size >= offset:
        await asyncio.to_thread(move_durably, moved_to, path)
        registry.forget(upload_id)
    if not path.exists():
        if offset:
            raise PartialFileLost(f"partial upload file {path.name} is missing")
        path.touch()
    size = path.stat().st_size
    if size < offset:  # checked here too: a cached running hash would skip the re-hash that notices
        raise PartialFileLost(f"partial upload file {path.name} is shorter than the recorded offset {offset}")
    if size > offset:
        os.truncate(path, offset)
    progress = registry.progress.get(upload_id)
    if progress is None or progress.position != offset:
        digest = await asyncio.to_thread(_hash_prefix, path, offset)
        progress = _Progress(digest, offset)
        registry.progress[upload_id] = progress
    return progress


@dataclass(frozen=True)
class Received:
    offset: int
    disconnected: bool


def _write(f: Any, data: bytes, digests: list[Any]) -> None:
    f.write(data)
    for d in digests:
        d.update(data)


def _sync(f: Any) -> None:
    f.flush()
    os.fdatasync(f.fileno())


class _Checkpoints:
    """fsyncs on a worker thread while receiving goes on; at most one behind.

    Writing and hashing stay on the event loop: measured here, handing 4-16 MiB batches to
    a thread lost more to GIL hand-offs than it gained (upload 257-421 MiB/s vs 439 inline).
    The fsync is the slow part, and it releases the GIL for its whole duration.
    """

    def __init__(self, f: Any) -> None:
        self._f = f
        self._pending: tuple[asyncio.Future[None], int] | None = None
        self.durable = 0

    async def sync_from(self, position: int) -> None:
        """Start making everything up to `position` durable, waiting for the previous sync first."""
        await self.wait()
        self._f.flush()
        self._pending = (asyncio.ensure_future(asyncio.to_thread(_sync, self._f)), position)

    def poll(self) -> int:
        if self._pending is not None and self._pending[0].done():
            self._pending[0].result()
            self.durable, self._pending = self._pending[1], None
        return self.durable

    async def wait(self) -> None:
        if self._pending is not None:
            await self._pending[0]
            self.durable, self._pending = self._pending[1], None


async def receive(
    chunks: AsyncIterator[bytes],
    path: Path,
    progress: _Progress,
    length: int,
    checksum: bytes | None,
    record: Callable[[int], Awaitable[None]],
) -> Received:
    """Append a PATCH body to `path` at progress.position, hashing as it goes; return the new offset.

    Raises TooLarge if the body would pass `length`, ChecksumMismatch (460) if the body's
    SHA-256 differs from the Upload-Checksum; in both cases this request's bytes are discarded
    (file truncated and hash restored), except that a TooLarge body keeps the bytes whose offset
    it already recorded (the database says they were received). On a client disconnect keeps
    what was written (unless a checksum was promised: then it cannot be checked and is discarded), fsyncs and returns
    disconnected=True. Every RECORD_EVERY_BYTES the bytes are fsynced and `record(offset)`
    persists the offset, so a dropped connection or a crash resumes near where it stopped;
    the returned offset is always fsynced.
    """
    start = progress.position
    saved = progress.digest.copy()
    body_digest = hashlib.sha256() if checksum is not None else None
    digests = [progress.digest] + ([body_digest] if body_digest is not None else [])
    position = start
    recorded = durable_recorded = start
    pieces: list[bytes] = []
    buffered = 0
    disconnected = False
    rolled_back = False

    def rollback() -> None:
        nonlocal rolled_back
        f.flush()
        f.truncate(start)
        progress.digest, progress.position = saved, start
        rolled_back = True

    f = path.open("r+b")
    checkpoints = _Checkpoints(f)
    try:
        f.seek(start)
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                if position + buffered + len(chunk) > length:
                    await checkpoints.wait()
                    if durable_recorded == start:
                        rollback()
                    else:
                        # record() already stored durable_recorded as the upload's offset: the file
                        # must keep those bytes (truncating to `start` would leave it shorter than
                        # the database's offset, and every later PATCH would fail). The running hash
                        # has no copy at that point: force a re-hash of the prefix next time.
                        f.flush()
                        f.truncate(durable_recorded)
                        progress.position = -1
                        rolled_back = True
                    raise TooLarge(f"the body goes past Upload-Length {length}", code="upload_too_long")
                pieces.append(chunk)
                buffered += len(chunk)
                if buffered >= BATCH_BYTES:
                    data = b"".join(pieces)
                    pieces, buffered = [], 0
                    _write(f, data, digests)
                    position += len(data)
                    # A checksummed body is all or nothing: its offset is recorded only at the end.
                    if checksum is None and position - recorded >= RECORD_EVERY_BYTES:
                        await checkpoints.sync_from(position)
                        recorded = position
                    if checkpoints.poll() > durable_recorded:
                        durable_recorded = checkpoints.durable
                        await record(durable_recorded)
        except ClientDisconnect:
            disconnected = True
        _write(f, b"".join(pieces), digests)
        position += buffered
        await checkpoints.sync_from(position)
        await checkpoints.wait()
        if disconnected and checksum is not None:
            rollback()
            return Received(start, True)
        if body_digest is not None and body_digest.digest() != checksum:
            rollback()
            raise ChecksumMismatch("Upload-Checksum does not match the body; its bytes were discarded")
        progress.position = position
        return Received(position, disconnected)
    except BaseException:
        with contextlib.suppress(BaseException):
            await asyncio.shield(checkpoints.wait())
        if not rolled_back:
            # The running hash has seen bytes past any recorded offset: force a re-hash next time.
            progress.position = -1
        raise
    finally:
        f.close()


def move_durably(source: Path, target: Path) -> None:
    """Rename `source` to `target` and fsync the directory, so the rename survives a crash too."""
    os.replace(source, target)
    fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
