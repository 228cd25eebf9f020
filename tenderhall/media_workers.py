"""Media worker processes, one per evaluation session: start on first use, talk to, end with the session.

`WorkerHub` offers the MediaHub methods the session needs (publish, view, leave, close_room,
stats) over the worker's unix socket, with the same MediaRefused errors. Segments the worker
reports are turned back into Segment values and handed to `on_segment` (the platform logs them),
including those finished while the worker shuts down: `end()` waits for the process to exit
and for its last report to be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx

from tenderhall.media_hub import MediaRefused
from tenderhall.media_recorder import Segment
from tenderhall.media_worker import SETTINGS_ENV, settings_json
from tenderhall.settings import Settings

log = logging.getLogger(__name__)

OnSegment = Callable[[Segment], Awaitable[None]]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0


class WorkerError(RuntimeError):
    """A worker that would not start, or died: the message says which session and why."""


def segment_from_json(data: dict[str, Any]) -> Segment:
    return Segment(room=data["room"], path=Path(data["path"]), sha256=data["sha256"], bytes=data["bytes"],
                   started_at=datetime.fromisoformat(data["started_at"]),
                   ended_at=datetime.fromisoformat(data["ended_at"]), tracks=tuple(data["tracks"]),
                   timing_path=Path(data["timing_path"]))


class WorkerHub:
    """One running worker process and the client of its socket."""

    def __init__(self, key: str, proc: asyncio.subprocess.Process, socket_path: Path, on_segment: OnSegment | None) -> None:
        self.key, self.proc, self.socket_path = key, proc, socket_path
        self._on_segment = on_segment
        self._client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
                                         base_url="http://worker", timeout=REQUEST_TIMEOUT_S)
        self._reader = asyncio.create_task(self._read_reports())

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read_reports(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                report = json.loads(line)
                segment = segment_from_json(report["segment"])
            except (ValueError, KeyError, TypeError):
                log.warning("media worker %s wrote an unreadable line", self.key)
                continue
            if self._on_segment is not None:
                try:
                    await self._on_segment(segment)
                except Exception:  # noqa: BLE001 - one failed log write must not stop the next reports
                    log.exception("media worker %s: logging segment %s failed", self.key, segment.path.name)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self._client.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise WorkerError(f"the media worker of {self.key} does not answer: {exc}") from None
        if response.status_code >= 400:
            error = response.json().get("error", {}) if response.headers.get("content-type", "").startswith(
                "application/json") else {}
            raise MediaRefused(error.get("code", "worker_error"), error.get("message", response.text[:200]),
                               status=response.status_code)
        return response.json() if response.status_code != 204 else None

    async def publish(self, room: str, participant: str, offer: dict[str, Any]) -> dict[str, str]:
        return await self._call("POST", f"/publish/{room}/{participant}", offer)

    async def view(self, room: str, participant: str, offer: dict[str, Any]) -> dict[str, str]:
        return await self._call("POST", f"/view/{room}/{participant}", offer)

    async def leave(self, room: str, participant: str) -> None:
        await self._call("DELETE", f"/leave/{room}/{participant}")

    async def close_room(self, room: str) -> None:
        await self._call("DELETE", f"/rooms/{room}")

    async def stats(self, room: str) -> dict[str, Any]:
        return await self._call("GET", f"/stats/{room}")

    async def wait_ready(self) -> None:
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while True:
            if self.proc.returncode is not None:
                raise WorkerError(f"the media worker of {self.key} exited with {self.proc.returncode} while starting")
            with contextlib.suppress(httpx.TransportError):
                if (await self._client.get("/healthz")).status_code == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise WorkerError(f"the media worker of {self.key} did not start in {START_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.05)  # polling the socket until it answers

    async def stop(self) -> None:
        """SIGTERM, wait for the exit (its hub finishes the recordings), then for the last reports."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.warning("media worker %s did not stop in %.0f s: killed", self.key, STOP_TIMEOUT_S)
                self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._client.aclose()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


class MediaWorkers:
    """The server's registry of session workers; nothing is started until a session needs media."""

    def __init__(self, settings: Settings, on_segment: OnSegment | None = None) -> None:
        self._settings, self._on_segment = settings, on_segment
        self._workers: dict[str, WorkerHub] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._started = 0
        # Unix socket paths must stay under ~100 bytes, which a data directory may not: a private
        # (0700) directory under the system's temporary directory holds them instead.
        self._socket_dir: Path | None = None

    def running(self) -> list[str]:
        return sorted(self._workers)

    async def hub(self, key: str) -> WorkerHub:
        """The worker of session `key`, started if it is not running (or died)."""
        lock = self._starting.setdefault(key, asyncio.Lock())
        async with lock:
            worker = self._workers.get(key)
            if worker is not None and worker.proc.returncode is None:
                return worker
            if worker is not None:  # it died: keep its reports, start afresh
                await worker.stop()
            worker = await self._start(key)
            self._workers[key] = worker
            return worker

    async def _start(self, key: str) -> WorkerHub:
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="tenderhall-media-"))
        self._started += 1
        socket_path = self._socket_dir / f"worker-{self._started}.sock"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tenderhall.media_worker", "--socket", str(socket_path),
            stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, SETTINGS_ENV: settings_json(self._settings)})
        worker = WorkerHub(key, proc, socket_path, self._on_segment)
        try:
            await worker.wait_ready()
        except WorkerError:
            await worker.stop()
            raise
        log.info("media worker for %s started (pid %d)", key, proc.pid)
        return worker

    async def end(self, key: str) -> None:
        """End a session's media: its worker exits, its recordings are finished and reported."""
        worker = self._workers.pop(key, None)
        self._starting.pop(key, None)
        if worker is not None:
            await worker.stop()

    async def close(self) -> None:
        await asyncio.gather(*(self.end(k) for k in list(self._workers)))
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
