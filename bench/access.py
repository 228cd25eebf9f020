"""Door access decisions at 1,000 requests a second, against the real server, from the outside.

One real server (bench/_server.py: the app under uvicorn, bench/_harness.py) with a known venue
device token. A short child process (this file's `seed`, since joining the embedded PostgreSQL
leaves an exit hook in the joining process) writes an evaluation floor straight into the
tables — the floor plan's endpoints are another module's — with an entrance, a corridor, a
waiting area and six evaluation rooms, each with an in and an out reader; --people venue people
(experts, staff, agents, bidders) with a badge each; role rules (entrance, corridor, staff in
every room) and one rule per expert for their own room; and announces the change on the bus,
as the admin endpoints do. The server reloads its policy from the bus; the bench waits until
the last badge is known.

Load: an open-loop schedule of --rate requests a second for --seconds over --connections
keep-alive HTTP/1.1 connections (raw asyncio streams, so that the client costs little of the
machine's two cores). Each request's latency runs from its scheduled moment, not from when a
connection was free, so a stalled server is not hidden (no coordinated omission). Requests are
`POST /api/venue/access/decide` with the device token: a random person at a random reader,
2 % unknown badges; grants move people, so anti-passback and refusals come up as in life.

The same schedule is then run over --sockets door-controller websockets (/ws/venue/doors, the
token on the upgrade), several requests in flight on each, matched to their replies by id.

Baseline, same run, same server, same client and rate: `GET /healthz` (a route that goes through
the same routing, access wrapper and JSON response, and does nothing). Afterwards every decision
must be stored with its log index (checked through GET /api/venue/access/decisions). Prints:

    access_requests: N         decisions asked during the timed run
    access_p50_ms: X
    access_p99_ms: X           goal < 10
    access_server_cpu_ms_per_request: X   the server process's CPU time per request (so for the others)
    access_max_ms: X
    access_achieved_rps: X
    access_granted: N          answers by reason follow as access_reason_<code>: N
    access_errors: N           non-200 answers and transport errors (goal 0)
    access_baseline_p50_ms: X
    access_baseline_p99_ms: X
    access_p99_vs_baseline: X
    access_ws_p50_ms: X        the websocket run
    access_ws_p99_ms: X
    access_ws_errors: N
    access_stored: N/M         decisions stored with their log index / decisions asked in the whole run

    python bench/access.py [--people 2000] [--rate 1000] [--seconds 10] [--connections 32] [--sockets 8]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from bench._harness import BenchError, Harness, percentile, server_database  # noqa: E402
from tenderhall import bus  # noqa: E402
from venue.engine import POLICY_CHANGED, TOPIC  # noqa: E402

SCRIPT = Path(__file__).resolve()
FLOOR = "BENCH-F1"
ROOMS = 6
CHILD_TIMEOUT_S = 120
READY_TIMEOUT_S = 60
STORED_TIMEOUT_S = 30


def badge(i: int) -> str:
    return f"BENCH-{i:05d}"


def role_of(i: int, people: int) -> str:
    """60 % experts, 20 % staff, 10 % agents, 10 % bidders."""
    share = i / people
    return "expert" if share < 0.6 else "staff" if share < 0.8 else "agent" if share < 0.9 else "bidder"


def readers() -> list[tuple[str, str, str | None, str]]:
    """(reader, door, outside zone, inside zone): every door has an in and an out reader."""
    doors = [("e-in", "d-e", None, "E"), ("c-in", "d-c", "E", "C"), ("c-out", "d-c", "C", "E"),
             ("w-in", "d-w", "C", "W"), ("w-out", "d-w", "W", "C")]
    for n in range(1, ROOMS + 1):
        doors += [(f"r{n}-in", f"d-r{n}", "C", f"R{n}"), (f"r{n}-out", f"d-r{n}", f"R{n}", "C")]
    return doors


# ---------------------------------------------------------------------------- seeding (child process)


async def _seed(data_dir: Path, people: int) -> None:
    async with server_database(data_dir) as conn, conn.transaction():
        admin = await conn.fetchval("SELECT id FROM users WHERE 'admin' = ANY(roles) ORDER BY created_at LIMIT 1")
        venue, floor = uuid.uuid4(), uuid.uuid4()
        await conn.execute("INSERT INTO venues (id, name, region_code) VALUES ($1, '基准交易中心', '350100')", venue)
        await conn.execute("""INSERT INTO floors (id, venue_id, code, level, name, plan, transform, updated_by, updated_at)
                              VALUES ($1, $2, $3, 3, '三层评标区', $4, $4, $5, now())""", floor, venue, FLOOR, {}, admin)
        zones = [("E", "entrance"), ("C", "corridor"), ("W", "waiting_area")]
        zones += [(f"R{n}", "evaluation_room") for n in range(1, ROOMS + 1)]
        await conn.executemany("""INSERT INTO zones (floor_id, zone_id, kind, name, closed_area)
                                  VALUES ($1, $2, $3, $2, true)""", [(floor, z, k) for z, k in zones])
        await conn.executemany("""INSERT INTO doors (reader_id, floor_id, door_id, outside_zone, inside_zone)
                                  VALUES ($1, $2, $3, $4, $5)""", [(r, floor, d, o, i) for r, d, o, i in readers()])
        ids = [uuid.uuid4() for _ in range(people)]
        await conn.copy_records_to_table("venue_people", columns=["id", "name", "role"], records=[
            (ids[i], f"基准人员{i:05d}", role_of(i, people)) for i in range(people)])
        await conn.execute("""INSERT INTO credentials (person_id, kind, value, valid_from)
                              SELECT p, 'badge', v, now() - interval '1 day' FROM unnest($1::uuid[], $2::text[]) AS b(p, v)""",
                           ids, [badge(i) for i in range(people)])
        roles = ("expert", "staff", "agent", "bidder")
        rules = [(r, "entrance") for r in roles] + [(r, "corridor") for r in ("expert", "staff")]
        rules += [("bidder", "waiting_area"), ("agent", "waiting_area"), ("staff", "evaluation_room")]
        for role, kind in rules:
            await conn.execute("""INSERT INTO access_rules (role, zone_kind, valid_from, created_by)
                                  VALUES ($1, $2, now() - interval '1 hour', $3)""", role, kind, admin)
        experts = [i for i in range(people) if role_of(i, people) == "expert"]
        await conn.execute("""INSERT INTO access_rules (person_id, floor_id, zone_id, valid_from, valid_until, created_by)
                              SELECT p, $2, z, now() - interval '1 hour', now() + interval '8 hours', $3
                              FROM unnest($1::uuid[], $4::text[]) AS r(p, z)""",
                           [ids[i] for i in experts], floor, admin, [f"R{i % ROOMS + 1}" for i in experts])
        await bus.emit(conn, TOPIC, POLICY_CHANGED, {"because": "bench seed"})


def seed(h: Harness, people: int) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "seed", str(h.data_dir), str(people)], capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BenchError(f"seeding the floor failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


# ---------------------------------------------------------------------------- the load


class Connection:
    """One keep-alive HTTP/1.1 connection: write a request, read one Content-Length response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Connection":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = next((int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")), 0)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Run:
    latencies_ms: list[float] = field(default_factory=list)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: int = 0
    wall_s: float = 0.0
    server_cpu_s: float = 0.0


