"""Periodic work of the positions, run by every instance: the retention.

Day partitions of `positions` wholly older than `venue_position_retention_days` are dropped
(a DROP, not a DELETE: instant, and no dead rows left to vacuum); a second instance finds
nothing left to drop.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from venue import position_service

log = logging.getLogger(__name__)


async def drop_old_positions(app: Any, state: Any) -> None:
    dropped = await position_service.apply_retention(state["pool"], datetime.now(timezone.utc),
                                                     state["settings"].venue_position_retention_days)
    if dropped:
        log.info("positions past the retention dropped: %s", ", ".join(dropped))


JOBS = [drop_old_positions]
