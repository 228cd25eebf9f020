"""The supervisors' live map of the evaluation area (/supervision/map): the page only; everything
on it is read from the venue's APIs and followed over the event socket (topic `venue`).

The page carries the id of the venue topic's latest event at the moment it is rendered: the map
then reads the current state (people, open alerts) and follows the socket from that id, so it
neither replays the day's position events nor misses anything that happened in between (events
also in the state it read are applied twice, harmlessly: by person and by alert id).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from supervision import store
from tenderhall.web import render, roles, route
from venue.engine import TOPIC
from venue.floor_service import KIND_COLOURS
from venue.rules import PHRASES

SUPERVISORS = roles("supervisor", "admin")


async def map_page(request: Request) -> Response:
    """The live map: floor plan, people, occupancy, door events, alerts, replay and heatmap."""
    async with request.state.pool.acquire() as conn:
        after = await store.last_event_id(conn, TOPIC)
    translate = request.state.templates.env.filters["translate"]
    return render(request, "supervision/map.html", {
        "after": after, "floor": request.query_params.get("floor", ""), "kind_colours": KIND_COLOURS,
        "can_acknowledge": request.state.user.has("supervisor"),
        # What alerts say, in the page's language; the map fills in each alert's parameters.
        "phrases": {key: translate(text) for key, text in PHRASES.items()}})


ROUTES = [
    route("/supervision/map", map_page, access=SUPERVISORS, name="supervision_map"),
]
