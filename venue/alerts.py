"""Venue alerts: stored, logged and pushed in one transaction; listed; acknowledged by a supervisor.

The rules run in memory on the ingest path (venue/engine.py); their alerts are handed to an
`AlertWriter` (a thread with its own connection), which writes whatever has queued up in one
transaction: the rows of venue_alerts, one transparency-log entry each (`venue.alert`, appended
as a batch) and one event each on the topic `venue` (kind `venue.alert`), so an alert is on the
supervisors' sockets exactly when it is stored and logged, and a reconnect with `after=` loses
none. Alerts raised but not yet written are lost if the process dies (a clean stop writes them).
An acknowledgement (a supervisor's note) is an update of the row, a log entry
(`venue.alert_acknowledged`) and an event of that kind, again in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import uuid
from datetime import datetime
from typing import Any, Sequence

import asyncpg

from tenderhall import bus, db, log
from tenderhall.platform_key import PlatformKey
from venue.engine import TOPIC
from venue.model import Alert
from venue.rules import RULE_CLASSES

logger = logging.getLogger(__name__)

ALERT = "venue.alert"
ACKNOWLEDGED = "venue.alert_acknowledged"
MAX_NOTE = 1000
BATCH = 500
# Alerts waiting while the database is away; beyond this the oldest are dropped (and logged).
MAX_QUEUE = 50_000
RETRY_SECONDS = 1.0


class AlertRefused(Exception):
    """An acknowledgement refused: `status` and a stable `code` for the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --------------------------------------------------------------------------- SQL

# People and evidence travel as JSON texts: unnest would flatten a uuid[][] of rows of different
# lengths, and asyncpg would take a list inside a jsonb[] argument for an array dimension.
_INSERT = """
INSERT INTO venue_alerts (rule, severity, at, people, floor_code, zone_id, message, evidence, phrase, params)
SELECT r, s, a, ARRAY(SELECT jsonb_array_elements_text(p::jsonb)::uuid), f, z, m, e::jsonb, ph, pa::jsonb
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::text[])
    WITH ORDINALITY AS x(r, s, a, p, f, z, m, e, ph, pa, n)
ORDER BY n
RETURNING *"""
_SET_LOG_INDEX = """
UPDATE venue_alerts v SET log_index = x.i FROM unnest($1::bigint[], $2::bigint[]) AS x(id, i) WHERE v.id = x.id"""
_NAMES = "SELECT id, name, role FROM venue_people WHERE id = ANY($1::uuid[])"
_PAGE = """
SELECT a.*, count(*) OVER () AS total FROM venue_alerts a
WHERE (NOT $1 OR a.acknowledged_at IS NULL) AND ($4::text[] IS NULL OR a.rule = ANY($4::text[]))
ORDER BY a.at DESC, a.id DESC LIMIT $2 OFFSET $3"""
_LOCK = "SELECT * FROM venue_alerts WHERE id = $1 FOR UPDATE"
_ACKNOWLEDGE = """
UPDATE venue_alerts SET acknowledged_at = now(), acknowledged_by = $2, note = $3 WHERE id = $1 RETURNING *"""


async def insert_alerts(conn: asyncpg.Connection, alerts: Sequence[Alert]) -> list[asyncpg.Record]:
    rows = await conn.fetch(_INSERT, [a.rule for a in alerts], [a.severity for a in alerts], [a.at for a in alerts],
                            [json.dumps([str(p) for p in a.people]) for a in alerts], [a.floor for a in alerts],
                            [a.zone for a in alerts], [a.message for a in alerts],
                            [json.dumps(list(a.evidence), ensure_ascii=False) for a in alerts],
                            [a.phrase for a in alerts], [json.dumps(dict(a.params), ensure_ascii=False) for a in alerts])
    return sorted(rows, key=lambda r: r["id"])


_RAISED_SINCE = """
SELECT rule, severity, at, message, people, floor_code, zone_id FROM venue_alerts WHERE at > $1 ORDER BY id"""


