"""The supervision package's one query: where the venue's event stream stands now."""

from __future__ import annotations

import asyncpg

# The (topic, id) index answers this from its last entry.
_LAST_EVENT = "SELECT coalesce(max(id), 0) FROM events WHERE topic = $1"


async def last_event_id(conn: asyncpg.Connection, topic: str) -> int:
    """The id of the topic's latest event (0 when it has none): a page that reads the current
    state after this point follows the topic's socket from here, missing nothing."""
    return int(await conn.fetchval(_LAST_EVENT, topic))
