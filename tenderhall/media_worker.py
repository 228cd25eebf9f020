"""A media hub in a process of its own: one per evaluation session, ended with the session.

aiortc does not give back all the memory of closed connections (bench/rtc.py: 68 MiB before a
session, 220 MiB after its rooms left), so a long-lived server would only grow. A session's
media therefore runs in this worker, which the server starts and stops (media_workers.py):
when the session ends the process exits and the operating system takes everything back.

The worker is the platform's MediaHub behind a small JSON API on a unix socket (no TCP port,
reachable only by this machine's users with access to the data directory). Closed recording
segments are reported to the parent as JSON lines on stdout; the parent logs them.

    python -m tenderhall.media_worker --socket PATH      (settings in $TENDERHALL_MEDIA_WORKER)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenderhall.media_hub import MediaHub, MediaRefused
from tenderhall.media_recorder import Segment
from tenderhall.settings import Settings

SETTINGS_ENV = "TENDERHALL_MEDIA_WORKER"
# What of Settings a worker needs: where recordings go and how ICE is configured.
FIELDS = ("data_dir", "rtc_ice_servers", "rtc_host_addresses", "rtc_turn_username", "rtc_turn_credential")


def settings_json(settings: Settings) -> str:
    return json.dumps({name: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                       for name in FIELDS for v in [getattr(settings, name)]})


def settings_from_json(text: str) -> Settings:
    data = json.loads(text)
    return Settings(data_dir=Path(data["data_dir"]), rtc_ice_servers=tuple(data["rtc_ice_servers"]),
                    rtc_host_addresses=tuple(data["rtc_host_addresses"]),
                    rtc_turn_username=data["rtc_turn_username"], rtc_turn_credential=data["rtc_turn_credential"])


def segment_json(segment: Segment) -> dict[str, Any]:
    return {"room": segment.room, "path": str(segment.path), "sha256": segment.sha256, "bytes": segment.bytes,
            "started_at": segment.started_at.isoformat(), "ended_at": segment.ended_at.isoformat(),
            "tracks": list(segment.tracks), "timing_path": str(segment.timing_path)}


async def report_segment(segment: Segment) -> None:
    sys.stdout.write(json.dumps({"segment": segment_json(segment)}) + "\n")
    sys.stdout.flush()


def _refused(refused: MediaRefused) -> Response:
    return JSONResponse({"error": {"code": refused.code, "message": refused.message}}, status_code=refused.status)


async def _negotiate(request: Request) -> Response:
    hub: MediaHub = request.state.media_hub
    what = request.path_params["what"]
    if what not in ("publish", "view"):
        return JSONResponse({"error": {"code": "not_found", "message": "publish or view"}}, status_code=404)
    call = hub.publish if what == "publish" else hub.view
    try:
        offer = await request.json()
        return JSONResponse(await call(request.path_params["room"], request.path_params["participant"], offer))
    except MediaRefused as refused:
        return _refused(refused)
    except ValueError:
        return _refused(MediaRefused("bad_offer", "the offer is not JSON", status=400))


async def _leave(request: Request) -> Response:
    await request.state.media_hub.leave(request.path_params["room"], request.path_params["participant"])
    return Response(status_code=204)


async def _close_room(request: Request) -> Response:
    await request.state.media_hub.close_room(request.path_params["room"])
    return Response(status_code=204)


async def _stats(request: Request) -> Response:
    return JSONResponse(request.state.media_hub.stats(request.path_params["room"]))


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "pid": os.getpid()})


def make_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, MediaHub]]:
        hub = MediaHub(settings, on_segment=report_segment)
        try:
            yield {"media_hub": hub}
        finally:
            await hub.close()  # finishes the open recordings, which are reported before the exit

    return Starlette(lifespan=lifespan, routes=[
        Route("/{what:str}/{room}/{participant}", _negotiate, methods=["POST"]),
        Route("/leave/{room}/{participant}", _leave, methods=["DELETE"]),
        Route("/rooms/{room}", _close_room, methods=["DELETE"]),
        Route("/stats/{room}", _stats),
        Route("/healthz", _healthz),
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="unix socket path to serve the hub's JSON API on")
    args = parser.parse_args(argv)
    settings = settings_from_json(os.environ[SETTINGS_ENV])
    # stdout carries the segment reports: nothing else may write there (no access log).
    uvicorn.run(make_app(settings), uds=args.socket, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
