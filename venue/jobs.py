"""Periodic work of the venue domain, run every FLUSH_SECONDS by every instance: each instance
writes, logs and publishes the door decisions and door events it queued itself."""

from __future__ import annotations

import logging
from typing import Any

from venue import access_service

log = logging.getLogger(__name__)

INTERVAL_SECONDS = access_service.FLUSH_SECONDS


async def flush_access(app: Any, state: Any) -> None:
    """Queued door decisions and door events to the database, the log and the bus, in batches."""
    await access_service.flush(access_service.Deps.of(state))


async def finish(app: Any, state: Any) -> None:
    """At shutdown, after the periodic jobs stopped: write what is still queued (never raises)."""
    try:
        await flush_access(app, state)
    except Exception:  # noqa: BLE001 - shutdown goes on; the records lost are counted in the log line
        desk = state["venue_engine"].parts.get("access_desk")
        log.exception("could not write the last %d access records",
                      len(desk.decisions) + len(desk.door_events) if desk else 0)


JOBS = [flush_access]
