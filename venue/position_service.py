"""Positions' use cases: taking a batch (parse, store once, track and run the rules, tell the
live map), the tracker's loader for the engine, and the supervisors' reads.

A batch is stored before anything acts on it: a batch row (idempotency) and its positions in
one transaction (one COPY; one statement for a small batch), then the engine's `on_positions`
(tracker, then rules) — or, for an engine without rules, the tracker alone. Coordinates are
stored in the plan's metres (the floor's transform applied). The live map hears of moved people
at most every 0.5 s per process (event `venue.positions` on the venue topic), never once per
record.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

import asyncpg

from tenderhall import bus
from venue import position_store as store
from venue.engine import LOADERS, TOPIC
from venue.ingest import FLOOR, Batch, Report, errors_from_json, errors_json, parse_batch
from venue.model import Position, Transform
from venue.tracker import TRAIL, Directory, PersonState, Tracker, ZoneLookup

LIVE_KIND = "venue.positions"
IDENTITY = Transform()
SMALL_BATCH = 500  # up to this many positions, one INSERT statement; above, a COPY
# A tracker rebuilt after a restart replays each tag's last positions of this period; a
# credential that ended before it can no longer bind any position the tracker will see.
REBUILD_WINDOW = timedelta(hours=12)
# How long a batch's key is remembered (a re-sent batch is recognised within it).
BATCH_MEMORY = timedelta(days=2)
MAX_TRAJECTORY_POINTS = 20_000
MAX_PERIOD = timedelta(days=7)
DEFAULT_PERIOD = timedelta(hours=1)
MIN_CELL, MAX_CELL = 0.1, 100.0
MAX_HEATMAP_CELLS = 200_000


# ---------------------------------------------------------------------------- taking a batch


async def take_batch(pool: asyncpg.Pool, engine: Any, retention_days: int, body: bytes, *, ndjson: bool,
                     batch_key: str, now: datetime) -> Report:
    """Parse, store (once per `batch_key`), track and run the rules; the device's report.

    Raises ingest.BatchInvalid when the body cannot be read as a batch at all."""
    # Inline: a good batch of 5,000 takes about 2 ms (venue/ingest.py), less than a thread hop's wait.
    batch = parse_batch(body, ndjson=ndjson, now=now, not_before=now - timedelta(days=retention_days),
                        transforms=transforms_of(engine))
    if not await store_batch(pool, batch, batch_key, now):
        async with pool.acquire() as conn:
            row = await store.taken_batch(conn, batch_key)
        return Report(row["accepted"], row["rejected"], errors_from_json(row["errors"]), duplicate=True)
    if batch.positions:
        await act_on(engine, batch.positions, now)
        await publish_live(pool, engine)
    return Report(batch.accepted, batch.rejected, batch.errors)


def transforms_of(engine: Any) -> dict[str, Transform]:
    """Each floor's positioning-system transform, from the floors part; identities left out."""
    floors = engine.parts.get("floors")
    if floors is None:
        return {}
    return {code: floor.transform for code, floor in floors.floors.items() if floor.transform != IDENTITY}


async def store_batch(pool: asyncpg.Pool, batch: Batch, batch_key: str, now: datetime) -> bool:
    """Store the batch's good positions unless a batch of this key was taken; False then.

    The day partitions are made when a row finds none (the first batch of a day), then the
    batch is stored again. A small batch is one statement, a large one a COPY: round trips
    are what a small batch (the one that raises an alert) waits on."""
    async with pool.acquire() as conn:
        try:
            return await _store_once(conn, batch, batch_key, now)
        except asyncpg.CheckViolationError:
            await store.ensure_partitions(conn, batch.days())
        return await _store_once(conn, batch, batch_key, now)


