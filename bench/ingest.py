"""Benchmark: sustained position ingest with every rule on, against raw COPY of the same rows.

One real server (bench/_server.py under uvicorn, through bench/_harness.py) with the device
token from TENDERHALL_VENUE_DEVICE_TOKEN. The admin API makes a venue and its floor F1 with
open zones (so that every fix is looked up in the plan); a child process seeds --people venue
people with a tag each (experts in one part of the floor, bidders and agents in another,
staff everywhere: the proximity rule looks at every move but the load itself raises nothing)
plus --probes expert–bidder pairs, and announces `venue.policy_changed` so that the engine
picks them up. The venue's hours are set to 00:00–23:59 so that "presence after hours" does
not fire on everyone when the bench runs at night.

Every batch is generated before the clock starts: each person walks at about 1 m/s with a
fix every 0.1 s (10 Hz), --batch records a batch, JSON arrays. Throughput: four senders (a
floor's positioning servers) POST them to /api/venue/positions as a positioning system would
(bearer token) as fast as the server answers, for --seconds: with fewer, the server sits idle
while every batch in flight waits on PostgreSQL, and the figure measures the round trip
rather than the server. Alerts: then, under a paced load of --alert-rate positions/s
(the goal rate: a saturated server queues everything, alerts included), each expert–bidder
pair is put 1 m apart (a batch of its two fixes), fixed again 5 s later, and a third time
10.4 s after the first, which makes "expert within 2 m of a bidder for more than 10 s" due;
the probe times that batch's POST to the alert's arrival on the supervisors' websocket
/ws/events?topic=venue. The pairs are staggered by 0.1 s.

Baseline, same run, same database: a child process COPYs the same rows, batch by batch, into
a scratch copy of `positions` (partitioned by day, same index) with asyncpg's
copy_records_to_table, timed around the COPYs only. Prints:

    ingest_positions_per_s: X   accepted positions / wall time of the saturating load (goal >= 20,000)
    ingest_ratio: X             ingest_positions_per_s / raw COPY rows per second (goal >= 0.5)
    alert_p99_ms: X             probe batch POSTed -> its alert on the websocket (goal < 200);
                                n/a when no alert arrived at all (alert_missed says how many)
    alert_p50_ms, alert_samples, alert_missed, alert_load_positions_per_s, raw_copy_positions_per_s,
    ingest_accepted, batch_p50_ms, batch_p99_ms (the saturating load's POSTs)

    python bench/ingest.py [--people 2000] [--batch 5000] [--seconds 10] [--probes 100] [--alert-rate 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench._harness import BenchError, Harness, percentile, server_database  # noqa: E402

SCRIPT = Path(__file__).resolve()
TOKEN = "bench-positioning-" + secrets.token_urlsafe(24)
FLOOR = "F1"
HZ = 10
SENDERS = 4
PROBE_SPACING_S = 0.1
PROBE_REFRESH_S = 5.0
PROBE_TRIGGER_S = 10.4  # the rule holds for "more than 10 s" of the server's clock
TIMEOUT = httpx.Timeout(120.0, connect=15.0)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------- who is on the floor


def plan_people(count: int, probes: int) -> dict[str, Any]:
    """The load's people (role, region) and the probes' pairs, with tags; ids as strings."""
    rng = random.Random(1)
    load = []
    for i in range(count):
        role = ("expert", "bidder", "agent", "staff", "staff")[i % 5]
        # Experts x 0–60, bidders and agents x 140–200, staff anywhere; y 0–100. The probes are at y >= 150.
        region = {"expert": (0, 60), "bidder": (140, 200), "agent": (140, 200)}.get(role, (0, 200))
        load.append({"id": str(uuid.uuid4()), "name": f"{role}-{i:05d}", "role": role, "tag": f"L{i:05d}",
                     "x": rng.uniform(*region), "y": rng.uniform(0, 100), "region": region})
    pairs = []
    for i in range(probes):
        x, y = 10 + (i % 10) * 8.0, 150 + (i // 10) * 8.0
        pairs.append({"expert": {"id": str(uuid.uuid4()), "name": f"probe-expert-{i}", "role": "expert",
                                 "tag": f"PE{i:03d}", "x": x, "y": y},
                      "bidder": {"id": str(uuid.uuid4()), "name": f"probe-bidder-{i}", "role": "bidder",
                                 "tag": f"PB{i:03d}", "x": x + 1.0, "y": y}})
    warmup = {"id": str(uuid.uuid4()), "name": "warm-up", "role": "staff", "tag": "WARMUP", "x": 100.0, "y": 300.0}
    return {"load": load, "pairs": pairs, "warmup": warmup}


def everyone(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [*plan["load"], *(p[k] for p in plan["pairs"] for k in ("expert", "bidder")), plan["warmup"]]


def load_bodies(plan: dict[str, Any], batch: int, positions: int, start: float) -> list[bytes]:
    """Batches of `batch` fixes: every person once per 1/HZ s of simulated time, walking ~1 m/s."""
    rng = random.Random(2)
    people = [dict(p) for p in plan["load"]]
    records: list[dict[str, Any]] = []
    bodies: list[bytes] = []
    tick = 0
    while len(bodies) * batch < positions:
        t = iso(start + tick / HZ)
        for p in people:
            heading = rng.uniform(0, 2 * math.pi)
            lo, hi = p["region"]
            p["x"] = min(hi, max(lo, p["x"] + 0.1 * math.cos(heading)))
            p["y"] = min(100.0, max(0.0, p["y"] + 0.1 * math.sin(heading)))
            records.append({"tag": p["tag"], "t": t, "x": round(p["x"], 2), "y": round(p["y"], 2), "floor": FLOOR,
                            "quality": 0.9})
            if len(records) == batch:
                bodies.append(json.dumps(records, separators=(",", ":")).encode())
                records = []
        tick += 1
    return bodies


def zone(zone_id: str, kind: str, x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Feature", "id": zone_id, "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"feature_type": "unit", "kind": kind, "name": zone_id}}


async def seed_floor(h: Harness) -> None:
    """A venue and its floor F1 through the admin API: open zones over the load's regions (no door,
    no closed area, no capacity: every zone lookup is made, no zone rule fires on the load)."""
    venue = await h.admin.call("POST", "/api/venues", json={"name": f"Bench venue {h.run_id}", "region_code": "350100",
                                                            "rooms": []})
    await h.admin.call("POST", "/api/venue/floors", json={
        "venue_id": venue["id"], "code": FLOOR, "level": 1, "name": "Bench floor", "plan": {
            "type": "FeatureCollection", "features": [
                zone("experts", "corridor", 0, 0, 60, 100), zone("middle", "corridor", 60, 0, 140, 100),
                zone("hall", "opening_hall", 140, 0, 200, 100), zone("probes", "waiting_area", 0, 140, 200, 240)]}})


# ---------------------------------------------------------------------------- the load and the probes


class Device:
    """A positioning system: POSTs batches with the bearer token."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})

    async def send(self, body: bytes) -> dict[str, Any]:
        r = await self.http.post("/api/venue/positions", content=body)
        if r.status_code != 200:
            raise BenchError(f"POST /api/venue/positions: HTTP {r.status_code} {r.text[:300]}")
        return r.json()

    async def fixes(self, *people: dict[str, Any]) -> dict[str, Any]:
        now = iso(time.time())
        return await self.send(json.dumps([{"tag": p["tag"], "t": now, "x": p["x"], "y": p["y"], "floor": FLOOR}
                                           for p in people]).encode())

    async def aclose(self) -> None:
        await self.http.aclose()