async def raised_since(pool: asyncpg.Pool, since: datetime) -> list[Alert]:
    """The alerts raised after `since`, as the rules made them (what their memory is restored from)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(_RAISED_SINCE, since)
    return [Alert(r["rule"], r["severity"], r["at"], r["message"], tuple(r["people"]), r["floor_code"], r["zone_id"])
            for r in rows]


async def names_of(conn: asyncpg.Connection, people: Sequence[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    return {r["id"]: r for r in await conn.fetch(_NAMES, list(set(people)))} if people else {}


# --------------------------------------------------------------------------- values


def alert_json(row: Any, names: dict[uuid.UUID, Any]) -> dict[str, Any]:
    """An alert as the API and the event carry it; people with their names and roles."""
    def who(pid: uuid.UUID) -> dict[str, Any]:
        found = names.get(pid)
        return {"id": str(pid), "name": found["name"] if found else None, "role": found["role"] if found else None}

    return {"id": row["id"], "rule": row["rule"], "class": RULE_CLASSES.get(row["rule"]), "severity": row["severity"],
            "at": log.iso_utc(row["at"]),
            "message": row["message"], "phrase": row["phrase"] or None, "params": row["params"],
            "people": [who(p) for p in row["people"]], "floor": row["floor_code"],
            "zone": row["zone_id"], "evidence": row["evidence"], "log_index": row["log_index"],
            "acknowledged_at": log.iso_utc(row["acknowledged_at"]) if row["acknowledged_at"] else None,
            "acknowledged_by": str(row["acknowledged_by"]) if row["acknowledged_by"] else None, "note": row["note"]}


def log_body(row: Any) -> dict[str, Any]:
    """The transparency-log entry of an alert (evidence measures are decimal strings already)."""
    return {"alert": row["id"], "rule": row["rule"], "severity": row["severity"], "at": log.iso_utc(row["at"]),
            "people": [str(p) for p in row["people"]], "floor": row["floor_code"], "zone": row["zone_id"],
            "message": row["message"], "evidence": row["evidence"]}


def parse_note(body: Any) -> str:
    """The acknowledgement's note: a text of 1 to MAX_NOTE characters; AlertRefused 422 otherwise."""
    note = body.get("note") if isinstance(body, dict) else None
    if not isinstance(note, str) or not note.strip() or len(note.strip()) > MAX_NOTE:
        raise AlertRefused(422, "invalid_note", f"note must be a text of 1 to {MAX_NOTE} characters")
    return note.strip()


# --------------------------------------------------------------------------- use cases


async def record(conn: asyncpg.Connection, signer: PlatformKey, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    """Store, log and push `alerts` inside the caller's (READ COMMITTED) transaction; their JSON."""
    if not alerts:
        return []
    rows = await insert_alerts(conn, alerts)
    appended = await log.append_entries(conn, signer, [(ALERT, log_body(r)) for r in rows])
    await conn.execute(_SET_LOG_INDEX, [r["id"] for r in rows], [a.index for a in appended])
    names = await names_of(conn, [p for r in rows for p in r["people"]])
    out = [{**alert_json(r, names), "log_index": a.index} for r, a in zip(rows, appended)]
    await bus.emit_many(conn, TOPIC, [(ALERT, item) for item in out])
    return out


async def acknowledge(pool: asyncpg.Pool, signer: PlatformKey, user_id: uuid.UUID, alert_id: int,
                      body: Any) -> dict[str, Any]:
    """A supervisor acknowledges an alert with a note. AlertRefused: 422 invalid_note,
    404 alert_not_found, 409 already_acknowledged."""
    note = parse_note(body)
    if not 0 < alert_id < 2**63:
        raise AlertRefused(404, "alert_not_found", f"there is no alert {alert_id}")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_LOCK, alert_id)
        if row is None:
            raise AlertRefused(404, "alert_not_found", f"there is no alert {alert_id}")
        if row["acknowledged_at"] is not None:
            raise AlertRefused(409, "already_acknowledged",
                               f"alert {alert_id} was acknowledged at {log.iso_utc(row['acknowledged_at'])}")
        row = await conn.fetchrow(_ACKNOWLEDGE, alert_id, user_id, note)
        entry = await log.append_entry(conn, signer, ACKNOWLEDGED, {
            "alert": alert_id, "by": str(user_id), "note": note, "at": log.iso_utc(row["acknowledged_at"])})
        out = {**alert_json(row, await names_of(conn, row["people"])), "acknowledgement_log_index": entry.index}
        await bus.emit(conn, TOPIC, ACKNOWLEDGED, out)
    return out