async def _store_once(conn: asyncpg.Connection, batch: Batch, batch_key: str, now: datetime) -> bool:
    errors = errors_json(batch.errors)
    if len(batch.positions) <= SMALL_BATCH:
        return await store.claim_and_insert(conn, batch_key, now, batch.accepted, batch.rejected, errors,
                                            batch.positions)
    async with conn.transaction():
        if not await store.claim_batch(conn, batch_key, now, batch.accepted, batch.rejected, errors):
            return False
        await store.copy_positions(conn, batch.positions)
    return True


async def act_on(engine: Any, positions: Sequence[Position], now: datetime) -> list[Any]:
    """The engine's tracker and rules over stored positions; the alerts they raised."""
    on_positions = getattr(engine, "on_positions", None)
    if on_positions is not None:
        return list(await on_positions(positions, now) or ())
    tracker: Tracker | None = engine.parts.get("tracker")
    if tracker is not None:
        tracker.update(positions)
    return []


async def publish_live(pool: asyncpg.Pool, engine: Any) -> None:
    """Tell the live map where the people who moved are, if the last telling is 0.5 s old."""
    tracker: Tracker | None = engine.parts.get("tracker")
    if tracker is None:
        return
    moved = tracker.live_due(time.monotonic())
    if not moved:
        return
    payload = {"people": [compact(state, tracker.directory) for state in moved]}
    async with pool.acquire() as conn, conn.transaction():
        await bus.emit(conn, TOPIC, LIVE_KIND, payload)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _who(state: PersonState, directory: Directory) -> dict[str, Any]:
    person = directory.person(state.person)
    return {"person": str(state.person), "name": person.name if person else None, "role": person.role if person else None,
            "floor": state.floor, "x": round(state.x, 2), "y": round(state.y, 2), "zone": state.zone,
            "zone_floor": state.zone_floor}


def compact(state: PersonState, directory: Directory) -> dict[str, Any]:
    """A moved person for the live event: who, where, in which zone, when."""
    return {**_who(state, directory), "t": _iso(state.last_seen)}


def live_entry(state: PersonState, directory: Directory) -> dict[str, Any]:
    """A person's whole current state for GET /api/venue/live."""
    return {**_who(state, directory), "tag": state.tag, "since": _iso(state.since), "last_seen": _iso(state.last_seen),
            "trail": [[round(p.x, 2), round(p.y, 2)] for p in state.trail if p.floor == state.floor]}


# ---------------------------------------------------------------------------- retention


async def apply_retention(pool: asyncpg.Pool, now: datetime, retention_days: int) -> list[str]:
    """Drop the day partitions wholly older than the retention, and forget old batches (a device
    re-sends within minutes, not days); the dropped partitions' names."""
    cutoff = now - timedelta(days=retention_days)
    async with pool.acquire() as conn:
        dropped = await store.drop_partitions_before(conn, cutoff)
        await store.forget_batches_before(conn, max(cutoff, now - BATCH_MEMORY))
    return dropped


# ---------------------------------------------------------------------------- the tracker part


def zone_lookup(engine: Any) -> ZoneLookup:
    """The floors part's zone index, looked up at each call: it is replaced on every reload."""
    def zone_of(floor: str, x: float, y: float) -> str | None:
        floors = engine.parts.get("floors")
        return None if floors is None else floors.index.zone_id_at(floor, x, y)
    return zone_of


async def load_directory(conn: asyncpg.Connection, now: datetime) -> Directory:
    return Directory(await store.tag_credentials(conn, now - REBUILD_WINDOW), await store.people(conn))


