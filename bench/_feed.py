"""The hall benchmark's listening side: a listen-only websocket client, its worker process and the parent's handle on it."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import BenchError  # noqa: E402

# Every child of the hall benchmark runs as `bench/hall.py <subcommand>`: hall.main dispatches them.
HALL_SCRIPT = Path(__file__).resolve().with_name("hall.py")
CONNECT_CONCURRENCY = 64
MEASURED_KINDS = ("hall.read_out",)
WARMUP_KINDS = ("hall.chat", "bench.warmup")


def raise_fd_limit() -> None:
    """1,000 sockets per side need more than the usual soft limit of 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ============================================================================ client processes


class FeedClient(asyncio.Protocol):
    """A minimal RFC 6455 client that only listens, as a hall page does, at a few µs a message.

    The clients share two cores with the server under test, so each message must cost them
    as little as possible: frames are parsed in data_received, with no task per message.
    It offers permessage-deflate (RFC 7692) as browsers do, so the server compresses as it
    would for them. Server frames are never masked; the client's own frames (pong, close) are.
    """

    def __init__(self, host: str, path: str, cookie: str | None, on_text: Any, on_close: Any) -> None:
        self.host, self.path, self.cookie = host, path, cookie
        self.on_text, self.on_close = on_text, on_close
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inflater: Any = None
        self.fresh_inflater = False  # server_no_context_takeover: a new inflater per message
        self.fragments: list[bytes] = []
        self.compressed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {self.host}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"]
        if self.cookie:
            lines.append(f"Cookie: {self.cookie}")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        t = time.time()
        self.buffer += data
        if not self.handshake.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").lower()
            del self.buffer[:end + 4]
            if not head.startswith("http/1.1 101"):
                self.handshake.set_exception(BenchError(f"handshake refused: {head.splitlines()[0]}"))
                return
            if "permessage-deflate" in head:
                self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                self.fresh_inflater = "server_no_context_takeover" in head
            self.handshake.set_result(None)
        buf = self.buffer
        while len(buf) >= 2:
            length, start = buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, start = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + length:
                return
            first, payload = buf[0], bytes(buf[start:start + length])
            del buf[:start + length]
            opcode = first & 0x0F
            if opcode in (0x1, 0x2, 0x0):
                if opcode != 0x0:
                    self.compressed = bool(first & 0x40)
                self.fragments.append(payload)
                if first & 0x80:
                    data_ = b"".join(self.fragments)
                    self.fragments = []
                    if self.compressed:
                        if self.fresh_inflater:
                            self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                        data_ = self.inflater.decompress(data_ + b"\x00\x00\xff\xff")
                    self.on_text(data_, t)
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._send(0x8, payload[:2])
                if self.transport is not None:
                    self.transport.close()
                self.on_close(code)
                return

    def _send(self, opcode: int, payload: bytes) -> None:
        # Client frames are masked (RFC 6455 §5.3); control payloads are under 126 bytes.
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        self._send(0x8, (1000).to_bytes(2, "big"))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc or BenchError("connection closed during the handshake"))


def _key_of(text: bytes) -> tuple[str, Any, Any]:
    """("m", read-out key (seq or bid)) for a measured message, ("w", warm-up number), or ("-", None); and its id."""
    message = json.loads(text)
    kind, payload = message.get("kind"), message.get("payload") or {}
    if kind in MEASURED_KINDS:
        return "m", payload.get("seq", payload.get("bid")), message.get("id")
    if kind in WARMUP_KINDS:
        # A bench warm-up carries its number; a hall chat message its message id.
        return "w", payload.get("warmup", payload.get("message", 0)), message.get("id")
    return "-", None, message.get("id")