async def run_load(device: Device, queue: list[bytes], until: Any, rate: float | None = None) -> dict[str, Any]:
    """Send batches popped from `queue` until it is empty or `until()` is true: SENDERS at once as fast as
    the server answers, or (with `rate`, positions/s) one sender keeping that pace."""
    accepted, sent, batch_ms = 0, 0, []
    started = time.perf_counter()

    async def sender() -> None:
        nonlocal accepted, sent
        while queue and not until():
            if rate is not None:
                due = started + accepted / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))  # the pace, not a wait for the server
            body = queue.pop()
            t0 = time.perf_counter()
            report = await device.send(body)
            batch_ms.append((time.perf_counter() - t0) * 1000)
            if report["rejected"] or report["duplicate"]:
                raise BenchError(f"a load batch was not taken whole: {json.dumps(report)[:300]}")
            accepted += report["accepted"]
            sent += 1

    await asyncio.gather(*(sender() for _ in range(1 if rate is not None else SENDERS)))
    return {"accepted": accepted, "elapsed": time.perf_counter() - started, "batch_ms": batch_ms, "sent": sent}


class AlertWatch:
    """The supervisors' event socket: when each probe expert's proximity alert arrived."""

    def __init__(self, base_url: str, cookie: str) -> None:
        self.url = base_url.replace("http://", "ws://") + "/ws/events?topic=venue"
        self.cookie = cookie
        self.arrived: dict[str, float] = {}
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, additional_headers={"Cookie": f"th_session={self.cookie}"},
                                max_size=None, max_queue=None, ping_interval=None)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            received = time.perf_counter()
            if '"venue.alert"' not in message:
                continue  # the live map's updates: not parsed, they are large
            event = json.loads(message)
            if event["kind"] == "venue.alert" and event["payload"]["rule"] == "expert_near_party":
                for person in event["payload"]["people"]:
                    self.arrived.setdefault(person["id"], received)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.ws is not None:
            await self.ws.close()


