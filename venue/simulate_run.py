"""`tenderhall venue simulate`: the movement model (venue/simulate.py) driven against a running
server through its public APIs only, as real devices and an admin would use them.

Set-up (as an admin, `--user`, password from $TENDERHALL_PASSWORD or a prompt): read the floor
plan, then find or add the simulated people (by name and role), their badge and tag, and the
access rules that let each role into its zones (per zone id; experts also into their own room);
what exists already is reused, so a second run adds nothing. Then the day runs in real time
(`--speed` times faster): tag fixes go to POST /api/venue/positions in batches every half
second (the positioning system's coordinates: the floor's transform applied backwards), each
badge at a door to POST /api/venue/access/decide (the walker waits for the answer) and door
events to POST /api/venue/doors/events, with the device token.

Timestamps are always the real time of sending, so at `--speed` above 1 people walk faster in
the server's eyes, and the rules' thresholds (10 s near, 30 s silent) are real seconds:
injected violations hold for real seconds too.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import logging
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import httpx

from venue.floorplan import from_local
from venue.model import Transform
from venue.simulate import DEFAULT_DAY, DEFAULT_NOISE, Output, SimPerson, Simulation, allowed_zones, cast
from venue.simulate_paths import Plan, read_plan
from venue.simulate_violations import INJECTIONS, Injection, Injector, parse_injection

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.5      # positions are posted this often (a positioning system's batch)
MAX_BATCH = 5000
PAGE = 100


class SimulationError(RuntimeError):
    """The simulator cannot go on: the message says what the server answered or what is missing."""


@dataclass(frozen=True)
class Options:
    server: str = "http://127.0.0.1:8000"
    token: str | None = None
    user: str | None = "admin"
    password: str | None = None
    floor: str | None = None
    people: int = 20
    rate: float = 2.0            # fixes per person per real second
    speed: float = 1.0           # simulated seconds per real second
    duration: float | None = None  # real seconds; None: until the day is over
    day: float = DEFAULT_DAY     # simulated seconds
    start_at: float = 0.0        # simulated seconds into the day
    noise: float = DEFAULT_NOISE
    seed: int = 1
    prefix: str = "SIM"
    setup: bool = True
    injections: tuple[Injection, ...] = ()


@dataclass
class Summary:
    """What a run sent and what the server made of it."""

    fixes: int = 0
    accepted: int = 0
    rejected: int = 0
    asks: Counter[str] = field(default_factory=Counter)   # reason -> count
    door_events: int = 0
    created: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        asks = ", ".join(f"{k} {v}" for k, v in sorted(self.asks.items())) or "none"
        made = ", ".join(f"{k} {v}" for k, v in sorted(self.created.items())) or "nothing (all reused)"
        return [f"ran {self.seconds:.1f} s: positions sent {self.fixes}, accepted {self.accepted}, "
                f"rejected {self.rejected}; door decisions: {asks}; door events {self.door_events}",
                f"set-up created: {made}", *(f"  {n}" for n in self.notes), *(f"  error: {e}" for e in self.errors[:5])]


# --------------------------------------------------------------------------- talking to the server


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _error_text(response: httpx.Response, what: str) -> str:
    try:
        error = response.json().get("error", {})
        detail = f"{error.get('code')}: {error.get('message')}"
    except ValueError:
        detail = response.text[:200]
    return f"{what} answered {response.status_code} ({detail})"


async def _ok(response: httpx.Response, what: str) -> Any:
    """The JSON of a successful answer; SimulationError with the server's error otherwise."""
    if response.status_code >= 400:
        raise SimulationError(await _error_text(response, what))
    return response.json()


async def login(client: httpx.AsyncClient, user: str, password: str) -> None:
    body = await _ok(await client.post("/api/session", json={"username": user, "password": password}),
                     f"logging in as {user}")
    client.headers["X-CSRF-Token"] = body["csrf_token"]


async def load_floor(client: httpx.AsyncClient, code: str | None) -> tuple[Plan, Transform]:
    """The floor to walk (by code, else the demo's FZ-3F, else the first) and its transform."""
    if code is None:
        floors = (await _ok(await client.get("/api/venue/floors"), "listing the floors")).get("floors", [])
        if not floors:
            raise SimulationError("the server has no floor plan: run `tenderhall demo` or upload a plan first")
        codes = [f["code"] for f in floors]
        code = "FZ-3F" if "FZ-3F" in codes else codes[0]
    floor = (await _ok(await client.get(f"/api/venue/floors/{code}"), f"reading floor {code}"))["floor"]
    t = floor.get("transform") or {}
    return read_plan(code, floor["plan"]), Transform(**{k: float(v) for k, v in t.items()
                                                        if k in ("scale", "rotation_deg", "dx", "dy")})


