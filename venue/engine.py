"""The venue's live state in memory: what door decisions and position rules are made from.

One engine per app (app state `venue_engine`). It is loaded from the database at start-up and
reloaded when the bus says the policy changed (topic `venue`, kind `venue.policy_changed`:
people, credentials, rules, floors, or a session's sign-in and steps), so no request waits on
a slow query. Each part is owned by its module; the engine only holds and wires them:

- floors and their zone index (venue/floorplan.py: `ZoneIndex`)
- the access policy and the anti-passback / re-entry memory (venue/access.py: `Policy`, `decide`)
- the per-person position state with hysteresis (venue/tracker.py: `Tracker`)
- the rules over that state and the workflow (venue/rules.py), raising model.Alert values that
  venue/alerts.py stores, logs and pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

TOPIC = "venue"
POLICY_CHANGED = "venue.policy_changed"


class VenueEngine:
    """Holds the venue's parts; `start` loads them and follows the bus, `stop` ends that."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.lock = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None
        self.parts: dict[str, Any] = {}

    async def load(self, pool: Any) -> None:
        """(Re)load every part from the database; each module registers its loader in LOADERS."""
        async with self.lock:
            for name, loader in LOADERS.items():
                self.parts[name] = await loader(pool, self)

    async def start(self, pool: Any, bus: Any) -> None:
        await self.load(pool)
        self._follower = asyncio.create_task(self._follow(pool, bus))

    async def _follow(self, pool: Any, bus: Any) -> None:
        async with bus.subscribe(TOPIC) as subscription:
            while True:
                event = await subscription.queue.get()
                if event is not None and event.kind == POLICY_CHANGED:
                    try:
                        await self.load(pool)
                    except Exception:  # noqa: BLE001 - a failed reload keeps the last good state
                        log.exception("reloading the venue's state failed")

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower


# name -> async loader(pool, engine) -> the part; filled by the parts' modules at import.
LOADERS: dict[str, Any] = {}
