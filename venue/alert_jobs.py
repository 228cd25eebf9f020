"""Periodic work of the venue's alert rules, run every TICK_SECONDS by every instance.

Each instance's engine holds its own tracked people (the positions it ingested), so each
ticks its own: silence, dwell, presence after hours, zone capacity and badge grants whose tag
never came. The workflow (who evaluates what) is reloaded every REFRESH_SECONDS as well,
since draws unseal and evaluation windows open without a venue event.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from venue import workflow

TICK_SECONDS = 1.0


async def tick_rules(app: Any, state: Any) -> None:
    """The time-based rules; their alerts go to the engine's writer."""
    state["venue_engine"].tick(datetime.now(timezone.utc))


async def refresh_workflow(app: Any, state: Any) -> None:
    engine = state["venue_engine"]
    if time.monotonic() < engine.workflow_loaded_at + workflow.REFRESH_SECONDS:
        return
    engine.parts["workflow"] = await workflow.load(state["pool"], engine)
    engine.workflow_loaded_at = time.monotonic()


JOBS = [tick_rules, refresh_workflow]
