"""Records one publisher connection's encoded packets into a WebM segment (no transcoding) plus a timing file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
from av.container import OutputContainer
from av.stream import Stream

log = logging.getLogger(__name__)

Kind = Literal["audio", "video"]
# The encoders PyAV opens for the stream headers only (never fed a frame): libvpx for the
# Matroska track entry, libopus because it writes the OpusHead CodecPrivate (RFC 7845 §5.1).
ENCODER = {"video": "libvpx", "audio": "libopus"}
MIME = {"video": "video/VP8", "audio": "audio/opus"}
# Until every expected track has a usable first packet (video: a keyframe) the packets wait;
# a track that has sent nothing by then is left out of this segment (Matroska tracks are fixed
# once the header is written).
START_WAIT_SECONDS = 5.0
MAX_WAITING_PACKETS = 600
DEFAULT_VIDEO_SIZE = (640, 480)
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def vp8_is_keyframe(data: bytes | memoryview) -> bool:
    """A VP8 frame's tag says key frame (RFC 6386 §9.1: bit 0 of the first byte is 0)."""
    return len(data) >= 10 and (data[0] & 0x01) == 0


def vp8_keyframe_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """Width and height from a VP8 key frame header (RFC 6386 §9.1), or None if `data` is not one."""
    if not vp8_is_keyframe(data) or bytes(data[3:6]) != b"\x9d\x01\x2a":
        return None
    width = (data[6] | data[7] << 8) & 0x3FFF
    height = (data[8] | data[9] << 8) & 0x3FFF
    return (width, height) if width and height else None


def room_directory(recordings: Path, room: str) -> Path:
    """Where a room's segments go: recordings/<room with ':' replaced by '_'>/."""
    return recordings / room.replace(":", "_")


def safe_name(text: str) -> str:
    """A file-name-safe form of a participant id (anything but letters, digits, '_', '.', '-' becomes '_')."""
    return _SAFE.sub("_", text)[:80] or "_"


