"""The plaintext bid container (docs/sealing.md §2): a length-prefixed canonical-JSON header, then the files' bytes.

Written by PlaintextSource while sealing and parsed incrementally by Container while
opening; both keep memory flat in the size of the files.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Union

from tenderhall.canonical import CanonicalJSONError, canonical_json
from trading.bid_format import HEX64, READ_SIZE
from trading.seal_errors import BidContentInvalid, DigestMismatch, SealError

MAX_HEADER_SIZE = 1 << 20  # the header is held in memory while opening; keep it bounded
MAX_FILE_NAME_BYTES = 255

FileSource = Union[BinaryIO, bytes, bytearray, memoryview]
FilesOut = Union[Callable[[str, int], Any], Path, None]


@dataclass(frozen=True)
class OpenedFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class OpenedBid:
    summary: Mapping[str, str | int | bool]
    files: tuple[OpenedFile, ...]


def check_file_name(name: object) -> str:
    """Return `name` if it is a safe bare file name; BidContentInvalid otherwise.

    Refused: non-strings, empty, "." and "..", any "/" or "\\" or NUL, more than 255 UTF-8 bytes.
    """
    if not isinstance(name, str) or not name:
        raise BidContentInvalid("file name must be a non-empty string")
    if name in (".", ".."):
        raise BidContentInvalid(f"file name {name!r} is not allowed")
    for bad in ("/", "\\", "\x00"):
        if bad in name:
            raise BidContentInvalid(f"file name {name!r} contains {bad!r}")
    if len(name.encode("utf-8")) > MAX_FILE_NAME_BYTES:
        raise BidContentInvalid(f"file name is longer than {MAX_FILE_NAME_BYTES} bytes")
    return name


def check_summary(summary: object) -> dict[str, str | int | bool]:
    """Return `summary` if it is a canonical-JSON object of non-empty keys to str/int/bool; BidContentInvalid otherwise."""
    if not isinstance(summary, dict):
        raise BidContentInvalid("summary must be an object")
    for key, value in summary.items():
        if not isinstance(key, str) or not key:
            raise BidContentInvalid("summary keys must be non-empty strings")
        if not isinstance(value, (str, int, bool)):
            raise BidContentInvalid(f"summary.{key} must be a string, integer or boolean")
    try:
        canonical_json(summary)
    except CanonicalJSONError as exc:
        raise BidContentInvalid(f"summary: {exc}") from None
    return summary


@dataclass
class Part:
    """One piece of the container (the header or a file): where to read it, its size and SHA-256."""

    name: str
    source: FileSource
    start: int  # stream position to rewind to (0 for bytes)
    size: int
    sha256: str


def hash_source(name: str, source: FileSource) -> Part:
    """Measure and hash a file source; a stream is read to its end and rewound to where it was."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        return Part(name, view, 0, len(view), hashlib.sha256(view).hexdigest())
    # A stream is read twice (hash for the header, then encrypt), so it must be seekable.
    start = source.tell()
    sha256, size = stream_digest(source)
    source.seek(start)
    return Part(name, source, start, size, sha256)