async def run_probes(device: Device, pairs: list[dict[str, Any]]) -> dict[str, float]:
    """Each pair: 1 m apart, again 5 s later, and again 10.4 s after the first: the third POST's start time."""
    sent: dict[str, float] = {}

    async def probe(i: int, pair: dict[str, Any]) -> None:
        await asyncio.sleep(i * PROBE_SPACING_S)
        first = time.perf_counter()
        await device.fixes(pair["expert"], pair["bidder"])
        await asyncio.sleep(PROBE_REFRESH_S - (time.perf_counter() - first))
        await device.fixes(pair["expert"], pair["bidder"])
        await asyncio.sleep(PROBE_TRIGGER_S - (time.perf_counter() - first))
        sent[pair["expert"]["id"]] = time.perf_counter()
        await device.fixes(pair["expert"], pair["bidder"])

    await asyncio.gather(*(probe(i, pair) for i, pair in enumerate(pairs)))
    return sent


# ---------------------------------------------------------------------------- the run


def run_child(*argv: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BenchError(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


async def wait_for_tracker(h: Harness, device: Device, warmup: dict[str, Any]) -> None:
    """The engine reloads on venue.policy_changed; until then the seeded tags are nobody's."""
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        warmup["x"] += 0.01
        await device.fixes(warmup)
        live = await h.admin.call("GET", "/api/venue/live")
        if any(p["name"] == "warm-up" for p in live["people"]):
            return
        await asyncio.sleep(0.2)  # poll interval while the engine reloads
    raise BenchError("the seeded people never reached the tracker (no venue.policy_changed reload?)")


async def main(args: argparse.Namespace) -> None:
    os.environ["TENDERHALL_VENUE_DEVICE_TOKEN"] = TOKEN
    os.environ["TENDERHALL_VENUE_OPENS"], os.environ["TENDERHALL_VENUE_CLOSES"] = "00:00", "23:59"
    async with Harness(tmp_root=args.tmp_root) as h:
        plan = plan_people(args.people, args.probes)
        people_file = h.tmp / "people.json"
        people_file.write_text(json.dumps(everyone(plan)))
        await seed_floor(h)
        await asyncio.to_thread(run_child, "seed", str(h.data_dir), str(people_file))
        device = Device(h.base_url)
        watch = AlertWatch(h.base_url, h.admin.http.cookies.get("th_session"))
        try:
            await wait_for_tracker(h, device, plan["warmup"])
            # Generated before the clock starts: the saturating phase, then the paced one under the probes.
            probe_span = PROBE_TRIGGER_S + len(plan["pairs"]) * PROBE_SPACING_S + 1.0
            target = int(args.seconds * args.max_rate + probe_span * args.alert_rate)
            generated = time.perf_counter()
            bodies = load_bodies(plan, args.batch, target, time.time() + 10)
            h.note(f"{len(bodies)} batches of {args.batch} generated in {time.perf_counter() - generated:.1f} s")
            queue = list(reversed(bodies))
            ends = time.perf_counter() + args.seconds
            load = await run_load(device, queue, lambda: time.perf_counter() >= ends)
            h.note(f"saturating load: {load['accepted']} positions in {load['elapsed']:.1f} s")
            sent_before = load["sent"]
            if not queue:
                raise BenchError("every generated batch was sent before the time was up: raise --max-rate")

            await watch.start()
            probes = asyncio.create_task(run_probes(device, plan["pairs"]))
            paced = await run_load(device, queue, probes.done, rate=args.alert_rate)
            sent = await probes
            give_up = time.perf_counter() + 5
            while len(watch.arrived.keys() & sent.keys()) < len(sent) and time.perf_counter() < give_up:
                await asyncio.sleep(0.05)  # poll for the last alerts
        finally:
            await watch.close()
            await device.aclose()
        bodies_file = h.tmp / "bodies.jsonl"
        bodies_file.write_bytes(b"\n".join(bodies[:sent_before]))
        raw = json.loads(await asyncio.to_thread(run_child, "raw-copy", str(h.data_dir), str(bodies_file)))

    latencies = [(watch.arrived[k] - t) * 1000 for k, t in sent.items() if k in watch.arrived]
    rate = load["accepted"] / load["elapsed"]
    print(f"ingest_positions_per_s: {rate:.0f}")
    print(f"ingest_ratio: {rate / raw['rows_per_s']:.2f}")
    if latencies:
        print(f"alert_p99_ms: {percentile(latencies, 99):.1f}")
        print(f"alert_p50_ms: {percentile(latencies, 50):.1f}")
    else:
        print("alert_p99_ms: n/a")
    print(f"alert_samples: {len(latencies)}")
    print(f"alert_missed: {len(sent) - len(latencies)}")
    print(f"alert_load_positions_per_s: {paced['accepted'] / paced['elapsed']:.0f}")
    print(f"raw_copy_positions_per_s: {raw['rows_per_s']:.0f}")
    print(f"ingest_accepted: {load['accepted']}")
    print(f"batch_p50_ms: {percentile(load['batch_ms'], 50):.1f}")
    print(f"batch_p99_ms: {percentile(load['batch_ms'], 99):.1f}")


# ---------------------------------------------------------------------------- children (the database)


async def seed_main(data_dir: Path, people_file: Path) -> None:
    """The people and their tags, straight into the tables; then the engines are told."""
    from tenderhall import bus
    from venue.engine import POLICY_CHANGED, TOPIC

    people = json.loads(people_file.read_text())
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    async with server_database(data_dir) as conn:
        async with conn.transaction():
            await conn.copy_records_to_table("venue_people", columns=["id", "name", "role"], records=[
                (uuid.UUID(p["id"]), p["name"], p["role"]) for p in people])
            await conn.copy_records_to_table("credentials", columns=["person_id", "kind", "value", "valid_from"],
                                             records=[(uuid.UUID(p["id"]), "tag", p["tag"], since) for p in people])
            await bus.emit(conn, TOPIC, POLICY_CHANGED, {"why": "bench people"})


async def raw_copy_main(data_dir: Path, bodies_file: Path) -> None:
    """The same rows COPYed batch by batch into a scratch copy of `positions`; rows/s on stdout."""
    from venue.ingest import parse_batch

    now = datetime.now(timezone.utc)
    batches = [parse_batch(line, ndjson=False, now=now + timedelta(minutes=1), not_before=now - timedelta(days=1))
               for line in bodies_file.read_bytes().split(b"\n")]
    days = sorted({d for b in batches for d in b.days()})
    async with server_database(data_dir) as conn:
        await conn.execute("DROP TABLE IF EXISTS bench_raw_positions")
        await conn.execute("CREATE TABLE bench_raw_positions (LIKE positions INCLUDING ALL) PARTITION BY RANGE (t)")
        for day in days:
            # Bench-only DDL, names and bounds from dates, as venue/position_store.py makes the real ones.
            lower = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            upper = lower + timedelta(days=1)
            await conn.execute(f"CREATE TABLE bench_raw_positions_{day:%Y%m%d} PARTITION OF bench_raw_positions "
                               f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')")
        rows, spent = 0, 0.0
        try:
            for batch in batches:
                records = [(p.tag, p.t, p.floor, p.x, p.y, p.quality) for p in batch.positions]
                started = time.perf_counter()
                await conn.copy_records_to_table("bench_raw_positions", records=records,
                                                 columns=["tag_id", "t", "floor_code", "x", "y", "quality"])
                spent += time.perf_counter() - started
                rows += len(records)
        finally:
            await conn.execute("DROP TABLE bench_raw_positions")
    print(json.dumps({"rows": rows, "seconds": spent, "rows_per_s": rows / spent}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "seed":
        asyncio.run(seed_main(Path(sys.argv[2]), Path(sys.argv[3])))
    elif len(sys.argv) == 4 and sys.argv[1] == "raw-copy":
        asyncio.run(raw_copy_main(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--people", type=int, default=2000, help="people walking the floor (default 2000)")
        parser.add_argument("--batch", type=int, default=5000, help="records per batch (default 5000)")
        parser.add_argument("--seconds", type=float, default=10.0, help="duration of the saturating load (default 10)")
        parser.add_argument("--alert-rate", type=float, default=20_000.0,
                            help="positions/s of the paced load while alerts are timed (default 20000, the goal)")
        parser.add_argument("--probes", type=int, default=100,
                            help="expert-bidder pairs timed for alert latency (default 100)")
        parser.add_argument("--max-rate", type=float, default=200_000.0,
                            help="positions/s the generated batches can feed (default 200000)")
        parser.add_argument("--tmp-root", default="/tmp", help="where the temporary data directory goes")
        asyncio.run(main(parser.parse_args()))