def iso(moment: float) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds."""
    dt = datetime.fromtimestamp(moment, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Segment:
    """One closed recording: a WebM file whose digest goes into the transparency log."""

    room: str
    path: Path
    sha256: str
    bytes: int
    started_at: datetime
    ended_at: datetime
    tracks: tuple[str, ...]  # MIME types of the tracks in the file, e.g. ("video/VP8", "audio/opus")
    timing_path: Path


@dataclass
class _Track:
    kind: Kind
    first_wall: float | None = None  # epoch seconds at the first packet kept
    first_pts: int = 0
    offset: int = 0  # file pts of the first packet: its wall-clock distance from the segment start
    last_pts: int | None = None
    packets: int = 0
    bytes: int = 0
    skipped: int = 0
    stream: Stream | None = None
    time_base: Fraction = field(default_factory=lambda: Fraction(1, 90000))


class SegmentRecorder:
    """Writes the packets of one publisher connection to `<dir>/<participant>-<time>-<rand>.webm`.

    `write(kind, packet)` is called on the event loop for every packet received (pts = RTP
    timestamp, time_base = 1/clock rate). Each track's file time starts at its own first
    packet, shifted by that packet's wall-clock distance from the segment's first packet, so
    the tracks line up to within network jitter; the exact first-packet wall times go into
    `<same name>.timing.json`. `close()` finishes the file and returns its Segment, or None
    when nothing was recorded (then no file is left behind).
    """

    def __init__(self, directory: Path, room: str, participant: str, kinds: tuple[Kind, ...]) -> None:
        if not kinds:
            raise ValueError("a segment records at least one track")
        self.room = room
        self.directory = directory
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = f"{safe_name(participant)}-{stamp}-{secrets.token_hex(3)}"
        self.path = directory / f"{base}.webm"
        self.timing_path = directory / f"{base}.timing.json"
        self._tracks: dict[Kind, _Track] = {k: _Track(k) for k in kinds}
        self._waiting: list[tuple[Kind, av.Packet, float]] = []
        self._first_arrival: float | None = None
        self._container: OutputContainer | None = None
        self._started_at: float | None = None
        self._closed = False
        self.errors = 0

    @property
    def started(self) -> bool:
        return self._container is not None

    def write(self, kind: Kind, packet: av.Packet, wall: float | None = None) -> None:
        """Record one packet (copied: the caller keeps its own). Packets after close are ignored."""
        track = self._tracks.get(kind)
        if self._closed or track is None:
            return
        wall = time.time() if wall is None else wall
        if self._container is None:
            self._wait(kind, packet, wall)
            return
        self._mux(track, packet, wall)

    def _wait(self, kind: Kind, packet: av.Packet, wall: float) -> None:
        if self._first_arrival is None:
            self._first_arrival = wall
        if kind == "video" and not any(k == "video" for k, _, _ in self._waiting):
            # Nothing decodes before the first keyframe: do not keep it.
            if not vp8_is_keyframe(memoryview(packet)):
                self._tracks["video"].skipped += 1
                return
        self._waiting.append((kind, _copy(packet), wall))
        have = {k for k, _, _ in self._waiting}
        if (have == set(self._tracks) or len(self._waiting) >= MAX_WAITING_PACKETS
                or wall - self._first_arrival >= START_WAIT_SECONDS):
            self._start()

    def _start(self) -> None:
        waiting, self._waiting = self._waiting, []
        present = [k for k in self._tracks if any(w[0] == k for w in waiting)]
        for kind in [k for k in self._tracks if k not in present]:
            log.warning("segment %s: no %s arrived within %.0f s; recorded without it", self.path.name, kind,
                        START_WAIT_SECONDS)
            del self._tracks[kind]
        self.directory.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.path), "w", format="webm")
        for kind in present:
            track = self._tracks[kind]
            if kind == "video":
                first_video = next(p for k, p, _ in waiting if k == "video")
                width, height = vp8_keyframe_size(memoryview(first_video)) or DEFAULT_VIDEO_SIZE
                stream = container.add_stream(ENCODER["video"], rate=30)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"  # type: ignore[attr-defined]
            else:
                stream = container.add_stream(ENCODER["audio"], rate=48000)
                stream.layout = "stereo"  # type: ignore[attr-defined]  # Opus in SDP is always opus/48000/2
            track.stream = stream
        self._container = container
        self._started_at = min(w for _, _, w in waiting)
        for kind, packet, wall in waiting:
            self._mux(self._tracks[kind], packet, wall)

    def _mux(self, track: _Track, packet: av.Packet, wall: float) -> None:
        assert self._container is not None and self._started_at is not None and track.stream is not None
        pts = packet.pts
        if pts is None:
            return
        if track.first_wall is None:
            track.first_wall, track.first_pts = wall, pts
            track.time_base = Fraction(packet.time_base.numerator, packet.time_base.denominator)
            track.offset = round((wall - self._started_at) / track.time_base)
        pts = pts - track.first_pts + track.offset
        if track.last_pts is not None and pts <= track.last_pts:
            track.skipped += 1  # Matroska needs increasing timestamps per track
            return
        out = _copy(packet)
        out.pts = out.dts = pts
        out.time_base = track.time_base
        out.stream = track.stream
        out.is_keyframe = track.kind == "audio" or vp8_is_keyframe(memoryview(packet))
        try:
            self._container.mux(out)
        except (av.FFmpegError, ValueError) as exc:
            self.errors += 1
            if self.errors in (1, 100):
                log.warning("segment %s: could not write a %s packet: %s", self.path.name, track.kind, exc)
            return
        track.last_pts = pts
        track.packets += 1
        track.bytes += packet.size

    async def close(self) -> Segment | None:
        """Finish the file (trailer, timing file), hash it off the event loop; None if nothing was recorded."""
        if self._closed:
            return None
        self._closed = True
        if self._container is None and self._waiting:
            self._start()
        container, self._container = self._container, None
        if container is None:
            return None
        ended = time.time()
        await asyncio.to_thread(container.close)
        timing = self._timing(ended)
        await asyncio.to_thread(self.timing_path.write_text, json.dumps(timing, indent=2) + "\n")
        digest, size = await asyncio.to_thread(_sha256, self.path)
        assert self._started_at is not None
        return Segment(
            room=self.room, path=self.path, sha256=digest, bytes=size,
            started_at=datetime.fromtimestamp(self._started_at, timezone.utc),
            ended_at=datetime.fromtimestamp(ended, timezone.utc),
            tracks=tuple(MIME[t.kind] for t in self._tracks.values() if t.stream is not None),
            timing_path=self.timing_path)

    def _timing(self, ended: float) -> dict[str, Any]:
        assert self._started_at is not None
        return {
            "room": self.room, "segment": self.path.name, "started_at": iso(self._started_at), "ended_at": iso(ended),
            "tracks": [{
                "kind": t.kind, "codec": MIME[t.kind], "stream_index": t.stream.index if t.stream else None,
                "first_packet_at": iso(t.first_wall) if t.first_wall is not None else None,
                "first_rtp_timestamp": t.first_pts, "time_base": str(t.time_base),
                "file_offset_seconds": float(t.offset * t.time_base),
                "packets": t.packets, "bytes": t.bytes, "skipped": t.skipped,
            } for t in self._tracks.values()],
        }


def _copy(packet: av.Packet) -> av.Packet:
    out = av.Packet(bytes(packet))
    out.pts, out.dts, out.time_base = packet.pts, packet.dts, packet.time_base
    return out


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