async def page(pool: asyncpg.Pool, open_only: bool, page_number: int, per_page: int,
               alert_class: str | None = None) -> dict[str, Any]:
    """Alerts newest first (only the unacknowledged with `open_only`, only the rules of
    `alert_class` when given: rules.ALERT_CLASSES), a page of them."""
    rules = None if alert_class is None else [r for r, c in RULE_CLASSES.items() if c == alert_class]
    async with pool.acquire() as conn:
        rows = await conn.fetch(_PAGE, open_only, per_page, (page_number - 1) * per_page, rules)
        names = await names_of(conn, [p for r in rows for p in r["people"]])
    total = rows[0]["total"] if rows else 0
    return {"alerts": [alert_json(r, names) for r in rows], "page": page_number, "per_page": per_page,
            "total": total, "pages": max(1, -(-total // per_page))}


# --------------------------------------------------------------------------- the writer


class AlertWriter:
    """Writes the alerts the engine raises, in batches, off the ingest path, on a thread of its own.

    `submit` only queues (the rules run on the app's event loop and must not wait on the
    database). The writer has its own event loop and connection on its own thread: a write is a
    dozen round trips (rows, log, events), and on the app's loop each of them would wait behind
    whatever position batch is being parsed (measured: 75 ms at p90, 213 ms at worst under the
    ingest benchmark). It wakes at once and writes everything queued in one transaction, so an
    alert reaches the sockets a commit after it was raised. A failed write is retried.
    """

    def __init__(self, dsn: str, signer: PlatformKey) -> None:
        self.dsn, self.signer = dsn, signer
        self._queue: list[Alert] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.written = 0

    def submit(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        with self._lock:
            self._queue.extend(alerts)
            if len(self._queue) > MAX_QUEUE:
                dropped = len(self._queue) - MAX_QUEUE
                del self._queue[:dropped]
                logger.error("venue alerts: %d dropped, the database has been away too long", dropped)
        self._poke()

    def _poke(self) -> None:
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the writer's loop has just closed
                self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        """Start the thread; returns once its loop is ready to be woken."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="venue-alert-writer",
                                        daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)

    async def _serve(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        pool: asyncpg.Pool | None = None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                try:
                    pool = pool or await db.create_pool(self.dsn, 1, 1)
                    await self._flush(pool)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    if self._stopping:
                        logger.error("venue alerts: %d not written at shutdown (%s)", len(self._queue), exc)
                        return
                    logger.warning("venue alerts: writing failed (%s); retrying", exc)
                    await asyncio.sleep(RETRY_SECONDS)
                    self._wake.set()
                if self._stopping and not self._queue:
                    return
        finally:
            if pool is not None:
                await pool.close()

    async def _flush(self, pool: asyncpg.Pool) -> None:
        """Write everything queued now (batches of BATCH); a failed batch goes back to the front."""
        while True:
            with self._lock:
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            if not batch:
                return
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await record(conn, self.signer, batch)
            except BaseException:
                with self._lock:
                    self._queue[:0] = batch
                raise
            self.written += len(batch)

    async def stop(self) -> None:
        """Write what is left (one attempt if the database is away) and end the thread."""
        if self._thread is None:
            return
        self._stopping = True
        self._poke()
        await asyncio.to_thread(self._thread.join)
        self._thread = None
