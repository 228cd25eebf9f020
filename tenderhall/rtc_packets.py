"""The one adapter over aiortc/aioice internals: encoded-frame receiving, keyframe requests, ICE host addresses.

Everything here relies on private behaviour of aiortc 1.16.0 and aioice 0.13.0, pinned
exactly in pyproject.toml. `check_internals()` runs at import and fails with
`RtcInternalsChanged` when a version differs or an attribute named below is gone; the
per-object functions check again on the instances they touch. What is relied on:

* `aiortc.rtcrtpreceiver.RTCRtpReceiver`:
  - `_RTCRtpReceiver__decoder_queue` (a `queue.Queue`) receives `(codec, JitterFrame)`
    tuples from `_handle_rtp_packet` on the event loop, once per complete encoded frame,
    with `JitterFrame.timestamp` already unwrapped from the RTP timestamp (starting at 0)
    and `JitterFrame.data` the depayloaded frame; `None` is put there to stop.
  - `receive()` hands that queue to a thread running `decoder_worker`, which is why the
    queue must be replaced before `receive()` runs (`_RTCRtpReceiver__decoder_thread` is
    still `None` then). The worker thread is left running idle: it only ever sees the
    final `None`, on which it ends the track as aiortc always does.
  - `_track._queue` is the `asyncio.Queue` that `RemoteStreamTrack.recv()` reads.
  - `_RTCRtpReceiver__rtx_ssrc` maps retransmission SSRCs to media SSRCs, and
    `_send_rtcp_pli(media_ssrc)` sends an RTCP PLI to the remote sender.
* `aiortc.rtcrtpsender.RTCRtpSender._send_keyframe()` is what `_handle_rtcp_packet` calls
  on a received PLI or FIR; an instance attribute of that name shadows it. (The packet path
  never encodes, so the sender's own `__force_keyframe` flag would be ignored.)
* `aioice.ice.get_host_addresses(use_ipv4, use_ipv6)` is looked up as a module global by
  `Connection.gather_candidates()`; it never returns 127.0.0.1. It is wrapped once so that
  `host_addresses()` can choose the addresses for the connections gathered inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fractions
import ipaddress
import logging
import queue
from typing import Any, Callable, Iterator

import aioice
import aioice.ice
import aiortc
import av
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc import rtcrtpreceiver

log = logging.getLogger(__name__)

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"
# A consumer that stops draining must not grow memory without bound (WEBRTC.md); at 30 fps
# this is about 17 s of video, far beyond any healthy backlog, so hitting it means a bug.
MAX_QUEUED_PACKETS = 512

_RECEIVER_ATTRS = ("_RTCRtpReceiver__decoder_queue", "_RTCRtpReceiver__decoder_thread",
                   "_RTCRtpReceiver__rtx_ssrc", "_track")


class RtcInternalsChanged(RuntimeError):
    """aiortc or aioice is not the version (or does not have the internals) this module was written for."""


def check_internals() -> None:
    """Raise RtcInternalsChanged unless aiortc 1.16.0 and aioice 0.13.0 with the internals above are installed."""
    found = {"aiortc": getattr(aiortc, "__version__", "?"), "aioice": getattr(aioice, "__version__", "?")}
    wanted = {"aiortc": AIORTC_VERSION, "aioice": AIOICE_VERSION}
    for name, version in wanted.items():
        if found[name] != version:
            raise RtcInternalsChanged(
                f"tenderhall.rtc_packets relies on private {name} {version} behaviour but {name} "
                f"{found[name]} is installed: re-check every item in its docstring, then update the pin")
    missing = [f"RTCRtpReceiver.{n}" for n in ("_send_rtcp_pli", "_handle_rtp_packet", "receive")
               if not callable(getattr(RTCRtpReceiver, n, None))]
    missing += [f"RTCRtpSender.{n}" for n in ("_send_keyframe", "_handle_rtcp_packet")
                if not callable(getattr(RTCRtpSender, n, None))]
    if not callable(getattr(rtcrtpreceiver, "decoder_worker", None)):
        missing.append("aiortc.rtcrtpreceiver.decoder_worker")
    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        missing.append("aioice.ice.get_host_addresses")
    if missing:
        raise RtcInternalsChanged(f"aiortc/aioice internals used by tenderhall.rtc_packets are gone: {missing}")


check_internals()


# --- receiving encoded frames ----------------------------------------------------------------


class _PacketQueue(queue.Queue):  # type: ignore[type-arg]
    """Stands in for the receiver's decoder queue: each complete frame becomes an av.Packet on the track.

    `put()` is called on the event loop by `_handle_rtp_packet`, so the packet goes straight
    into the track's asyncio queue; only the final `None` goes through to aiortc's worker
    thread, which then ends the track exactly as it would have after decoding.
    """

    def __init__(self, kind: str, track_queue: asyncio.Queue[Any]) -> None:
        super().__init__()
        self.kind = kind
        self.track_queue = track_queue
        self.dropped = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
            return
        codec, frame = item
        packet = av.Packet(frame.data)
        # pts = the unwrapped RTP timestamp (0 at the first frame), in the codec's clock:
        # 1/90000 for video, 1/48000 for Opus (RFC 7587 §4.1).
        packet.pts = packet.dts = frame.timestamp
        packet.time_base = fractions.Fraction(1, codec.clockRate)
        if self.track_queue.qsize() >= MAX_QUEUED_PACKETS:
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 1000 == 0:
                log.warning("%s packets are not being drained: %d dropped", self.kind, self.dropped)
            return
        self.track_queue.put_nowait(packet)


def receive_packets(receiver: RTCRtpReceiver) -> None:
    """Make `receiver.track.recv()` return each complete encoded frame as an av.Packet, never decoding.

    Call it after setRemoteDescription (the track exists) and before the connection is
    established (aiortc calls `receive()` then). The packet's pts is the frame's RTP
    timestamp counted from the first one, time_base 1/clock rate. The track ends
    (MediaStreamError) when the receiver stops. Raises RtcInternalsChanged when the
    receiver lacks what this relies on, and ValueError when there is no remote track yet
    or receiving has already started.
    """
    missing = [name for name in _RECEIVER_ATTRS if not hasattr(receiver, name)]
    if missing or not isinstance(getattr(receiver, "_RTCRtpReceiver__decoder_queue", None), queue.Queue):
        raise RtcInternalsChanged(f"RTCRtpReceiver lacks the internals receive_packets needs: {missing or 'decoder queue'}")
    track = receiver.track
    if track is None:
        raise ValueError("the receiver has no remote track: call receive_packets after setRemoteDescription")
    if receiver._RTCRtpReceiver__decoder_thread is not None:  # type: ignore[attr-defined]
        raise ValueError("the receiver is already decoding: call receive_packets before the connection is made")
    receiver._RTCRtpReceiver__decoder_queue = _PacketQueue(track.kind, track._queue)  # type: ignore[attr-defined]


# --- keyframe requests -----------------------------------------------------------------------


def media_ssrc(receiver: RTCRtpReceiver) -> int | None:
    """The SSRC of the media the receiver heard most recently (retransmission SSRCs left out), or None."""
    rtx = set(getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {}))
    sources = [s for s in receiver.getSynchronizationSources() if s.source not in rtx]
    if not sources:
        return None
    return max(sources, key=lambda s: s.timestamp).source


async def send_pli(receiver: RTCRtpReceiver) -> bool:
    """Ask the remote sender for a keyframe (RTCP PLI, RFC 4585 §6.3.1); False when no media was heard yet."""
    ssrc = media_ssrc(receiver)
    if ssrc is None:
        return False
    await receiver._send_rtcp_pli(ssrc)  # type: ignore[attr-defined]
    return True


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` (on the event loop, synchronously) whenever the remote peer sends PLI or FIR for this sender."""
    if not callable(getattr(type(sender), "_send_keyframe", None)):
        raise RtcInternalsChanged("RTCRtpSender._send_keyframe is gone: keyframe requests cannot be passed on")
    sender._send_keyframe = callback  # type: ignore[method-assign]


# --- ICE host addresses ----------------------------------------------------------------------

_HOST_ADDRESSES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "tenderhall_ice_host_addresses", default=None)
_ORIGINAL_GET_HOST_ADDRESSES: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _HOST_ADDRESSES.get()
    if chosen is None:
        return _ORIGINAL_GET_HOST_ADDRESSES(use_ipv4, use_ipv6)
    return [a for a in chosen if (use_ipv4 if ipaddress.ip_address(a).version == 4 else use_ipv6)]


@contextlib.contextmanager
def host_addresses(addresses: tuple[str, ...]) -> Iterator[None]:
    """ICE candidates gathered inside this block (in this task and tasks it starts) use exactly `addresses`.

    An empty tuple keeps aioice's own choice (every interface but loopback). The hook is
    installed into aioice on first use; outside such a block aioice behaves as shipped.
    Raises ValueError for an address that is not an IP address.
    """
    for address in addresses:
        ipaddress.ip_address(address)
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses
    token = _HOST_ADDRESSES.set(tuple(addresses) or None)
    try:
        yield
    finally:
        _HOST_ADDRESSES.reset(token)