async def _all(client: httpx.AsyncClient, path: str, key: str, params: dict[str, Any] | None = None) -> list[Any]:
    out: list[Any] = []
    for page in range(1, 1000):
        body = await _ok(await client.get(path, params={**(params or {}), "page": page, "per_page": PAGE}),
                         f"GET {path}")
        out += body.get(key, [])
        if len(body.get(key, [])) < PAGE:
            return out
    return out


def _active(item: dict[str, Any], now: datetime) -> bool:
    until = item.get("valid_until")
    return not item.get("revoked_at") and (until is None or datetime.fromisoformat(until.replace("Z", "+00:00")) > now)


async def ensure_people(client: httpx.AsyncClient, plan: Plan, people: Sequence[SimPerson],
                        summary: Summary) -> dict[str, str]:
    """Find or add each simulated person with their badge and tag; their venue person ids by key."""
    now = datetime.now(timezone.utc)
    existing: dict[tuple[str, str], str] = {}
    for role in sorted({p.role for p in people}):
        for item in await _all(client, "/api/venue/people", "people", {"role": role}):
            existing.setdefault((item["name"], item["role"]), item["id"])
    ids = {}
    for p in people:
        pid = existing.get((p.name, p.role))
        held: set[tuple[str, str]] = set()
        if pid is None:
            body = await _ok(await client.post("/api/venue/people", json={"name": p.name, "role": p.role}),
                             f"adding {p.name}")
            pid = body["person"]["id"]
            summary.created["people"] += 1
        else:
            detail = await _ok(await client.get(f"/api/venue/people/{pid}"), f"reading {p.name}")
            held = {(c["kind"], c["value"]) for c in detail.get("credentials", []) if _active(c, now)}
        for kind, value in (("badge", p.badge), ("tag", p.tag)):
            if (kind, value) in held:
                continue
            # From a minute ago: the first positions are stamped as they are sent, at once.
            await _ok(await client.post(f"/api/venue/people/{pid}/credentials", json={
                "kind": kind, "value": value, "valid_from": _iso(now - timedelta(minutes=1))}),
                f"binding {kind} {value} to {p.name}")
            summary.created[kind + "s"] += 1
        ids[p.key] = pid
    return ids


async def ensure_rules(client: httpx.AsyncClient, plan: Plan, people: Sequence[SimPerson], ids: dict[str, str],
                       summary: Summary) -> None:
    """Role rules for the zones each role may enter, person rules for experts' own rooms (per zone id)."""
    now = datetime.now(timezone.utc)
    have = {(r.get("role") or r.get("person_id"), r.get("floor"), r.get("zone_id"))
            for r in await _all(client, "/api/venue/access/rules", "rules") if _active(r, now)}
    wanted: list[dict[str, Any]] = []
    for role in sorted({p.role for p in people}):
        sample = next(p for p in people if p.role == role)
        for zone in sorted(allowed_zones(dataclasses.replace(sample, room=None), plan)):
            wanted.append({"role": role, "floor": plan.floor, "zone_id": zone})
    for p in people:
        common = allowed_zones(dataclasses.replace(p, room=None), plan)
        for zone in sorted(allowed_zones(p, plan) - common):
            wanted.append({"person_id": ids[p.key], "floor": plan.floor, "zone_id": zone})
    for rule in wanted:
        if (rule.get("role") or rule.get("person_id"), rule["floor"], rule["zone_id"]) in have:
            continue
        await _ok(await client.post("/api/venue/access/rules", json=rule), f"adding the access rule {rule}")
        summary.created["rules"] += 1


# --------------------------------------------------------------------------- the run


