"""How many receive-only viewers one MediaHub serves the opening hall's host video to at >= 25 fps each.

The hub runs in a server subprocess (bench/_media_server.py: the platform's MediaHub behind
plain JSON signalling routes, under uvicorn), so its CPU and memory are measured apart from
the clients. This process runs the clients with aiortc on loopback: one publisher sending a
pre-encoded synthetic 640x480 30 fps VP8 stream (~1 Mbit/s, a keyframe a second) and 20 ms
Opus packets, both packetised without encoding; and N viewers that count the encoded frames
they receive through tenderhall.rtc_packets, never decoding. The viewers leave the
abs-send-time header extension out of their offers: with it aiortc's receiver answers nearly
every video packet with an RTCP REMB, a feedback load no browser puts on the hub. N steps up
(--steps); at each step the new viewers join, every viewer must receive video, then after
--warmup seconds every viewer's frame rate is measured over --seconds. The run stops at the
first step where a viewer gets less than --fps; a failure while other processes were busy is
measured again (--retries). Prints, one per line:

    hall_video_viewers: N              the largest N at which every viewer received >= 25 fps
    hall_video_min_fps: X              the lowest viewer's frame rate at that N
    hall_video_server_cpu_percent: X   server process CPU at that N (100 = one core)
    hall_video_server_rss_mib: X       server RSS at that N
    hall_video_client_cpu_percent: X   this process (publisher + viewers) at that N
    hall_video_other_cpu_percent: X    every other process on the machine meanwhile (should be ~0)
    hall_video_steal_percent: X        CPU a virtual machine's host took meanwhile (should be ~0)
    hall_video_first_failing_step: N   (or "none") and why, on a "#" line before it
    hall_video_cores: N

Both processes share this machine's cores: when the client side saturates first, N is a
floor for the hub, not its ceiling (the CPU lines say which side ran out).

    python bench/hall_video.py [--steps 25,50,75,100,125,150,175,200,250,300] [--seconds 8] [--warmup 3]
"""

from __future__ import annotations

import argparse
import asyncio
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
    BenchError, MediaServer, cpu_seconds, machine_busy_seconds, note, signal_offer, steal_seconds,
)
from tests.rtc_peers import PublisherPeer, ViewerPeer, accept, opus_packets, vp8_frames  # noqa: E402

ROOM = "hall:bench"
RECEIVING_TIMEOUT_S = 60.0
JOIN_BATCH = 10
# On a shared machine a step that fails while other processes took this much CPU (% of a core)
# says nothing about the hub: it is measured again, up to --retries times.
OTHER_CPU_RETRY = 25.0


@dataclass
class Step:
    viewers: int
    min_fps: float
    median_fps: float
    min_audio_pps: float
    server_cpu: float
    client_cpu: float
    server_rss_mib: float
    other_cpu: float  # everything else on the machine meanwhile: contention that lowers N
    steal: float  # time a virtual machine's cores were taken by its host meanwhile (% of a core)
    reason: str | None  # why the step failed, None when it passed


async def join(http: httpx.AsyncClient, index: int) -> ViewerPeer:
    viewer = ViewerPeer(remb=False)
    await viewer.accept(await signal_offer(http, f"/view/{ROOM}/viewer-{index}", await viewer.offer()))
    return viewer


async def wait_receiving(viewers: list[ViewerPeer], timeout: float) -> int:
    """Wait until every viewer has video; returns how many still have none when `timeout` ran out."""
    give_up = time.monotonic() + timeout
    while True:
        silent = sum(1 for v in viewers if not v.received["video"].arrivals)
        if silent == 0 or time.monotonic() > give_up:
            return silent
        await asyncio.sleep(0.2)


async def measure(server: MediaServer, viewers: list[ViewerPeer], seconds: float, fps_goal: float) -> Step:
    me = psutil.Process()
    server_before, client_before, busy_before = cpu_seconds(server.process), cpu_seconds(me), machine_busy_seconds()
    steal_before = steal_seconds()
    since = time.monotonic()
    await asyncio.sleep(seconds)  # the measurement window: the peers run meanwhile
    until = time.monotonic()
    wall = until - since
    server_cpu = (cpu_seconds(server.process) - server_before) / wall * 100
    client_cpu = (cpu_seconds(me) - client_before) / wall * 100
    other_cpu = max(0.0, (machine_busy_seconds() - busy_before) / wall * 100 - server_cpu - client_cpu)
    steal = (steal_seconds() - steal_before) / wall * 100
    fps = [v.received["video"].rate(since, until) for v in viewers]
    audio = [v.received["audio"].rate(since, until) for v in viewers]
    low = sum(1 for f in fps if f < fps_goal)
    return Step(viewers=len(viewers), min_fps=min(fps), median_fps=statistics.median(fps), min_audio_pps=min(audio),
                server_cpu=server_cpu, client_cpu=client_cpu,
                server_rss_mib=server.process.memory_info().rss / 2**20, other_cpu=other_cpu, steal=steal,
                reason=f"{low} of {len(viewers)} viewers below {fps_goal:g} fps (lowest {min(fps):.1f})" if low else None)