def post_decide(token: str, reader_id: str, credential: str) -> bytes:
    body = json.dumps({"reader_id": reader_id, "credential": credential}).encode()
    return (f"POST /api/venue/access/decide HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def drive(server: psutil.Process, port: int, requests: Callable[[int], bytes], rate: float, seconds: float,
                connections: int, decisions: bool) -> Run:
    """Send rate × seconds requests on an open-loop schedule; latency from each one's scheduled moment."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port))
    run = Run()
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    start = loop.time() + 0.05
    cpu_before = sum(server.cpu_times()[:2])

    async def one(i: int, due: float) -> None:
        conn = await pool.get()
        try:
            status, body = await conn.exchange(requests(i))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            run.errors += 1
            pool.put_nowait(await Connection.open(port))
            return
        pool.put_nowait(conn)
        run.latencies_ms.append((loop.time() - due) * 1000)
        if status != 200:
            run.errors += 1
        elif decisions:
            run.reasons[json.loads(body)["reason"]] += 1

    tasks = []
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    run.wall_s = loop.time() - start
    run.server_cpu_s = sum(server.cpu_times()[:2]) - cpu_before
    while not pool.empty():
        pool.get_nowait().close()
    return run


async def drive_socket(server: psutil.Process, port: int, token: str, messages: Callable[[int], dict[str, str]],
                       rate: float, seconds: float, connections: int) -> Run:
    """The same open-loop schedule over door-controller websockets (several requests in flight on each)."""
    from websockets.asyncio.client import connect

    sockets = [await connect(f"ws://127.0.0.1:{port}/ws/venue/doors",
                             additional_headers={"Authorization": f"Bearer {token}"}) for _ in range(connections)]
    run = Run()
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    due: dict[int, float] = {}
    done = asyncio.Event()

    async def replies(ws: Any) -> None:
        async for text in ws:
            reply = json.loads(text)
            if reply["type"] == "policy_changed":
                continue
            run.latencies_ms.append((loop.time() - due.pop(reply["id"])) * 1000)
            if reply["type"] == "decision":
                run.reasons[reply["reason"]] += 1
            else:
                run.errors += 1
            if len(run.latencies_ms) == count:
                done.set()

    readers = [asyncio.create_task(replies(ws)) for ws in sockets]
    start = loop.time() + 0.05
    cpu_before = sum(server.cpu_times()[:2])
    try:
        for i in range(count):
            due[i] = start + i / rate
            delay = due[i] - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await sockets[i % connections].send(json.dumps({"id": i, "type": "decide", **messages(i)}))
        await asyncio.wait_for(done.wait(), timeout=30)
    except TimeoutError:
        run.errors += len(due)
    run.wall_s = loop.time() - start
    run.server_cpu_s = sum(server.cpu_times()[:2]) - cpu_before
    for task in readers:
        task.cancel()
    for ws in sockets:
        await ws.close()
    return run


async def wait_for_policy(h: Harness, token: str, people: int) -> int:
    """Ask for the last badge until the reloaded policy knows it; returns the decisions asked."""
    conn = await Connection.open(h.server.port)
    asked = 0
    give_up = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:
            status, body = await conn.exchange(post_decide(token, "e-in", badge(people - 1)))
            asked += 1
            if status != 200:
                raise BenchError(f"decide answered {status}: {body[:300]!r}")
            if json.loads(body)["reason"] != "unknown_credential":
                return asked
            if time.monotonic() > give_up:
                raise BenchError(f"the server did not load the seeded policy within {READY_TIMEOUT_S} s")
            await asyncio.sleep(0.05)  # poll interval
    finally:
        conn.close()


async def stored_decisions(h: Harness, expected: int) -> int:
    """Decisions stored (each with its log index), polled until all are or the time is up."""
    assert h.admin is not None
    give_up = time.monotonic() + STORED_TIMEOUT_S
    while True:
        listed = await h.admin.call("GET", "/api/venue/access/decisions?per_page=100")
        if any(d["log_index"] is None for d in listed["decisions"]):
            raise BenchError("a stored decision has no log index")
        if listed["total"] >= expected or time.monotonic() > give_up:
            return listed["total"]
        await asyncio.sleep(0.2)  # poll interval: the writer flushes every 200 ms


def report(name: str, run: Run) -> None:
    print(f"{name}_p50_ms: {percentile(run.latencies_ms, 50):.2f}")
    print(f"{name}_p99_ms: {percentile(run.latencies_ms, 99):.2f}")
    print(f"{name}_server_cpu_ms_per_request: {run.server_cpu_s * 1000 / max(1, len(run.latencies_ms)):.3f}")


async def main(args: argparse.Namespace) -> None:
    token = secrets.token_urlsafe(32)
    os.environ["TENDERHALL_VENUE_DEVICE_TOKEN"] = token  # the server is started with it
    rng = random.Random(args.seed)
    all_readers = [r[0] for r in readers()]
    async with Harness(tmp_root=args.tmp_root) as h:
        h.note(f"seeding {args.people} people with badges and rules")
        await asyncio.to_thread(seed, h, args.people)
        asked = await wait_for_policy(h, token, args.people)
        port = h.server.port
        server = psutil.Process(h.server.pid)

        def ask(i: int) -> dict[str, str]:
            person = rng.randrange(args.people)
            credential = badge(person) if rng.random() > 0.02 else f"UNKNOWN-{person}"
            return {"reader_id": rng.choice(all_readers), "credential": credential}

        def decide(i: int) -> bytes:
            return post_decide(token, **ask(i))

        h.note("warming up (1 s of each, not counted)")
        asked += len((await drive(server, port, decide, args.rate, 1.0, args.connections, True)).latencies_ms)
        await drive(server, port, lambda i: HEALTHZ, args.rate, 1.0, args.connections, False)
        h.note(f"baseline: GET /healthz at {args.rate}/s for {args.seconds} s")
        baseline = await drive(server, port, lambda i: HEALTHZ, args.rate, args.seconds, args.connections, False)
        h.note(f"access: POST /api/venue/access/decide at {args.rate}/s for {args.seconds} s")
        run = await drive(server, port, decide, args.rate, args.seconds, args.connections, True)
        asked += len(run.latencies_ms)
        h.note(f"access over {args.sockets} door-controller websockets at {args.rate}/s for {args.seconds} s")
        socket_run = await drive_socket(server, port, token, ask, args.rate, args.seconds, args.sockets)
        asked += len(socket_run.latencies_ms)
        stored = await stored_decisions(h, asked)

    print(f"access_requests: {len(run.latencies_ms) + run.errors}")
    report("access", run)
    print(f"access_max_ms: {max(run.latencies_ms):.2f}")
    print(f"access_achieved_rps: {len(run.latencies_ms) / run.wall_s:.0f}")
    print(f"access_granted: {run.reasons['allowed']}")
    for reason, n in sorted(run.reasons.items()):
        if reason != "allowed":
            print(f"access_reason_{reason}: {n}")
    print(f"access_errors: {run.errors + baseline.errors}")
    report("access_baseline", baseline)
    print(f"access_p99_vs_baseline: {percentile(run.latencies_ms, 99) / percentile(baseline.latencies_ms, 99):.2f}")
    report("access_ws", socket_run)
    print(f"access_ws_errors: {socket_run.errors}")
    print(f"access_stored: {stored}/{asked}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "seed":
        asyncio.run(_seed(Path(sys.argv[2]), int(sys.argv[3])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=2000, help="venue people, each with a badge")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the timed run and of the baseline")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--sockets", type=int, default=8, help="door-controller websockets")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the request mix")
    parser.add_argument("--tmp-root", default="/tmp", help="where the temporary data directory goes")
    asyncio.run(main(parser.parse_args()))