def stream_digest(stream: BinaryIO) -> tuple[str, int]:
    """(lowercase hex SHA-256, size) of a stream read from its position to its end, memory flat."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    while count := stream.readinto(view):  # type: ignore[attr-defined]
        digest.update(view[:count])
        size += count
    return digest.hexdigest(), size


class PlaintextSource:
    """Copies the container bytes (length, header, files) into caller buffers, re-hashing streams.

    A stream is hashed again as it is encrypted, so a file that changes between the two
    reads fails here instead of producing a bid whose header lies about its content.
    """

    def __init__(self, head: bytes, parts: list[Part]) -> None:
        self._parts = [Part("header", memoryview(head), 0, len(head), ""), *parts]
        self._index = 0
        self._offset = 0
        self._digest: Any = None

    def fill(self, view: memoryview) -> int:
        filled = 0
        while filled < len(view) and self._index < len(self._parts):
            part = self._parts[self._index]
            take = min(part.size - self._offset, len(view) - filled)
            target = view[filled : filled + take]
            if isinstance(part.source, memoryview):
                target[:] = part.source[self._offset : self._offset + take]
                count = take
            else:
                if self._digest is None:
                    self._digest = hashlib.sha256()
                count = part.source.readinto(target) if take else 0  # type: ignore[union-attr]
                if take and not count:
                    raise SealError(f"file {part.name!r} got shorter while it was being sealed")
                self._digest.update(target[:count])
            filled += count
            self._offset += count
            if self._offset == part.size:
                if self._digest is not None and self._digest.hexdigest() != part.sha256:
                    raise SealError(f"file {part.name!r} changed while it was being sealed")
                self._digest = None
                self._index += 1
                self._offset = 0
        return filled


class Container:
    """Parses the decrypted container incrementally: length, header, then each file's bytes."""

    def __init__(self, files_out: FilesOut, *, check_digests: bool = True) -> None:
        self._files_out = files_out
        self._check_digests = check_digests
        self._head = bytearray()
        self._header_len: int | None = None
        self.summary: dict[str, str | int | bool] = {}
        self.files: list[OpenedFile] = []
        self._current = -1
        self._remaining = 0
        self._digest: Any = None
        self._sink: Any = None
        self.created: list[Path] = []
        self.header_done = False

    def feed(self, view: memoryview) -> None:
        pos = 0
        while pos < len(view) or (self.header_done and self._remaining == 0 and self._current < len(self.files)):
            if not self.header_done:
                need = (4 if self._header_len is None else 4 + self._header_len) - len(self._head)
                take = min(need, len(view) - pos)
                self._head += view[pos : pos + take]
                pos += take
                if self._header_len is None and len(self._head) == 4:
                    (self._header_len,) = struct.unpack(">I", self._head)
                    if self._header_len > MAX_HEADER_SIZE:
                        raise BidContentInvalid(f"header length {self._header_len} exceeds {MAX_HEADER_SIZE}")
                if self._header_len is not None and len(self._head) == 4 + self._header_len:
                    self._parse_header(bytes(self._head[4:]))
                    self.header_done = True
                    self._next_file()
                continue
            if self._current >= len(self.files):
                raise BidContentInvalid(f"{len(view) - pos} bytes follow the last file")
            take = min(self._remaining, len(view) - pos)
            piece = view[pos : pos + take]
            if self._digest is not None:
                self._digest.update(piece)
            if self._sink is not None:
                self._sink.write(piece)
            pos += take
            self._remaining -= take
            if self._remaining == 0:
                self._finish_file()
                self._next_file()

    def _parse_header(self, raw: bytes) -> None:
        try:
            header = json.loads(raw)
            if canonical_json(header) != raw:
                raise BidContentInvalid("header is not in canonical JSON form")
        except (ValueError, CanonicalJSONError) as exc:
            if isinstance(exc, BidContentInvalid):
                raise
            raise BidContentInvalid(f"header is not valid JSON: {exc}") from None
        if not isinstance(header, dict) or set(header) != {"summary", "files"}:
            raise BidContentInvalid("header must hold exactly 'summary' and 'files'")
        self.summary = check_summary(header["summary"])
        if not isinstance(header["files"], list):
            raise BidContentInvalid("header.files must be a list")
        names = set()
        for i, entry in enumerate(header["files"]):
            if not isinstance(entry, dict) or set(entry) != {"name", "size", "sha256"}:
                raise BidContentInvalid(f"header.files[{i}] must hold exactly name, size, sha256")
            name = check_file_name(entry["name"])
            size, sha = entry["size"], entry["sha256"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise BidContentInvalid(f"header.files[{i}].size must be a non-negative integer")
            if not isinstance(sha, str) or not HEX64.fullmatch(sha):
                raise BidContentInvalid(f"header.files[{i}].sha256 must be 64 lowercase hex digits")
            if name in names:
                raise BidContentInvalid(f"header.files names {name!r} twice")
            names.add(name)
            self.files.append(OpenedFile(name=name, size=size, sha256=sha))

    def _next_file(self) -> None:
        self._current += 1
        if self._current >= len(self.files):
            return
        entry = self.files[self._current]
        self._remaining = entry.size
        self._digest = hashlib.sha256() if self._check_digests else None
        if isinstance(self._files_out, Path):
            path = self._files_out / entry.name
            self._sink = path.open("xb")
            self.created.append(path)
        elif self._files_out is not None:
            self._sink = self._files_out(entry.name, entry.size)
        else:
            self._sink = None

    def _finish_file(self) -> None:
        entry = self.files[self._current]
        if isinstance(self._files_out, Path):
            self._sink.close()
        self._sink = None
        if self._digest is None:
            return
        actual = self._digest.hexdigest()
        if actual != entry.sha256:
            raise DigestMismatch(f"file {entry.name!r} has SHA-256 {actual}, the header says {entry.sha256}")

    def finish(self) -> None:
        if not self.header_done:
            raise BidContentInvalid("plaintext ends inside the header")
        if self._current < len(self.files):
            raise BidContentInvalid(f"plaintext ends inside file {self.files[self._current].name!r}")

    def abort(self) -> None:
        if isinstance(self._files_out, Path):
            if self._sink is not None:
                self._sink.close()
            for path in self.created:
                path.unlink(missing_ok=True)