async def client_main(args: argparse.Namespace) -> None:
    """Hold `len(tokens)` sockets open; record (key, receipt time) of every measured message."""
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    tokens: list[str | None] = json.loads(Path(args.tokens).read_text())
    host, port_text = args.base.removeprefix("ws://").split(":")
    records: list[tuple[Any, float]] = []
    received = [0] * len(tokens)
    warm = [0] * len(tokens)  # the latest warm-up number each client saw
    warm_said = [0]
    last_id = [args.after] * len(tokens)
    feeds: list[FeedClient | None] = [None] * len(tokens)
    reconnects, errors = 0, []
    said: set[str] = set()

    def say(word: str) -> None:
        if word not in said:
            said.add(word)
            print(word, flush=True)

    def on_text(i: int, text: bytes, t: float) -> None:
        what, key, event_id = _key_of(text)
        if isinstance(event_id, int):
            last_id[i] = event_id
        if what == "m":
            records.append((key, t))
            received[i] += 1
            if args.expect and received[i] == args.expect and all(n >= args.expect for n in received):
                say("DONE")
        elif what == "w" and key > warm[i]:
            warm[i] = key
            lowest = min(warm)
            if lowest > warm_said[0]:
                # Every client has seen warm-up `lowest`: whatever was queued before it is delivered.
                warm_said[0] = lowest
                print(f"WARM {lowest}", flush=True)

    def on_close(i: int, code: int) -> None:
        if code == 4409:  # the server dropped a lagging client: resume after the last id, as the page does
            nonlocal reconnects
            reconnects += 1
            loop.create_task(open_feed(i))
        elif "STOP" not in said:
            errors.append(f"client {i}: closed {code}")

    async def open_feed(i: int) -> None:
        path = args.path.replace("{after}", str(last_id[i]))
        cookie = f"{args.cookie}={tokens[i]}" if tokens[i] else None
        try:
            _transport, feed = await loop.create_connection(
                lambda: FeedClient(f"{host}:{port_text}", path, cookie, lambda text, t: on_text(i, text, t),
                                   lambda code: on_close(i, code)), host, int(port_text))
            await asyncio.wait_for(feed.handshake, 120)
            feeds[i] = feed
        except (OSError, BenchError, TimeoutError) as exc:
            errors.append(f"client {i}: connect: {type(exc).__name__}: {exc}")

    semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def bounded(i: int) -> None:
        async with semaphore:
            await open_feed(i)

    await asyncio.gather(*(bounded(i) for i in range(len(tokens))))
    print(f"CONNECTED {sum(f is not None for f in feeds)}", flush=True)
    # The parent says "stop" on stdin when it has what it needs (or gives up).
    while (await asyncio.to_thread(sys.stdin.readline)).strip() not in ("stop", ""):
        pass
    said.add("STOP")
    for feed in feeds:
        if feed is not None:
            feed.close()
    Path(args.out).write_text(json.dumps({"records": records, "reconnects": reconnects, "errors": errors[:50],
                                          "error_count": len(errors),
                                          "connected": sum(f is not None for f in feeds)}))


class ClientProcess:
    """One client worker (`hall.py clients`: client_main), talked to by lines on its stdin and stdout."""

    def __init__(self, base: str, path: str, tokens: Sequence[str | None], tmp: Path, name: str, *,
                 after: int, expect: int, cookie: str) -> None:
        self.tokens_file, self.out = tmp / f"{name}-tokens.json", tmp / f"{name}-out.json"
        self.tokens_file.write_text(json.dumps(list(tokens)))
        self.n = len(tokens)
        self.proc = subprocess.Popen(
            [sys.executable, str(HALL_SCRIPT), "clients", "--base", base, "--path", path,
             "--tokens", str(self.tokens_file), "--out", str(self.out), "--after", str(after),
             "--expect", str(expect), "--cookie", cookie],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.said: set[str] = set()
        self.loop = asyncio.get_running_loop()
        self._reader = self.loop.run_in_executor(None, self._read)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            asyncio.run_coroutine_threadsafe(self.lines.put(line.strip()), self.loop)

    async def wait_for(self, word: str, timeout: float) -> str:
        give_up = time.monotonic() + timeout
        while not any(s.startswith(word) for s in self.said):
            left = give_up - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise BenchError(f"client process {self.proc.pid}: no {word} within {timeout:.0f} s "
                                 f"(exit {self.proc.poll()})")
            with contextlib.suppress(TimeoutError):
                self.said.add(await asyncio.wait_for(self.lines.get(), timeout=min(left, 0.5)))
        return next(s for s in self.said if s.startswith(word))

    def has_said(self, word: str) -> bool:
        while not self.lines.empty():
            self.said.add(self.lines.get_nowait())
        return any(s.startswith(word) for s in self.said)

    def warmed_up_to(self) -> int:
        """The latest warm-up number every client of this process has seen."""
        self.has_said("WARM")
        return max((int(s.split()[1]) for s in self.said if s.startswith("WARM ")), default=0)

    async def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        await asyncio.to_thread(self.proc.wait, 120)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)
        if not self.out.exists():
            raise BenchError(f"client process {self.proc.pid} exited {self.proc.returncode} without results")
        return json.loads(self.out.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