class Devices:
    """The positioning system and the door controllers: what they send, with the device token."""

    def __init__(self, client: httpx.AsyncClient, token: str, plan: Plan, transform: Transform, summary: Summary,
                 clock: "Clock") -> None:
        self.client, self.plan, self.transform, self.summary, self.clock = client, plan, transform, summary, clock
        self.auth = {"Authorization": f"Bearer {token}"}
        self.fixes: list[dict[str, Any]] = []
        self.doors: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.fatal: SimulationError | None = None

    def take(self, out: Output, sim: Simulation) -> None:
        for f in out.fixes:
            x, y = from_local(self.transform, f.x, f.y)
            self.fixes.append({"tag": f.tag, "t": _iso(self.clock.real(f.t)), "x": round(x, 3), "y": round(y, 3),
                               "floor": self.plan.floor, "quality": f.quality})
        for d in out.doors:
            self.doors.append({"reader_id": d.reader_id, "kind": d.kind, "at": _iso(min(self.clock.real(d.t),
                                                                                     datetime.now(timezone.utc)))})
        for ask in out.asks:
            task = asyncio.create_task(self._decide(sim, ask.key, ask.reader_id, ask.badge))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        for note in out.notes:
            line = f"t={self.clock.elapsed():.1f}s {note}"
            self.summary.notes.append(line)
            log.info("%s", line)

    async def _decide(self, sim: Simulation, key: str, reader: str, badge: str) -> None:
        try:
            response = await self.client.post("/api/venue/access/decide", headers=self.auth,
                                              json={"reader_id": reader, "credential": badge})
            if response.status_code in (401, 403):  # the token: no point going on
                self.fatal = self.fatal or SimulationError(await _error_text(response, f"asking reader {reader}"))
            body = await _ok(response, f"asking reader {reader}")
        except (SimulationError, httpx.HTTPError) as exc:
            self.summary.errors.append(str(exc))
            sim.answer(key, False)  # a controller that cannot reach the server keeps its door shut
            return
        self.summary.asks[body.get("reason", "?")] += 1
        sim.answer(key, bool(body.get("granted")))

    async def flush(self) -> None:
        if self.doors:
            doors, self.doors = self.doors, []
            await _ok(await self.client.post("/api/venue/doors/events", headers=self.auth, json=doors),
                      "sending door events")
            self.summary.door_events += len(doors)
        while self.fixes:
            batch, self.fixes = self.fixes[:MAX_BATCH], self.fixes[MAX_BATCH:]
            report = await _ok(await self.client.post("/api/venue/positions", headers=self.auth, json=batch),
                               "sending positions")
            self.summary.fixes += len(batch)
            self.summary.accepted += report.get("accepted", 0)
            self.summary.rejected += report.get("rejected", 0)
            for error in report.get("errors", [])[:3]:
                if len(self.summary.errors) < 20:
                    self.summary.errors.append(f"position {error.get('index')}: {error.get('error')}")

    async def drain(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.flush()


@dataclass
class Clock:
    """Real time of simulated moments: the run's start plus simulated seconds over the speed."""

    speed: float
    sim_start: float
    wall_start: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    mono_start: float = field(default_factory=time.monotonic)

    def real(self, sim_t: float) -> datetime:
        return self.wall_start + timedelta(seconds=(sim_t - self.sim_start) / self.speed)

    def elapsed(self) -> float:
        return time.monotonic() - self.mono_start

    def sim_now(self) -> float:
        return self.sim_start + self.elapsed() * self.speed


async def run(options: Options, *, client: httpx.AsyncClient | None = None,
              stop: asyncio.Event | threading.Event | None = None) -> Summary:
    """Set up (unless `options.setup` is off) and run the day; the summary. SimulationError when
    the server refuses the set-up or the device token; `stop` (polled, so a thread may set it)
    ends the run early."""
    own = client is None
    client = client or httpx.AsyncClient(base_url=options.server.rstrip("/"), timeout=30.0)
    summary = Summary()
    try:
        if options.user and options.password:
            await login(client, options.user, options.password)
        plan, transform = await load_floor(client, options.floor)
        rng = random.Random(options.seed)
        people = cast(options.people, plan, rng, options.prefix)
        if options.setup:
            ids = await ensure_people(client, plan, people, summary)
            await ensure_rules(client, plan, people, ids, summary)
        if not options.token:
            raise SimulationError("no device token: pass --token or --data-dir of the server")
        sim = Simulation(plan, people, rng, day=options.day, fix_interval=options.speed / options.rate,
                         noise=options.noise, start_at=options.start_at, injector=Injector(options.injections))
        clock = Clock(options.speed, sim.t)
        devices = Devices(client, options.token, plan, transform, summary, clock)
        last_flush = 0.0
        tick = min(0.1, 0.5 / options.rate)
        while not sim.finished and not (stop is not None and stop.is_set()):
            elapsed = clock.elapsed()
            if options.duration is not None and elapsed >= options.duration:
                break
            if devices.fatal is not None:
                raise devices.fatal
            devices.take(sim.advance(max(0.0, clock.sim_now() - sim.t)), sim)
            if elapsed - last_flush >= BATCH_SECONDS:
                last_flush = elapsed
                await devices.flush()
            # Pacing a simulation in real time (not waiting on a server): the next tick.
            await asyncio.sleep(max(0.0, tick - (clock.elapsed() - elapsed)))
        await devices.drain()
        summary.seconds = clock.elapsed()
        return summary
    finally:
        if own:
            await client.aclose()


# --------------------------------------------------------------------------- the command


def _token(args: argparse.Namespace) -> str | None:
    if args.token:
        return args.token
    if os.environ.get("TENDERHALL_VENUE_DEVICE_TOKEN"):
        return os.environ["TENDERHALL_VENUE_DEVICE_TOKEN"]
    from tenderhall.settings import Settings

    path = Settings.from_env(data_dir=Path(args.data_dir).expanduser() if args.data_dir else None).venue_device_token_path
    return path.read_text().strip() if path.exists() else None


def options_from(args: argparse.Namespace) -> Options:
    if args.people < 1 or args.rate <= 0 or args.speed <= 0 or args.day <= 0 or args.noise < 0:
        raise SimulationError("--people, --rate, --speed and --day must be positive, --noise 0 or more")
    try:
        injections = tuple(parse_injection(text, args.speed) for text in args.inject)
    except ValueError as exc:
        raise SimulationError(str(exc)) from None
    password = None
    if args.user:  # the floor is read as this user, and the set-up made
        password = os.environ.get("TENDERHALL_PASSWORD")
        if password is None:
            if not sys.stdin.isatty():
                raise SimulationError(f"set TENDERHALL_PASSWORD to {args.user}'s password (no terminal to ask on)")
            password = getpass.getpass(f"password of {args.user}: ")
    return Options(server=args.server, token=_token(args), user=args.user, password=password, floor=args.floor,
                   people=args.people, rate=args.rate, speed=args.speed, duration=args.duration, day=args.day,
                   start_at=args.start_at, noise=args.noise, seed=args.seed, prefix=args.prefix,
                   setup=not args.no_setup, injections=injections)


def cmd_simulate(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    try:
        options = options_from(args)
        print(f"simulating {options.people} people on {args.server} at {options.rate:g} Hz, speed ×{options.speed:g}"
              + (f", {len(options.injections)} violation(s) to inject" if options.injections else ""), flush=True)
        summary = asyncio.run(run(options))
    except (SimulationError, httpx.HTTPError) as exc:
        print(f"tenderhall venue simulate: {exc}", file=sys.stderr)
        return 1
    for line in summary.lines():
        print(line)
    return 0 if not summary.errors else 1


def add_commands(sub: Any) -> None:
    """`tenderhall venue simulate`."""
    venue = sub.add_parser("venue", help="the evaluation area: simulated movement for demos and benchmarks")
    venue_sub = venue.add_subparsers(dest="venue_command", required=True, metavar="ACTION")
    sim = venue_sub.add_parser(
        "simulate", help="walk simulated people through a floor, talking to the server as its devices do",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        epilog="violations (--inject KIND@SECONDS[+HOLD], seconds of real time from the start): "
               + "; ".join(f"{name} (hold {hold:g} s): {what}" for name, (_k, hold, what) in INJECTIONS.items()))
    sim.add_argument("--server", default=f"http://127.0.0.1:{os.environ.get('TENDERHALL_PORT', '8000')}",
                     help="the server's base URL (default http://127.0.0.1:8000)")
    sim.add_argument("--data-dir", help="the server's data directory, to read the device token from "
                     "(default $TENDERHALL_DATA_DIR or the per-user one)")
    sim.add_argument("--token", help="the venue device token (default $TENDERHALL_VENUE_DEVICE_TOKEN, "
                     "else <data dir>/venue-device-token)")
    sim.add_argument("--user", default="admin", help="admin who sets up the simulated people, badges, tags and "
                     "access rules (password from $TENDERHALL_PASSWORD or a prompt; default admin)")
    sim.add_argument("--no-setup", action="store_true", help="do not add people, credentials or rules "
                     "(they exist from an earlier run); the floor is still read, as --user")
    sim.add_argument("--floor", help="floor code (default FZ-3F when it exists, else the first floor)")
    sim.add_argument("--people", type=int, default=20, help="how many people (default 20: a realistic mix of "
                     "experts, bidders, agents, supervisors, staff and visitors)")
    sim.add_argument("--rate", type=float, default=2.0, help="positions per person per second (default 2)")
    sim.add_argument("--speed", type=float, default=1.0, help="time acceleration: simulated seconds per real "
                     "second (default 1)")
    sim.add_argument("--duration", type=float, help="stop after this many real seconds (default: when the day is over)")
    sim.add_argument("--day", type=float, default=DEFAULT_DAY, help=f"length of the simulated day in simulated "
                     f"seconds (default {DEFAULT_DAY:g}: a compact demo day)")
    sim.add_argument("--start-at", type=float, default=0.0, help="start this many simulated seconds into the day, "
                     "people already where the schedule has them (default 0: everyone arrives)")
    sim.add_argument("--noise", type=float, default=DEFAULT_NOISE, help="σ of the positioning noise in metres "
                     f"(default {DEFAULT_NOISE:g}; UWB is 0.1–0.3)")
    sim.add_argument("--seed", type=int, default=1, help="random seed (the same seed replays the same day)")
    sim.add_argument("--prefix", default="SIM", help="prefix of the simulated badges and tags (default SIM)")
    sim.add_argument("--inject", action="append", default=[], metavar="KIND@SECONDS[+HOLD]",
                     help="inject a violation (repeatable), e.g. wrong-zone@20 or meet@30+15; kinds: "
                     + ", ".join(INJECTIONS))
    sim.set_defaults(func=cmd_simulate)