async def run(steps: list[int], seconds: float, warmup: float, fps_goal: float, retries: int,
              tmp: Path) -> tuple[list[Step], Step | None]:
    server = MediaServer(tmp / "data", tmp / "server.log")
    await asyncio.to_thread(server.start)
    note(f"media server ready on {server.base_url} (pid {server.proc.pid if server.proc else '?'})")
    video = await asyncio.to_thread(vp8_frames, 640, 480, 60, keyint=30, bitrate=1_000_000)
    audio = await asyncio.to_thread(opus_packets, 50)
    note(f"source: 640x480 VP8 {sum(map(len, video)) * 8 / 2 / 1e6:.2f} Mbit/s, Opus {sum(map(len, audio)) * 8 / 1e3:.0f} kbit/s")
    viewers: list[ViewerPeer] = []
    publisher = PublisherPeer(video, audio)
    passed: list[Step] = []
    failed: Step | None = None
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as http:
        try:
            await accept(publisher.pc, await signal_offer(http, f"/publish/{ROOM}/host", await publisher.offer()))
            for target in steps:
                started = time.monotonic()
                while len(viewers) < target:
                    batch = range(len(viewers), min(target, len(viewers) + JOIN_BATCH))
                    viewers += await asyncio.gather(*(join(http, i) for i in batch))
                silent = await wait_receiving(viewers, RECEIVING_TIMEOUT_S)
                note(f"{target} viewers joined in {time.monotonic() - started:.1f} s")
                if silent:
                    failed = Step(target, 0, 0, 0, 0, 0, server.process.memory_info().rss / 2**20, 0, 0,
                                  f"{silent} viewers received no video within {RECEIVING_TIMEOUT_S:.0f} s")
                    break
                for attempt in range(1 + retries):
                    await asyncio.sleep(warmup)  # joining (or a disturbance) costs CPU: measure the steady state
                    step = await measure(server, viewers, seconds, fps_goal)
                    note(f"{target} viewers: fps min {step.min_fps:.1f} median {step.median_fps:.1f}, audio min "
                         f"{step.min_audio_pps:.0f}/s; server CPU {step.server_cpu:.0f} %, RSS "
                         f"{step.server_rss_mib:.0f} MiB; client CPU {step.client_cpu:.0f} %; other processes "
                         f"{step.other_cpu:.0f} %, stolen by the host {step.steal:.0f} %")
                    if not step.reason or step.other_cpu < OTHER_CPU_RETRY:
                        break
                    note(f"other processes took {step.other_cpu:.0f} % of a core meanwhile: measuring again")
                if step.reason:
                    failed = step
                    break
                passed.append(step)
        finally:
            await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
            await publisher.close()
            await asyncio.to_thread(server.stop)
    return passed, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="25,50,75,100,125,150,175,200,250,300",
                        help="viewer counts to try, ascending, comma-separated (default 25,50,75,...,200,250,300)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement window per step in seconds (default 8)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds between the last viewer receiving and the window (default 3)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate every viewer must get (default 25)")
    parser.add_argument("--retries", type=int, default=2,
                        help="measure a failing step again when other processes took >= 25 %% of a core "
                             "meanwhile, up to this many times (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, recording)")
    args = parser.parse_args()
    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        parser.error("--steps must be integers separated by commas")
    if not steps or steps != sorted(steps) or steps[0] < 1:
        parser.error("--steps must be ascending positive integers")
    tmp = Path(tempfile.mkdtemp(prefix="tenderhall-hall-video-"))
    started = time.perf_counter()
    try:
        passed, failed = asyncio.run(run(steps, args.seconds, args.warmup, args.fps, max(0, args.retries), tmp))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        if args.keep:
            note(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    best = passed[-1] if passed else None
    print(f"hall_video_viewers: {best.viewers if best else 0}")
    if best is not None:
        print(f"hall_video_min_fps: {best.min_fps:.1f}")
        print(f"hall_video_server_cpu_percent: {best.server_cpu:.0f}")
        print(f"hall_video_server_rss_mib: {best.server_rss_mib:.0f}")
        print(f"hall_video_client_cpu_percent: {best.client_cpu:.0f}")
        print(f"hall_video_other_cpu_percent: {best.other_cpu:.0f}")
        print(f"hall_video_steal_percent: {best.steal:.0f}")
    if failed is not None:
        print(f"# first failing step: {failed.reason}; server CPU {failed.server_cpu:.0f} %, "
              f"client CPU {failed.client_cpu:.0f} %")
    print(f"hall_video_first_failing_step: {failed.viewers if failed else 'none'}")
    print(f"hall_video_cores: {psutil.cpu_count()}")
    print(f"hall_video_wall_s: {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
