"""aiortc peers for the media hub's tests and bench/hall_video.py: a cheap pre-encoded publisher and counting viewers."""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tenderhall import rtc_packets

LOOPBACK = ("127.0.0.1",)
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def vp8_frames(width: int, height: int, count: int, *, keyint: int = 30, bitrate: int = 1_000_000,
               seed: int = 1) -> list[bytes]:
    """`count` VP8 frames of a moving blocky pattern, a keyframe every `keyint`; distinct for distinct seeds."""
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.framerate = 30
    enc.bit_rate = bitrate
    enc.gop_size = keyint
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "end-usage": "cbr"}
    rng = random.Random(seed)
    # 16x16 blocks: textured enough for a realistic bitrate, smooth enough for sane keyframes.
    blocks = [bytes(rng.randrange(256) for _ in range(width // 16)) for _ in range(height // 16)]
    rows = [bytes(b for b in block for _ in range(16)) for block in blocks for _ in range(16)]
    u_value = bytes([(seed * 40) % 256])
    frames: list[bytes] = []
    for i in range(count):
        shift = (i * 7) % width
        bar = (i * 5) % height
        y = b"".join(b"\xff" * width if bar <= r < bar + 16 else row[-shift:] + row[:-shift] if shift else row
                     for r, row in enumerate(rows))
        chroma = (width // 2) * (height // 2)
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane, data in zip(frame.planes, (y, bytes([(i * 8) % 256]) * chroma, u_value * chroma)):
            plane.update(data)
        frame.pts, frame.time_base = i, enc.time_base
        frames += [bytes(p) for p in enc.encode(frame)]
    frames += [bytes(p) for p in enc.encode(None)]
    if len(frames) != count or len(set(frames)) != count:
        raise RuntimeError(f"expected {count} distinct VP8 frames, got {len(frames)} ({len(set(frames))} distinct)")
    return frames


def opus_packets(count: int, *, hz: float = 440.0) -> list[bytes]:
    """`count` 20 ms Opus packets of a stereo tone at 48 kHz."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "stereo", "s16"
    enc.time_base = AUDIO_TIME_BASE
    enc.bit_rate = 32000
    packets: list[bytes] = []
    i = 0
    while len(packets) < count:
        samples = array.array("h", (int(math.sin(2 * math.pi * hz * (n + i * 960) / 48000) * 8000)
                                    for n in range(960) for _ in range(2)))
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, AUDIO_TIME_BASE
        packets += [bytes(p) for p in enc.encode(frame)]
        i += 1
    return packets[:count]


class PacketSource(MediaStreamTrack):
    """Sends pre-encoded frames in a loop at real-time pace; aiortc packetises them without encoding."""

    def __init__(self, kind: str, payloads: list[bytes], fps: float) -> None:
        super().__init__()
        self.kind = kind
        self.payloads = payloads
        self.interval = 1 / fps
        self.step = round((90000 if kind == "video" else 48000) / fps)
        self.time_base = VIDEO_TIME_BASE if kind == "video" else AUDIO_TIME_BASE
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self.sent * self.interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self.payloads[self.sent % len(self.payloads)])
        packet.pts = packet.dts = self.sent * self.step
        packet.time_base = self.time_base
        self.sent += 1
        return packet


def configuration() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


async def make_offer(pc: RTCPeerConnection) -> dict[str, str]:
    """The complete offer (candidates gathered on loopback) as the JSON a browser would POST."""
    with rtc_packets.host_addresses(LOOPBACK):
        await pc.setLocalDescription(await pc.createOffer())
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}


async def accept(pc: RTCPeerConnection, answer: dict[str, str]) -> None:
    with rtc_packets.host_addresses(LOOPBACK):
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))


class PublisherPeer:
    """A publisher sending `video` and `audio` payload loops (either may be None)."""

    def __init__(self, video: list[bytes] | None, audio: list[bytes] | None, fps: float = 30) -> None:
        self.pc = RTCPeerConnection(configuration())
        self.video = PacketSource("video", video, fps) if video else None
        self.audio = PacketSource("audio", audio, 50) if audio else None
        for track in (self.video, self.audio):
            if track is not None:
                self.pc.addTrack(track)
        self.keyframe_requests = 0
        for sender in self.pc.getSenders():
            if sender.kind == "video":
                rtc_packets.on_keyframe_request(sender, self._count_keyframe_request)

    def _count_keyframe_request(self) -> None:
        self.keyframe_requests += 1

    async def offer(self) -> dict[str, str]:
        return await make_offer(self.pc)

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class Received:
    """What a viewer got on one track: arrival times, and the payloads when asked to keep them."""

    arrivals: list[float] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)

    def rate(self, since: float, until: float) -> float:
        """Frames per second that arrived in [since, until)."""
        n = sum(1 for t in self.arrivals if since <= t < until)
        return n / (until - since)


class ViewerPeer:
    """A receive-only viewer that counts encoded frames (never decoding) and optionally keeps their bytes."""

    def __init__(self, *, keep: bool = False, send_video: list[bytes] | None = None, remb: bool = True) -> None:
        self.pc = RTCPeerConnection(configuration())
        self.keep = keep
        self.remb = remb
        self.received: dict[str, Received] = {"video": Received(), "audio": Received()}
        self._tasks: list[asyncio.Task[None]] = []
        if send_video is not None:
            # A viewer that tries to send: its video section is offered sendrecv.
            self.pc.addTransceiver(PacketSource("video", send_video, 30), direction="sendrecv")
        else:
            self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")

    async def offer(self) -> dict[str, str]:
        offer = await make_offer(self.pc)
        if not self.remb:
            # Without abs-send-time aiortc's receiver sends no REMB; with it, it sends one RTCP
            # packet per video packet or so, where a browser sends a few a second.
            offer["sdp"] = "".join(line for line in offer["sdp"].splitlines(keepends=True)
                                   if ABS_SEND_TIME not in line)
        return offer

    async def accept(self, answer: dict[str, Any]) -> None:
        await accept(self.pc, answer)
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if receiver.track is not None and transceiver.currentDirection in ("recvonly", "sendrecv"):
                rtc_packets.receive_packets(receiver)
                self._tasks.append(asyncio.create_task(self._count(transceiver.kind, receiver.track)))

    async def _count(self, kind: str, track: MediaStreamTrack) -> None:
        got = self.received[kind]
        try:
            while True:
                packet = await track.recv()
                got.arrivals.append(time.monotonic())
                if self.keep:
                    got.payloads.append(bytes(packet))
        except MediaStreamError:
            pass

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
