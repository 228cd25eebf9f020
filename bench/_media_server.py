"""The server bench/hall_video.py drives: the platform's MediaHub alone behind four JSON routes, under uvicorn.

No database: the hub records segments into --data-dir but nothing logs them (on_segment
None), so the benchmark measures forwarding, recording and signalling only. ICE offers
127.0.0.1 (rtc_host_addresses is set to it), as the benchmark stays on loopback.

    POST /publish/{room}/{participant}   {"sdp", "type": "offer"} -> {"sdp", "type": "answer"}
    POST /view/{room}/{participant}      the same, receive-only
    POST /leave/{room}/{participant}
    GET  /stats/{room}                   MediaHub.stats(room)
    GET  /healthz

    python bench/_media_server.py --data-dir DIR --port PORT [--max-viewers 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import AsyncIterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from tenderhall.media_hub import MediaHub, MediaRefused  # noqa: E402
from tenderhall.settings import Settings  # noqa: E402


def hub_of(request: Request) -> MediaHub:
    return request.state.media_hub


async def publish(request: Request) -> Response:
    return await _negotiate(request, "publish")


async def view(request: Request) -> Response:
    return await _negotiate(request, "view")


async def _negotiate(request: Request, what: str) -> Response:
    room, participant = request.path_params["room"], request.path_params["participant"]
    hub = hub_of(request)
    call = hub.publish if what == "publish" else hub.view
    try:
        answer = await call(room, participant, await request.json())
    except MediaRefused as refused:
        return JSONResponse({"error": {"code": refused.code, "message": refused.message}}, status_code=refused.status)
    return JSONResponse(answer)


async def leave(request: Request) -> Response:
    await hub_of(request).leave(request.path_params["room"], request.path_params["participant"])
    return Response(status_code=204)


async def stats(request: Request) -> Response:
    return JSONResponse(hub_of(request).stats(request.path_params["room"]))


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def make_app(settings: Settings, max_viewers: int) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, MediaHub]]:
        hub = MediaHub(settings, max_viewers=max_viewers)
        try:
            yield {"media_hub": hub}
        finally:
            await hub.close()

    return Starlette(lifespan=lifespan, routes=[
        Route("/publish/{room}/{participant}", publish, methods=["POST"]),
        Route("/view/{room}/{participant}", view, methods=["POST"]),
        Route("/leave/{room}/{participant}", leave, methods=["POST"]),
        Route("/stats/{room}", stats),
        Route("/healthz", healthz),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="data directory (recordings go to DIR/recordings)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1 only)")
    parser.add_argument("--max-viewers", type=int, default=1000, help="MediaHub max viewers per room (default 1000)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    args = parser.parse_args()
    settings = Settings.from_env(data_dir=Path(args.data_dir), port=args.port, host="127.0.0.1",
                                 rtc_host_addresses=("127.0.0.1",))
    uvicorn.run(make_app(settings, args.max_viewers), host="127.0.0.1", port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
