"""The server the benchmarks drive: the real app under uvicorn, plus one baseline route.

Settings come from the environment (Settings.from_env: DATABASE_URL, TENDERHALL_*), with
the data directory and port from the command line. The only addition is
`PATCH /bench/discard`, a plain Starlette route that reads the request body and throws it
away: the floor an upload endpoint on this same server, uvicorn and event loop can reach.
It exists only in this process; nothing of it goes into the product.

    python bench/_server.py --data-dir DIR --port PORT [--log-level warning]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from tenderhall.app import create_app  # noqa: E402
from tenderhall.settings import Settings  # noqa: E402


async def discard(request: Request) -> Response:
    """Read the whole body and drop it; 204 with the byte count in X-Bench-Received."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
    return Response(status_code=204, headers={"X-Bench-Received": str(received)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="TENDERHALL_DATA_DIR for this server (database, storage, key)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1 only)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    args = parser.parse_args()
    settings = Settings.from_env(data_dir=Path(args.data_dir), port=args.port, host="127.0.0.1")
    app = create_app(settings, extra_routes=[Route("/bench/discard", discard, methods=["PATCH"])])
    # As `tenderhall serve` runs it, bound to loopback.
    uvicorn.run(app, host="127.0.0.1", port=settings.port, log_level=args.log_level, proxy_headers=False)


if __name__ == "__main__":
    main()
