"""The platform's WebRTC media hub: receives each room's publisher, forwards its encoded frames to viewers, records them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any, Awaitable, Callable

import av
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tenderhall import rtc_packets
# MediaRefused is raised by the hub's methods; callers import it from here.
from tenderhall.media_offer import FORWARDED, MediaRefused, answer_direction, ice_configuration, parse_offer
from tenderhall.media_recorder import Kind, Segment, SegmentRecorder, room_directory, vp8_is_keyframe
from tenderhall.settings import Settings

log = logging.getLogger(__name__)

OnSegment = Callable[[Segment], Awaitable[None]]

ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
# A pause between two publisher connections: the next timestamp continues one frame later.
TIMESTAMP_STEP = {"video": 3000, "audio": 960}  # 1/30 s at 90 kHz, 20 ms at 48 kHz
# Per-viewer backlog: about one second. Beyond it the viewer's sender is not keeping up.
VIEWER_QUEUE = {"video": 30, "audio": 50}
# Viewers joining together, or losing packets together, ask for keyframes together; the
# publisher is asked at most this often (a keyframe costs it 5-10 ordinary frames of bitrate).
KEYFRAME_MIN_INTERVAL = 0.5
DEFAULT_MAX_VIEWERS = 500
# After the connection closes, aiortc ends each started track within a loop turn or two.
PUMP_END_WAIT = 1.0


def _codec_preferences(kind: str) -> list[Any]:
    """Only the forwardable codec (and its retransmission format), so the negotiated first codec is VP8 or Opus."""
    wanted = {f"{kind}/{FORWARDED[kind]}", f"{kind}/rtx"}
    caps = RTCRtpSender.getCapabilities(kind)
    return [c for c in caps.codecs if c.mimeType.lower() in wanted]


def _check_names(room: str, participant: str) -> None:
    if not isinstance(room, str) or not ROOM_NAME.fullmatch(room):
        raise MediaRefused("bad_room", "a room name is 1-200 letters, digits, '_', '.', ':' or '-', "
                                       "starting with a letter or digit", status=400)
    if not isinstance(participant, str) or not participant or len(participant) > 200:
        raise MediaRefused("bad_participant", "a participant id is 1-200 characters", status=400)


# --- forwarding ------------------------------------------------------------------------------


class _Fanout:
    """One room's audio or video: packets from the current publisher go to every subscribed viewer track."""

    def __init__(self, kind: Kind, room: "_Room") -> None:
        self.kind = kind
        self.room = room
        self.subscribers: set[_ViewerTrack] = set()
        self.source: object | None = None
        self.offset = 0
        self.last_pts: int | None = None
        self.forwarded = 0

    def subscribe(self) -> "_ViewerTrack":
        track = _ViewerTrack(self)
        self.subscribers.add(track)
        return track

    def push(self, source: object, packet: av.Packet) -> None:
        """Forward one packet; the hub owns it, so its pts is shifted in place onto the room's timeline."""
        assert packet.pts is not None
        if source is not self.source:
            # A new publisher connection restarts its RTP timestamps at 0: continue the viewers'
            # timeline instead, so their jitter buffers see no jump back.
            self.source = source
            self.offset = 0 if self.last_pts is None else self.last_pts + TIMESTAMP_STEP[self.kind] - packet.pts
            if self.kind == "video":
                for track in self.subscribers:
                    track.awaiting_keyframe = True
                self.room.request_keyframe()
        packet.pts = packet.dts = packet.pts + self.offset
        self.last_pts = packet.pts
        keyframe = self.kind == "audio" or vp8_is_keyframe(memoryview(packet))
        for track in self.subscribers:
            track.offer(packet, keyframe)