async def load_tracker(pool: asyncpg.Pool, engine: Any) -> Tracker:
    """LOADERS["tracker"]: at start-up a tracker rebuilt from each tag's last positions; on a
    policy reload the same tracker with the new people and credentials (its state survives).

    The replay reads the last TRAIL positions of each tag of the last REBUILD_WINDOW: where each
    person is and their trail come back exactly; "in the zone since" is at most as old as the
    oldest of those positions."""
    now = datetime.now(timezone.utc)
    async with pool.acquire() as conn:
        directory = await load_directory(conn, now)
        existing: Tracker | None = engine.parts.get("tracker")
        if existing is not None:
            existing.rebind(directory, zone_lookup(engine))
            return existing
        positions = await store.recent_positions(conn, directory.tags(), now - REBUILD_WINDOW, TRAIL)
    if "floors" in LOADERS and "floors" not in engine.parts:
        # The replay needs the zones, whichever part registered first.
        engine.parts["floors"] = await LOADERS["floors"](pool, engine)
    tracker = Tracker(directory, zone_lookup(engine))
    tracker.update(positions)  # the transitions it finds happened before the restart: not for the rules
    return tracker


LOADERS["tracker"] = load_tracker


# ---------------------------------------------------------------------------- the supervisors' reads


def live(engine: Any, now: datetime) -> dict[str, Any]:
    tracker: Tracker | None = engine.parts.get("tracker")
    states = tracker.states() if tracker is not None else []
    directory = tracker.directory if tracker is not None else Directory((), ())
    return {"at": _iso(now), "people": [live_entry(s, directory) for s in sorted(states, key=lambda s: str(s.person))]}


class QueryInvalid(ValueError):
    """A read the supervisors asked for is refused: the period is empty, reversed or too long, or the heatmap too fine."""


def person_id(text: str) -> uuid.UUID | None:
    """A person id from a path, or None (then there is no such person)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def floor_code(text: str) -> str:
    if not FLOOR.fullmatch(text):
        raise QueryInvalid("floor is required: a floor code" if not text else "floor is not a floor code")
    return text


def cell_size(text: str) -> float:
    """The heatmap's square in metres, MIN_CELL to MAX_CELL."""
    try:
        cell = float(text)
    except ValueError:
        raise QueryInvalid("cell must be a number of metres") from None
    if not MIN_CELL <= cell <= MAX_CELL:  # NaN fails too
        raise QueryInvalid(f"cell must be between {MIN_CELL} and {MAX_CELL:.0f} metres")
    return cell


def check_period(start: datetime, end: datetime) -> None:
    if end <= start:
        raise QueryInvalid("from must be before to")
    if end - start > MAX_PERIOD:
        raise QueryInvalid(f"a period may be at most {MAX_PERIOD.days} days long")


async def trajectory(pool: asyncpg.Pool, person: uuid.UUID, start: datetime, end: datetime) -> dict[str, Any] | None:
    """The person's positions in [start, end), evenly thinned to at most 20,000; None: no such person."""
    check_period(start, end)
    async with pool.acquire() as conn:
        if not await store.person_exists(conn, person):
            return None
        total, rows = await store.trajectory(conn, person, start, end, MAX_TRAJECTORY_POINTS)
    return {"person": str(person), "from": _iso(start), "to": _iso(end), "total": total,
            "downsampled": len(rows) < total, "points": _points(rows)}


def _points(rows: Iterable[asyncpg.Record]) -> list[dict[str, Any]]:
    return [{"t": _iso(r["t"]), "floor": r["floor_code"], "x": r["x"], "y": r["y"]} for r in rows]


async def heatmap(pool: asyncpg.Pool, floor: str, start: datetime, end: datetime, cell: float) -> dict[str, Any]:
    """Positions on `floor` in [start, end) counted per square of `cell` metres (x, y: its lower corner)."""
    check_period(start, end)
    async with pool.acquire() as conn:
        rows = await store.heatmap(conn, floor, start, end, cell, MAX_HEATMAP_CELLS + 1)
    if len(rows) > MAX_HEATMAP_CELLS:
        raise QueryInvalid(f"more than {MAX_HEATMAP_CELLS} cells: choose a larger cell")
    return {"floor": floor, "from": _iso(start), "to": _iso(end), "cell": cell,
            "cells": [{"x": r["cx"] * cell, "y": r["cy"] * cell, "count": r["n"]} for r in rows]}
