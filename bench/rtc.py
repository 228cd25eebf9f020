"""A remote evaluation session's media: N rooms each sending to the hub and receiving every other room.

The hub runs in a server subprocess (bench/_media_server.py: the platform's MediaHub behind
plain JSON signalling, under uvicorn), so its CPU and memory are measured apart from the
clients. This process plays the rooms with aiortc on loopback, as the evaluation session will
wire them: each room publishes to its own hub room (`session:bench:room-<i>`, recorded) a
pre-encoded synthetic 640x480 30 fps VP8 stream (~1 Mbit/s, a keyframe a second) and 20 ms
Opus packets, packetised without encoding, and views each of the N-1 other rooms, counting
the encoded frames it receives (never decoding). For each N in --rooms: every room joins,
every view must receive video, then after --warmup seconds every view's frame rate and the
server's CPU are measured over --seconds; then every room leaves and the server's memory is
read again (aiortc does not give all of it back: the session's worker process is what
recycles it).

Forwarded streams are counted per viewer and room: N × (N-1) video streams (each with its
audio). The server CPU per stream includes receiving and recording the N publishers.

    rtc_cpu_per_forwarded_stream_pct: X   server CPU (% of one core) / forwarded streams, at the largest N passed (goal < 2.5)
    rtc_rooms_at_30fps: N                 the largest N at which every view received >= --fps (goal >= 9)
    rtc_server_rss_mib_before: X          before the first session
    rtc_server_rss_mib_after: X           after the last session's rooms left

and, per N, a "#" line with fps, CPU of the server, of this process and of everything else.

    python bench/rtc.py [--rooms 3,5,9] [--seconds 8] [--warmup 3] [--fps 25]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402

from _media_client import (  # noqa: E402
    BenchError, MediaServer, cpu_seconds, machine_busy_seconds, note, signal_offer,
)
from tests.rtc_peers import PublisherPeer, ViewerPeer, accept, opus_packets, vp8_frames  # noqa: E402

RECEIVING_TIMEOUT_S = 60.0


@dataclass
class Session:
    rooms: int
    streams: int
    min_fps: float
    median_fps: float
    server_cpu: float
    client_cpu: float
    other_cpu: float
    server_rss_mib: float
    reason: str | None


def hub_room(i: int) -> str:
    return f"session:bench:room-{i}"


async def open_session(http: httpx.AsyncClient, n: int, video: list[bytes], audio: list[bytes]
                       ) -> tuple[list[PublisherPeer], list[ViewerPeer]]:
    publishers = [PublisherPeer(video, audio) for _ in range(n)]
    for i, p in enumerate(publishers):
        await accept(p.pc, await signal_offer(http, f"/publish/{hub_room(i)}/room-{i}", await p.offer()))
    views = []
    for i in range(n):  # room i views every other room j
        for j in range(n):
            if i != j:
                view = ViewerPeer(remb=False)
                await view.accept(await signal_offer(http, f"/view/{hub_room(j)}/room-{i}", await view.offer()))
                views.append(view)
    return publishers, views


async def close_session(http: httpx.AsyncClient, n: int, publishers: list[PublisherPeer], views: list[ViewerPeer]) -> None:
    await asyncio.gather(*(v.close() for v in views), return_exceptions=True)
    await asyncio.gather(*(p.close() for p in publishers), return_exceptions=True)
    for j in range(n):
        for i in range(n):
            await http.post(f"/leave/{hub_room(j)}/room-{i}")


async def measure(server: MediaServer, n: int, views: list[ViewerPeer], seconds: float, fps_goal: float) -> Session:
    me = psutil.Process()
    server_before, client_before, busy_before = cpu_seconds(server.process), cpu_seconds(me), machine_busy_seconds()
    since = time.monotonic()
    await asyncio.sleep(seconds)  # the measurement window: the peers run meanwhile
    until = time.monotonic()
    wall = until - since
    server_cpu = (cpu_seconds(server.process) - server_before) / wall * 100
    client_cpu = (cpu_seconds(me) - client_before) / wall * 100
    other_cpu = max(0.0, (machine_busy_seconds() - busy_before) / wall * 100 - server_cpu - client_cpu)
    fps = [v.received["video"].rate(since, until) for v in views]
    low = sum(1 for f in fps if f < fps_goal)
    return Session(n, len(views), min(fps), statistics.median(fps), server_cpu, client_cpu, other_cpu,
                   server.process.memory_info().rss / 2**20,
                   f"{low} of {len(views)} views below {fps_goal:g} fps (lowest {min(fps):.1f})" if low else None)


async def wait_receiving(views: list[ViewerPeer], timeout: float) -> int:
    give_up = time.monotonic() + timeout
    while True:
        silent = sum(1 for v in views if not v.received["video"].arrivals)
        if silent == 0 or time.monotonic() > give_up:
            return silent
        await asyncio.sleep(0.2)


async def run(room_counts: list[int], seconds: float, warmup: float, fps_goal: float,
              tmp: Path) -> tuple[list[Session], float, float]:
    server = MediaServer(tmp / "data", tmp / "server.log")
    await asyncio.to_thread(server.start)
    video = await asyncio.to_thread(vp8_frames, 640, 480, 60, keyint=30, bitrate=1_000_000)
    audio = await asyncio.to_thread(opus_packets, 50)
    rss_before = server.process.memory_info().rss / 2**20
    sessions: list[Session] = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as http:
        try:
            for n in room_counts:
                started = time.monotonic()
                publishers, views = await open_session(http, n, video, audio)
                try:
                    silent = await wait_receiving(views, RECEIVING_TIMEOUT_S)
                    note(f"{n} rooms ({len(views)} forwarded streams) joined in {time.monotonic() - started:.1f} s")
                    if silent:
                        sessions.append(Session(n, len(views), 0, 0, 0, 0, 0, 0,
                                                f"{silent} views received no video in {RECEIVING_TIMEOUT_S:.0f} s"))
                        break
                    await asyncio.sleep(warmup)  # joining costs CPU: measure the steady state
                    session = await measure(server, n, views, seconds, fps_goal)
                    sessions.append(session)
                    note(f"{n} rooms: fps min {session.min_fps:.1f} median {session.median_fps:.1f}; server CPU "
                         f"{session.server_cpu:.0f} % ({session.server_cpu / session.streams:.2f} % a stream), RSS "
                         f"{session.server_rss_mib:.0f} MiB; client CPU {session.client_cpu:.0f} %; other "
                         f"{session.other_cpu:.0f} %" + (f"; FAILED: {session.reason}" if session.reason else ""))
                finally:
                    await close_session(http, n, publishers, views)
                gc.collect()
                if sessions[-1].reason:
                    break
            await asyncio.sleep(2)  # let the hub finish the closed connections' recordings
            rss_after = server.process.memory_info().rss / 2**20
        finally:
            await asyncio.to_thread(server.stop)
    return sessions, rss_before, rss_after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", default="3,5,9", help="room counts to try, ascending (default 3,5,9)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement window per session (default 8)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds between joining and measuring (default 3)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate every view must get (default 25)")
    args = parser.parse_args()
    try:
        counts = [int(s) for s in args.rooms.split(",") if s.strip()]
    except ValueError:
        parser.error("--rooms must be integers separated by commas")
    if not counts or counts != sorted(counts) or counts[0] < 2:
        parser.error("--rooms must be ascending integers of at least 2")
    tmp = Path(tempfile.mkdtemp(prefix="tenderhall-rtc-"))
    try:
        sessions, before, after = asyncio.run(run(counts, args.seconds, args.warmup, args.fps, tmp))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    passed = [s for s in sessions if not s.reason]
    best = passed[-1] if passed else None
    print(f"rtc_cpu_per_forwarded_stream_pct: {best.server_cpu / best.streams:.2f}" if best else
          "rtc_cpu_per_forwarded_stream_pct: none passed")
    print(f"rtc_rooms_at_30fps: {best.rooms if best else 0}")
    print(f"rtc_server_rss_mib_before: {before:.0f}")
    print(f"rtc_server_rss_mib_after: {after:.0f}")
    print(f"rtc_cores: {psutil.cpu_count()}")


if __name__ == "__main__":
    main()