class _ViewerTrack(MediaStreamTrack):
    """What one viewer's sender reads: the room's packets from the first keyframe on, a bounded backlog."""

    def __init__(self, fanout: _Fanout) -> None:
        super().__init__()
        self.kind = fanout.kind
        self.fanout = fanout
        self.queue: asyncio.Queue[av.Packet | None] = asyncio.Queue(VIEWER_QUEUE[fanout.kind])
        # The sender starts reading once the viewer's connection is up; until then nothing is kept.
        self.reading = False
        self.awaiting_keyframe = fanout.kind == "video"

    def offer(self, packet: av.Packet, keyframe: bool) -> None:
        if not self.reading or self.readyState != "live":
            return
        if self.awaiting_keyframe:
            if not keyframe:
                return
            self.awaiting_keyframe = False
        if self.queue.full():
            if self.kind == "video":
                # A dropped video frame breaks every frame after it: start again at a keyframe.
                while not self.queue.empty():
                    self.queue.get_nowait()
                self.awaiting_keyframe = True
                self.fanout.room.request_keyframe()
                return
            self.queue.get_nowait()  # audio: the oldest 20 ms go
        self.queue.put_nowait(packet)
        self.fanout.forwarded += 1

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if not self.reading:
            self.reading = True
            if self.kind == "video":
                self.fanout.room.request_keyframe()
        packet = await self.queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        self.fanout.subscribers.discard(self)
        if self.readyState == "live":
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
        super().stop()


# --- connections -----------------------------------------------------------------------------


class _Connection:
    """One peer connection of a participant in a room; closing is idempotent."""

    def __init__(self, hub: "MediaHub", room: "_Room", participant: str, pc: RTCPeerConnection) -> None:
        self.hub, self.room, self.participant, self.pc = hub, room, participant, pc
        self.closed = False

        @pc.on("connectionstatechange")
        def on_state() -> None:
            # "closed" without our close: the peer ended DTLS (a closed tab) and aiortc closed.
            if pc.connectionState in ("failed", "closed") and not self.closed:
                self.closed = True
                hub._spawn(hub._drop(self))

    async def close_connection(self) -> None:
        self.closed = True
        await self.pc.close()


class _Viewer(_Connection):
    def __init__(self, hub: "MediaHub", room: "_Room", participant: str, pc: RTCPeerConnection) -> None:
        super().__init__(hub, room, participant, pc)
        self.tracks: list[_ViewerTrack] = []

    async def close_connection(self) -> None:
        for track in self.tracks:
            track.stop()
        await super().close_connection()


