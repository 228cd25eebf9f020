"""Benchmark: the opening hall's live fan-out to 1,000 bidders' websockets, against a bare websockets server.

The real server (bench/_server.py under uvicorn, embedded PostgreSQL) runs one tender hall,
bus topic `tender:<id>`. An audience of `--clients` bidder users (own organisation each,
sessions inserted with tenderhall.accounts by a short child process) follows
`/ws/events?topic=tender:<id>&after=<last id>` from two client processes.

Platform path `read-next` (default): a real opening driven over HTTP as people would (an
agent, 3 custodians, `--spaced + --burst` bidders who seal, upload, and later decrypt their
bids; deposits, bidder list), then the host's `POST …/hall/read-next` reads out one bid per
`--spacing` seconds for `--spaced` bids and `{"all": true}` reads the remaining `--burst` in
one transaction. The publish time of a read-out is when the host's POST leaves. Only the
decryption window's 5-minute minimum is skipped, by moving `window_ends_at` in the database
(as tests/hall_world.end_window does): nothing measured depends on it.
Platform path `direct`: the bench publishes as the hall service does, one transaction per
read-out with `log.append_entry(…, "opening.read_out", …)` and `bus.emit(…, "hall.read_out",
…)` (the burst: all of them in one transaction), from a child process on the same database;
the payload carries the publish time.

Baseline, same run, same client processes: a bare `websockets` server (another process)
that `broadcast()`s each message a publisher socket sends it, the same spacing and burst.

The clients (FeedClient, bench/_feed.py) are a minimal listen-only RFC 6455 client parsing
frames in `data_received`: on two cores shared with the server, a full client library per
socket costs more CPU than the server under test. Like browsers they offer
permessage-deflate, which both servers accept, so both compress each message for each
client. Before each measurement the bench publishes warm-ups until every client has seen
the latest one, so connecting and subscribing are over when the first read-out goes out.

Figures: `hall_p50_ms`/`hall_p99_ms` — publish → receipt over every (client, read-out) of the
spaced phase (goal p99 < 250); `hall_ratio` — messages per second delivered to all clients
in the burst, platform over bare (goal ≥ 0.5); the baseline's p50/p99 likewise.

    python bench/hall.py [--clients 1000] [--spaced 50] [--spacing 0.5] [--burst 200] [--path read-next|direct]
                         [--profile DIR]   # py-spy samples the server during the platform phase
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._feed import ClientProcess, client_main, raise_fd_limit  # noqa: E402
from bench._hall_children import (  # noqa: E402
    BarePublisher, DirectPublisher, Published, ReadNextPublisher, audience_main, bare_server_main, end_window_main,
    publish_direct_main, run_child,
)
from bench._harness import (  # noqa: E402
    TUS, BenchError, Harness, KeyOwner, file_body, free_port, gather_bounded, parse_iso, patch_headers, percentile,
    seal_to_file,
)

SCRIPT = Path(__file__).resolve()
CLIENT_PROCESSES = 2  # a 2-core machine: the server, PostgreSQL and two client processes share it
WARMUP_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 120.0  # after the last publish, how long clients may take to receive everything


# ============================================================================ one measurement


@dataclass
class Phase:
    """Latencies and throughput of one target (platform or bare)."""

    spaced_ms: list[float]
    burst_ms: list[float]
    burst_msgs_per_s: float
    lost: int
    reconnects: int
    errors: list[str]
    host_ms: list[float]


async def measure(name: str, base: str, path: str, tokens: Sequence[str | None], publisher: Any, tmp: Path, *,
                  after: int, spaced: int, spacing: float, burst: int, cookie: str) -> Phase:
    """Connect the audience, warm up, publish `spaced` read-outs then a burst of `burst`; collect receipts."""
    half = (len(tokens) + CLIENT_PROCESSES - 1) // CLIENT_PROCESSES
    groups = [tokens[i:i + half] for i in range(0, len(tokens), half)]
    clients = [ClientProcess(base, path, g, tmp, f"{name}-{i}", after=after, expect=spaced + burst, cookie=cookie)
               for i, g in enumerate(groups)]
    try:
        for c in clients:
            connected = int((await c.wait_for("CONNECTED", 300)).split()[1])
            if connected != c.n:
                raise BenchError(f"{name}: only {connected} of {c.n} clients of one process connected")
        # Warm up until every client has seen the latest warm-up: all are subscribed, and the
        # fan-out of everything before it (connections, earlier warm-ups) is over.
        give_up = time.monotonic() + WARMUP_TIMEOUT_S
        number = await publisher.warmup()
        while not all(c.warmed_up_to() >= number for c in clients):
            if time.monotonic() > give_up:
                raise BenchError(f"{name}: not every client saw a warm-up message within {WARMUP_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.2)  # poll interval while warm-ups propagate
            if time.monotonic() >= publisher.next_warmup:
                number = await publisher.warmup()
        spaced_pub, burst_pub = Published(), Published()
        start = time.monotonic()
        for i in range(spaced):
            await asyncio.sleep(max(0.0, start + i * spacing - time.monotonic()))
            await publisher.publish([i], spaced_pub)
        await asyncio.sleep(max(0.0, start + spaced * spacing - time.monotonic()))
        if burst:
            await publisher.publish(list(range(spaced, spaced + burst)), burst_pub)
        give_up = time.monotonic() + DRAIN_TIMEOUT_S
        while not all(c.has_said("DONE") for c in clients) and time.monotonic() < give_up:
            await asyncio.sleep(0.2)  # poll interval while the last messages arrive
        results = [await c.stop() for c in clients]
    finally:
        for c in clients:
            c.kill()
    receipts: dict[Any, list[float]] = {}
    for r in results:
        for key, t in r["records"]:
            receipts.setdefault(key, []).append(t)
    spaced_ms = [(t - t_pub) * 1000 for key, t_pub in spaced_pub.t_pub.items() for t in receipts.get(key, ())]
    burst_times = [t for key in burst_pub.t_pub for t in receipts.get(key, ())]
    burst_ms = [(t - burst_pub.t_pub[key]) * 1000 for key in burst_pub.t_pub for t in receipts.get(key, ())]
    rate = 0.0
    if burst_times:
        rate = len(burst_times) / max(1e-9, max(burst_times) - min(burst_pub.t_pub.values()))
    expected = len(tokens) * (spaced + burst)
    return Phase(spaced_ms, burst_ms, rate, expected - len(spaced_ms) - len(burst_ms),
                 sum(r["reconnects"] for r in results), [e for r in results for e in r["errors"]],
                 spaced_pub.host_ms + burst_pub.host_ms)


# ============================================================================ the opening, over HTTP


async def opening_at_reading(h: Harness, bids: int, setup_concurrency: int) -> tuple[Any, str]:
    """A tender whose opening is at the read-out with `bids` opened bids; (agent session, tender id)."""
    from tenderhall.canonical import b64url
    from trading import key_wrap
    from trading.manifest import validate_manifest

    agent = await h.agent()
    custodians = await h.custodians(3)
    bidders = await h.bidders(bids, concurrency=setup_concurrency)
    # Time for sealing and uploading every bid before the deadline, with room to spare.
    tender = await h.publish_tender(agent, custodians, deadline=time.time() + 15 + 0.1 * bids)
    tender_id, deadline = tender["id"], parse_iso(tender["deadline"])

    async def submit(i: int, bidder: KeyOwner) -> Any:
        path = h.files / f"bid-{i:04d}.bin"
        sealed = await asyncio.to_thread(seal_to_file, bidder, tender, [("technical.bin", os.urandom(1024))], path)
        r = await bidder.session.http.post(f"/api/tenders/{tender_id}/lots/L1/uploads", json=sealed.submission(),
                                           headers=TUS)
        if r.status_code != 201:
            raise BenchError(f"upload POST: HTTP {r.status_code} {r.text[:300]}")
        size = sealed.manifest["ciphertext"]["size"]
        r = await bidder.session.http.patch(f"/api/uploads/{r.json()['upload_id']}", content=file_body(path),
                                            headers=patch_headers(size))
        if r.status_code != 200:
            raise BenchError(f"upload PATCH: HTTP {r.status_code} {r.text[:300]}")
        return sealed, r.json()["bid"]

    submitted = await gather_bounded([submit(i, b) for i, b in enumerate(bidders)], setup_concurrency)
    if time.time() >= deadline:
        raise BenchError("the bids were not all in before the deadline; the setup is too slow for this many bids")
    h.note(f"{bids} bids submitted; the deadline is in {deadline - time.time():.1f} s")
    await asyncio.sleep(max(0.0, deadline - time.time() + 0.5))  # the deadline is a clock time, not a server state

    hall = f"/api/tenders/{tender_id}/hall"
    await agent.call("POST", f"{hall}/start-sign-in", json={})
    await agent.call("POST", f"{hall}/close-submissions", json={})
    await gather_bounded([agent.call("POST", f"{hall}/deposits", json={
        "organisation_id": b.organisation_id, "deposit": "confirmed"}) for b in bidders], setup_concurrency)
    published = await agent.call("POST", f"{hall}/publish-bidders", json={})
    if published.get("step") != "decryption":
        raise BenchError(f"publish-bidders: {published}")

    async def decrypt(bidder: KeyOwner, sealed: Any, bid_id: str) -> None:
        manifest = validate_manifest(sealed.manifest)
        key = key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, bidder.decrypt)
        await bidder.session.call("POST", f"{hall}/decrypt", json={"bid_id": bid_id, "content_key": b64url(key)})

    await gather_bounded([decrypt(b, s, bid) for b, (s, bid) in zip(bidders, submitted)], setup_concurrency)
    await asyncio.to_thread(run_child, "end-window", "--data-dir", str(h.data_dir), "--tender", tender_id)
    closed = await agent.call("POST", f"{hall}/close-window", json={})
    if closed.get("step") != "reading":
        raise BenchError(f"close-window: {closed}")
    return agent, tender_id


# ============================================================================ the run


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.1f}" if values else "nan"


async def run(args: argparse.Namespace) -> dict[str, str]:
    raise_fd_limit()
    wall = time.perf_counter()
    async with Harness(keep=args.keep) as h:
        audience_file = h.tmp / "audience.json"
        audience = asyncio.create_task(asyncio.to_thread(
            run_child, "audience", "--data-dir", str(h.data_dir), "--n", str(args.clients), "--run", h.run_id,
            "--out", str(audience_file)))
        if args.path == "read-next":
            agent, tender_id = await opening_at_reading(h, args.spaced + args.burst, args.setup_concurrency)
            snapshot = await agent.call("GET", f"/api/tenders/{tender_id}/hall")
            after = snapshot["hall"]["last_event_id"]
            platform_pub: Any = ReadNextPublisher(agent, tender_id)
        else:
            tender_id, after = str(uuid.uuid4()), 0
            platform_pub = DirectPublisher(h.data_dir, f"tender:{tender_id}")
            await platform_pub.start()
        await audience
        tokens: list[str | None] = json.loads(audience_file.read_text())
        setup_s = time.perf_counter() - wall
        h.note(f"set up in {setup_s:.1f} s: {len(tokens)} audience sessions, hall of tender {tender_id}")

        base = h.base_url.replace("http://", "ws://")
        profiler = None
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            profiler = subprocess.Popen(["py-spy", "record", "--nonblocking", "-p", str(h.server.pid), "-r", "250", "--format", "raw",
                                         "-o", str(Path(args.profile) / f"server-{args.path}.txt")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            platform = await measure("platform", base, f"/ws/events?topic=tender:{tender_id}&after={{after}}",
                                     tokens, platform_pub, h.tmp, after=after, spaced=args.spaced,
                                     spacing=args.spacing, burst=args.burst, cookie="th_session")
        finally:
            await platform_pub.close()
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                await asyncio.to_thread(profiler.wait, 60)
        h.note(f"platform: {len(platform.spaced_ms) + len(platform.burst_ms)} receipts, {platform.lost} lost")

        port = free_port()
        bare_proc = subprocess.Popen([sys.executable, str(SCRIPT), "bare-server", "--port", str(port)],
                                     stdout=subprocess.PIPE, text=True)
        try:
            assert bare_proc.stdout is not None
            if (await asyncio.to_thread(bare_proc.stdout.readline)).strip() != "LISTENING":
                raise BenchError("the bare websockets server did not start")
            bare_pub = BarePublisher(f"ws://127.0.0.1:{port}/publish", f"tender:{tender_id}")
            await bare_pub.start()
            try:
                bare = await measure("bare", f"ws://127.0.0.1:{port}", "/ws/events", [None] * len(tokens),
                                     bare_pub, h.tmp, after=0, spaced=args.spaced, spacing=args.spacing,
                                     burst=args.burst, cookie="x")
            finally:
                await bare_pub.close()
        finally:
            bare_proc.terminate()
            await asyncio.to_thread(bare_proc.wait, 30)
        h.note(f"bare: {len(bare.spaced_ms) + len(bare.burst_ms)} receipts, {bare.lost} lost")

    for which, phase in (("platform", platform), ("bare", bare)):
        for e in phase.errors[:10]:
            print(f"# {which}: {e}", file=sys.stderr)
    ratio = platform.burst_msgs_per_s / bare.burst_msgs_per_s if bare.burst_msgs_per_s else float("nan")
    host = "read-next POST" if args.path == "read-next" else "publish transaction"
    return {
        "hall_p50_ms": f"{_ms(platform.spaced_ms, 50)} # {args.spaced} read-outs {args.spacing} s apart, "
                       f"{args.clients} clients, path {args.path}",
        "hall_p99_ms": f"{_ms(platform.spaced_ms, 99)} (goal < 250)",
        "hall_ratio": f"{ratio:.2f} (goal >= 0.5) # burst msgs/s delivered, platform / bare",
        "baseline_p50_ms": _ms(bare.spaced_ms, 50),
        "baseline_p99_ms": _ms(bare.spaced_ms, 99),
        "hall_max_ms": f"{max(platform.spaced_ms, default=float('nan')):.1f}",
        "hall_burst_msgs_per_s": f"{platform.burst_msgs_per_s:.0f} # {args.burst} read-outs at once",
        "baseline_burst_msgs_per_s": f"{bare.burst_msgs_per_s:.0f}",
        "hall_burst_p50_ms": _ms(platform.burst_ms, 50),
        "hall_burst_p99_ms": _ms(platform.burst_ms, 99),
        "baseline_burst_p99_ms": _ms(bare.burst_ms, 99),
        "hall_lost": f"{platform.lost} of {args.clients * (args.spaced + args.burst)} (goal 0)",
        "baseline_lost": str(bare.lost),
        "hall_reconnects": f"{platform.reconnects} # clients closed 4409 (lagged) and resumed",
        "hall_host_p50_ms": f"{_ms(platform.host_ms[:args.spaced], 50)} # {host}, spaced phase",
        "hall_setup_s": f"{setup_s:.1f}",
        "hall_wall_s": f"{time.perf_counter() - wall:.1f}",
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        child = argparse.ArgumentParser(prog=f"hall.py {sys.argv[1]}")
        for flag, kwargs in CHILDREN[sys.argv[1]][1]:
            child.add_argument(flag, **kwargs)
        asyncio.run(CHILDREN[sys.argv[1]][0](child.parse_args(sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="websocket clients following the hall (default 1000)")
    parser.add_argument("--spaced", type=int, default=50, help="read-outs published one by one (default 50)")
    parser.add_argument("--spacing", type=float, default=0.5, help="seconds between spaced read-outs (default 0.5)")
    parser.add_argument("--burst", type=int, default=200,
                        help="read-outs published at once after the spaced ones (default 200; keep it under the "
                             "bus queue of 1000 per client)")
    parser.add_argument("--path", choices=("read-next", "direct"), default="read-next",
                        help="how the platform publishes: the host's read-next over HTTP (default), or the hall "
                             "service's transaction run directly on the database")
    parser.add_argument("--setup-concurrency", type=int, default=8, help="HTTP calls at once while setting up")
    parser.add_argument("--profile", metavar="DIR", help="sample the server with py-spy (raw stacks into DIR)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, data)")
    args = parser.parse_args()
    if args.clients < 1 or args.spaced < 1 or args.burst < 0 or args.spacing < 0:
        parser.error("need --clients >= 1, --spaced >= 1, --burst >= 0 and --spacing >= 0")
    figures = asyncio.run(run(args))
    for name, value in figures.items():
        print(f"{name}: {value}")


_S: dict[str, Any] = {"required": True}
CHILDREN: dict[str, tuple[Any, list[tuple[str, dict[str, Any]]]]] = {
    "clients": (client_main, [("--base", _S), ("--path", _S), ("--tokens", _S), ("--out", _S),
                               ("--after", {"type": int, "default": 0}), ("--expect", {"type": int, "default": 0}),
                               ("--cookie", _S)]),
    "bare-server": (bare_server_main, [("--port", {"type": int, "required": True})]),
    "audience": (audience_main, [("--data-dir", _S), ("--n", {"type": int, "required": True}), ("--run", _S),
                                  ("--out", _S)]),
    "end-window": (end_window_main, [("--data-dir", _S), ("--tender", _S)]),
    "publish-direct": (publish_direct_main, [("--data-dir", _S), ("--topic", _S)]),
}


if __name__ == "__main__":
    main()
