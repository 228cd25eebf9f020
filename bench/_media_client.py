"""Shared client side of the media benchmarks (bench/hall_video.py, bench/rtc.py); not a benchmark itself.

The media server subprocess (bench/_media_server.py) started and stopped, its signalling,
and the CPU accounting of this machine's processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

BENCH_DIR = Path(__file__).resolve().parent
SERVER_SCRIPT = BENCH_DIR / "_media_server.py"
READY_TIMEOUT_S = 60.0


class BenchError(RuntimeError):
    """The benchmark could not do what it set out to do; the message says what and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MediaServer:
    """bench/_media_server.py as a subprocess: start, poll /healthz until it answers, stop with SIGTERM."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir, self.log_path = data_dir, log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVER_SCRIPT), "--data-dir", str(self.data_dir), "--port", str(self.port)],
                env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=str(BENCH_DIR.parent))
        give_up = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise BenchError(f"the media server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > give_up:
                    raise BenchError(f"the media server did not answer in {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")
                time.sleep(0.1)  # poll interval, not a wait for readiness

    @property
    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idling (or waiting for the hypervisor), since boot."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0) - steal_seconds()


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other guests while this one wanted to run, since boot."""
    return getattr(psutil.cpu_times(), "steal", 0.0)


async def signal_offer(http: httpx.AsyncClient, path: str, offer: dict[str, str]) -> dict[str, str]:
    r = await http.post(path, json=offer)
    if r.status_code != 200:
        raise BenchError(f"POST {path}: HTTP {r.status_code} {r.text[:300]}")
    return r.json()


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)