class _Publisher(_Connection):
    """The room's source: each received track is drained by a pump that records and forwards its packets."""

    def __init__(self, hub: "MediaHub", room: "_Room", participant: str, pc: RTCPeerConnection,
                 recorder: SegmentRecorder) -> None:
        super().__init__(hub, room, participant, pc)
        self.recorder = recorder
        self.pumps: list[asyncio.Task[None]] = []
        self.video_receiver: RTCRtpReceiver | None = None
        self.received = 0
        self.keyframe_requests = 0
        self._last_pli = -KEYFRAME_MIN_INTERVAL
        self._pli_later: asyncio.TimerHandle | None = None
        self._segment: asyncio.Future[Segment | None] | None = None
        self.handed_on = False

    def start(self, pc: RTCPeerConnection) -> None:
        """After setRemoteDescription: switch each receiver to encoded packets and start draining it."""
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            if transceiver.direction != "recvonly" or receiver.track is None:
                continue
            rtc_packets.receive_packets(receiver)
            kind: Kind = "video" if transceiver.kind == "video" else "audio"
            if kind == "video":
                self.video_receiver = receiver
            self.pumps.append(asyncio.create_task(self._pump(kind, receiver.track), name=f"media-pump-{kind}"))

    async def _pump(self, kind: Kind, track: MediaStreamTrack) -> None:
        fanout = self.room.fanouts[kind]
        try:
            while True:
                packet = await track.recv()
                self.received += 1
                # The recorder copies; only then may the fanout shift this packet's pts.
                self.recorder.write(kind, packet)
                if self.room.publisher is self:
                    fanout.push(self, packet)
        except MediaStreamError:
            pass  # the track ended: the connection closed or the publisher said BYE
        except Exception:  # noqa: BLE001 - logged, and the connection is dropped rather than left undrained
            log.exception("room %s: the %s pump of %s failed", self.room.name, kind, self.participant)
        if not self.closed and all(p.done() or p is asyncio.current_task() for p in self.pumps):
            self.closed = True
            self.hub._spawn(self.hub._drop(self))

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe now, or once KEYFRAME_MIN_INTERVAL has passed since the last ask."""
        if self.closed or self.video_receiver is None or self._pli_later is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_pli + KEYFRAME_MIN_INTERVAL - loop.time()
        if wait > 0:
            self._pli_later = loop.call_later(wait, self._send_pli)
        else:
            self._send_pli()

    def _send_pli(self) -> None:
        self._pli_later = None
        if self.closed or self.video_receiver is None:
            return
        self._last_pli = asyncio.get_running_loop().time()
        self.keyframe_requests += 1
        self.hub._spawn(rtc_packets.send_pli(self.video_receiver))

    async def finish(self) -> Segment | None:
        """Close the connection, let the pumps drain, close the recording; once, whoever asks first."""
        if self._segment is None:
            self._segment = asyncio.ensure_future(self._finish())
        return await asyncio.shield(self._segment)

    async def _finish(self) -> Segment | None:
        if self._pli_later is not None:
            self._pli_later.cancel()
            self._pli_later = None
        await self.close_connection()
        # A receiver that never started (the peer never connected) never ends its track.
        if self.pumps:
            _, pending = await asyncio.wait(self.pumps, timeout=PUMP_END_WAIT)
            for pump in pending:
                pump.cancel()
            await asyncio.gather(*self.pumps, return_exceptions=True)
        return await self.recorder.close()


class _Room:
    def __init__(self, name: str) -> None:
        self.name = name
        self.fanouts: dict[Kind, _Fanout] = {"video": _Fanout("video", self), "audio": _Fanout("audio", self)}
        self.publisher: _Publisher | None = None
        self.viewers: dict[str, _Viewer] = {}
        self.joining = 0
        self.publish_lock = asyncio.Lock()

    def request_keyframe(self) -> None:
        if self.publisher is not None:
            self.publisher.request_keyframe()

    @property
    def idle(self) -> bool:
        return self.publisher is None and not self.viewers and not self.joining and not self.publish_lock.locked()


# --- the hub ---------------------------------------------------------------------------------


class MediaHub:
    """Every WebRTC peer connection of the platform, by room: one publisher each, up to `max_viewers` viewers.

    The publisher's VP8 and Opus frames are received as encoded packets (tenderhall.rtc_packets),
    forwarded to every viewer of the room without decoding and recorded into one WebM segment
    per publisher connection under data_dir/recordings/<room>/; each closed segment is handed
    to `on_segment`. Viewers are receive-only and may join before the publisher.
    """

    def __init__(self, settings: Settings, on_segment: OnSegment | None = None, *,
                 max_viewers: int = DEFAULT_MAX_VIEWERS) -> None:
        if max_viewers < 1:
            raise ValueError("max_viewers must be at least 1")
        self.settings = settings
        self.configuration = ice_configuration(settings)  # checked now: a bad URL fails at start-up
        self.on_segment = on_segment
        self.max_viewers = max_viewers
        self.recordings = settings.data_dir / "recordings"
        self._rooms: dict[str, _Room] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- public API

    async def publish(self, room: str, participant: str, offer: dict[str, Any]) -> dict[str, str]:
        """Answer a publisher's offer; its media is received, forwarded to the room's viewers and recorded.

        A new publish by the same participant replaces their connection (viewers continue with
        the new one from its next keyframe, which is requested). Raises MediaRefused: the offer
        (see parse_offer), nothing_to_publish (no section sends), room_has_publisher (409,
        another participant publishes here), hub_closed (503).
        """
        _check_names(room, participant)
        sections = parse_offer(offer)
        if not any(answer_direction("publish", s.direction) == "recvonly" for s in sections):
            raise MediaRefused("nothing_to_publish", "the offer sends no audio or video")
        r = self._room(room)
        try:
            async with r.publish_lock:
                current = r.publisher
                if current is not None and current.participant != participant:
                    raise MediaRefused("room_has_publisher", f"{current.participant} is publishing in this room", 409)
                pc = RTCPeerConnection(self.configuration)
                kinds: list[Kind] = []
                for s in sections:
                    direction = answer_direction("publish", s.direction)
                    self._add_transceiver(pc, s.kind, direction)
                    if direction == "recvonly":
                        kinds.append("video" if s.kind == "video" else "audio")
                recorder = SegmentRecorder(room_directory(self.recordings, room), room, participant, tuple(kinds))
                publisher = _Publisher(self, r, participant, pc, recorder)
                try:
                    answer = await self._negotiate(pc, offer, after_remote=publisher.start)
                    self._check_open(r)
                except BaseException:
                    await publisher.finish()
                    raise
                r.publisher = publisher
                if current is not None:
                    # The old connection stops now, so only the new one feeds the viewers; its
                    # segment is finished (and logged) without holding up this answer.
                    await current.close_connection()
                    self._spawn(self._finish_publisher(current))
        except BaseException:
            self._forget_if_idle(r)
            raise
        return answer

    async def view(self, room: str, participant: str, offer: dict[str, Any]) -> dict[str, str]:
        """Answer a viewer's offer with sendonly (or inactive) sections only: the hub never receives from a viewer.

        Works before the room has a publisher. A new view by the same participant replaces
        their connection. Raises MediaRefused: the offer (see parse_offer), nothing_to_receive,
        room_full (503, max_viewers reached), hub_closed (503).
        """
        _check_names(room, participant)
        sections = parse_offer(offer)
        if not any(answer_direction("view", s.direction) == "sendonly" for s in sections):
            raise MediaRefused("nothing_to_receive", "the offer receives no audio or video")
        r = self._room(room)
        if participant not in r.viewers and len(r.viewers) + r.joining >= self.max_viewers:
            self._forget_if_idle(r)
            raise MediaRefused("room_full", f"this room already has {self.max_viewers} viewers", 503)
        r.joining += 1
        pc = RTCPeerConnection(self.configuration)
        viewer = _Viewer(self, r, participant, pc)
        try:
            for s in sections:
                direction = answer_direction("view", s.direction)
                transceiver = self._add_transceiver(pc, s.kind, direction)
                if direction == "sendonly":
                    track = r.fanouts["video" if s.kind == "video" else "audio"].subscribe()
                    viewer.tracks.append(track)
                    transceiver.sender.replaceTrack(track)
                    rtc_packets.on_keyframe_request(transceiver.sender, r.request_keyframe)
            answer = await self._negotiate(pc, offer, after_remote=_stop_remote_tracks)
            self._check_open(r)
        except BaseException:
            r.joining -= 1
            await viewer.close_connection()
            self._forget_if_idle(r)
            raise
        r.joining -= 1
        old = r.viewers.get(participant)
        r.viewers[participant] = viewer
        if old is not None:
            await old.close_connection()
        return answer

    async def leave(self, room: str, participant: str) -> None:
        """Close the participant's connections in the room; their segment is finished and handed on before this returns."""
        r = self._rooms.get(room)
        if r is None:
            return
        viewer = r.viewers.pop(participant, None)
        if viewer is not None:
            await viewer.close_connection()
        publisher = r.publisher
        if publisher is not None and publisher.participant == participant:
            r.publisher = None
            await self._finish_publisher(publisher)
        self._forget_if_idle(r)

    async def close_room(self, room: str) -> None:
        """Close every connection of the room and finish its recording."""
        r = self._rooms.pop(room, None)
        if r is None:
            return
        viewers, r.viewers = list(r.viewers.values()), {}
        publisher, r.publisher = r.publisher, None
        await asyncio.gather(*(v.close_connection() for v in viewers))
        if publisher is not None:
            await self._finish_publisher(publisher)

    async def close(self) -> None:
        """Close every peer connection and finish every recording (at application shutdown)."""
        self._closed = True
        await asyncio.gather(*(self.close_room(name) for name in list(self._rooms)))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def stats(self, room: str) -> dict[str, Any]:
        """Counts for one room (zeros for a room the hub does not know)."""
        r = self._rooms.get(room)
        if r is None:
            return {"room": room, "publishers": 0, "publisher": None, "viewers": 0, "packets_received": 0,
                    "packets_forwarded": 0, "keyframe_requests": 0}
        p = r.publisher
        return {"room": room, "publishers": int(p is not None), "publisher": p.participant if p else None,
                "viewers": len(r.viewers), "packets_received": p.received if p else 0,
                "packets_forwarded": sum(f.forwarded for f in r.fanouts.values()),
                "keyframe_requests": p.keyframe_requests if p else 0}

    # -- internals

    def _room(self, name: str) -> _Room:
        if self._closed:
            raise MediaRefused("hub_closed", "the media hub is shutting down", 503)
        r = self._rooms.get(name)
        if r is None:
            r = self._rooms[name] = _Room(name)
        return r

    def _check_open(self, r: _Room) -> None:
        if self._closed or self._rooms.get(r.name) is not r:
            raise MediaRefused("hub_closed", "the room was closed while the offer was answered", 503)

    def _forget_if_idle(self, r: _Room) -> None:
        if r.idle and self._rooms.get(r.name) is r:
            del self._rooms[r.name]

    @staticmethod
    def _add_transceiver(pc: RTCPeerConnection, kind: str, direction: str) -> RTCRtpTransceiver:
        # Added before setRemoteDescription, which takes them in order for the offer's sections,
        # so the codec preferences decide the negotiated codec (the sender uses the first one).
        transceiver = pc.addTransceiver(kind, direction=direction)
        transceiver.setCodecPreferences(_codec_preferences(kind))
        return transceiver

    async def _negotiate(self, pc: RTCPeerConnection, offer: dict[str, Any],
                         after_remote: Callable[[RTCPeerConnection], None]) -> dict[str, str]:
        with rtc_packets.host_addresses(self.settings.rtc_host_addresses):
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            except (ValueError, InternalError, InvalidAccessError, InvalidStateError, OperationError) as exc:
                raise MediaRefused("bad_offer", f"the offer could not be applied: {exc}") from None
            after_remote(pc)
            await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def _finish_publisher(self, publisher: _Publisher) -> None:
        segment = await publisher.finish()
        if segment is None or self.on_segment is None or publisher.handed_on:
            return
        publisher.handed_on = True  # a drop and a leave may both get here: hand the segment on once
        try:
            await self.on_segment(segment)
        except Exception:  # noqa: BLE001 - the file stays on disk; the failure is logged with its name
            log.exception("segment %s of room %s could not be handed on", segment.path, segment.room)

    async def _drop(self, connection: _Connection) -> None:
        """A connection failed or its tracks ended: take it out of its room."""
        r = connection.room
        if isinstance(connection, _Publisher):
            if r.publisher is connection:
                r.publisher = None
            await self._finish_publisher(connection)
        else:
            if r.viewers.get(connection.participant) is connection:
                del r.viewers[connection.participant]
            await connection.close_connection()
        self._forget_if_idle(r)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _stop_remote_tracks(pc: RTCPeerConnection) -> None:
    """A viewer offering sendrecv gets a remote track object; nothing will ever fill it (its receiver never starts)."""
    for transceiver in pc.getTransceivers():
        if transceiver.receiver.track is not None:
            transceiver.receiver.track.stop()
