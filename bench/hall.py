"""Benchmark: the opening hall's live fan-out to 1,000 bidders' websockets, against a bare websockets server.

The real server (bench/_server.py under uvicorn, embedded PostgreSQL) runs one tender hall,
bus topic `tender:<id>`. An audience of `--clients` bidder users (own organisation each,
sessions inserted with tenderhall.accounts by a short child process) follows
`/ws/events?topic=tender:<id>&after=<last id>` from two client processes.

Platform path `read-next` (default): a real opening driven over HTTP as people would (an
agent, 3 custodians, `--spaced + --burst` bidders who seal, upload, and later decrypt their
bids; deposits, bidder list), then the host's `POST …/hall/read-next` reads out one bid per
`--spacing` seconds for `--spaced` bids and `{"all": true}` reads the remaining `--burst` in
one transaction. The publish time of a read-out is when the host's POST leaves. Only the
decryption window's 5-minute minimum is skipped, by moving `window_ends_at` in the database
(as tests/hall_world.end_window does): nothing measured depends on it.
Platform path `direct`: the bench publishes as the hall service does, one transaction per
read-out with `log.append_entry(…, "opening.read_out", …)` and `bus.emit(…, "hall.read_out",
…)` (the burst: all of them in one transaction), from a child process on the same database;
the payload carries the publish time.

Baseline, same run, same client processes: a bare `websockets` server (another process)
that `broadcast()`s each message a publisher socket sends it, the same spacing and burst.

The clients (FeedClient) are a minimal listen-only RFC 6455 client parsing frames in
`data_received`: on two cores shared with the server, a full client library per socket
costs more CPU than the server under test. Like browsers they offer permessage-deflate,
which both servers accept, so both compress each message for each client. Before each
measurement the bench publishes warm-ups until every client has seen the latest one, so
connecting and subscribing are over when the first read-out goes out.

Figures: `hall_p50_ms`/`hall_p99_ms` — publish → receipt over every (client, read-out) of the
spaced phase (goal p99 < 250); `hall_ratio` — messages per second delivered to all clients
in the burst, platform over bare (goal ≥ 0.5); the baseline's p50/p99 likewise.

    python bench/hall.py [--clients 1000] [--spaced 50] [--spacing 0.5] [--burst 200] [--path read-next|direct]
                         [--profile DIR]   # py-spy samples the server during the platform phase
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (  # noqa: E402
    TUS, BenchError, Harness, KeyOwner, file_body, free_port, gather_bounded, new_credit_code, new_password,
    parse_iso, patch_headers, percentile, seal_to_file,
)

SCRIPT = Path(__file__).resolve()
CLIENT_PROCESSES = 2  # a 2-core machine: the server, PostgreSQL and two client processes share it
CONNECT_CONCURRENCY = 64
WARMUP_EVERY_S = 2.5  # the hall chat refuses a user's messages closer than 2 s (CHAT_INTERVAL)
WARMUP_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 120.0  # after the last publish, how long clients may take to receive everything
MEASURED_KINDS = ("hall.read_out",)
WARMUP_KINDS = ("hall.chat", "bench.warmup")
SESSION_HOURS = 4
AUDIENCE_SCRYPT_N = 2**10  # the audience never logs in with its password; only its sessions are used


def raise_fd_limit() -> None:
    """1,000 sockets per side need more than the usual soft limit of 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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


async def _client_main(args: argparse.Namespace) -> None:
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
    """One client worker (this file, `clients`), talked to by lines on its stdin and stdout."""

    def __init__(self, base: str, path: str, tokens: Sequence[str | None], tmp: Path, name: str, *,
                 after: int, expect: int, cookie: str) -> None:
        self.tokens_file, self.out = tmp / f"{name}-tokens.json", tmp / f"{name}-out.json"
        self.tokens_file.write_text(json.dumps(list(tokens)))
        self.n = len(tokens)
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "clients", "--base", base, "--path", path, "--tokens", str(self.tokens_file),
             "--out", str(self.out), "--after", str(after), "--expect", str(expect), "--cookie", cookie],
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


# ============================================================================ the bare baseline server


async def _bare_server_main(args: argparse.Namespace) -> None:
    """websockets' own server: every message on /publish is broadcast() to every other socket."""
    from websockets.asyncio.server import broadcast, serve

    raise_fd_limit()
    audience: set[Any] = set()

    async def handler(ws: Any) -> None:
        if ws.request.path.startswith("/publish"):
            async for message in ws:
                broadcast(audience, message)
            return
        audience.add(ws)
        try:
            await ws.wait_closed()
        finally:
            audience.discard(ws)

    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(handler, "127.0.0.1", args.port, ping_interval=None, max_queue=None):
        print("LISTENING", flush=True)
        await stop


# ============================================================================ database children


async def _join_database(data_dir: Path) -> tuple[str, Any]:
    """The server's database: DATABASE_URL, or a handle on its running embedded PostgreSQL."""
    dsn = os.environ.get("DATABASE_URL") or None
    if dsn is not None:
        return dsn, None
    from tenderhall.embedded_pg import EmbeddedPostgres

    embedded = EmbeddedPostgres(data_dir)  # joins the server's instance; releasing it leaves it running
    return await asyncio.to_thread(embedded.start), embedded


async def _audience_main(args: argparse.Namespace) -> None:
    """`--n` bidder organisations with a user each, and a session for each user; tokens to `--out`."""
    from tenderhall import accounts, db

    dsn, embedded = await _join_database(Path(args.data_dir))
    try:
        conn = await db.connect(dsn)
        try:
            tokens = []
            password = new_password()
            for i in range(args.n):
                async with conn.transaction():
                    org = await accounts.create_organisation(conn, credit_code_text=new_credit_code(),
                                                             name=f"Hall bench audience {args.run} #{i}", kind="bidder")
                    user = await accounts.create_user(conn, username=f"aud-{args.run}-{i:05d}",
                                                      display_name=f"aud {i}", password=password, roles=["bidder"],
                                                      organisation_id=org, scrypt_n=AUDIENCE_SCRYPT_N)
                    token, _csrf = await accounts.create_session(conn, user, "127.0.0.1", SESSION_HOURS)
                tokens.append(token)
        finally:
            await conn.close()
    finally:
        if embedded is not None:
            embedded.stop()
    Path(args.out).write_text(json.dumps(tokens))


async def _end_window_main(args: argparse.Namespace) -> None:
    """Move the decryption window's end to now (the tender's minimum is 5 minutes)."""
    from tenderhall import db

    dsn, embedded = await _join_database(Path(args.data_dir))
    try:
        conn = await db.connect(dsn)
        try:
            await conn.execute("UPDATE openings SET window_ends_at = now() - interval '1 second' WHERE tender_id = $1",
                               uuid.UUID(args.tender))
        finally:
            await conn.close()
    finally:
        if embedded is not None:
            embedded.stop()


async def _publish_direct_main(args: argparse.Namespace) -> None:
    """Publish as the hall service does, on command lines from stdin; answer each with its times."""
    from tenderhall import bus, db, log
    from tenderhall.platform_key import load_or_create
    from tenderhall.settings import Settings

    settings = Settings.from_env(data_dir=Path(args.data_dir))
    signer = load_or_create(settings.platform_key_path)
    dsn, embedded = await _join_database(Path(args.data_dir))
    try:
        conn = await db.connect(dsn)
        try:
            print("READY", flush=True)
            while True:
                line = (await asyncio.to_thread(sys.stdin.readline)).strip()
                if not line or line == "quit":
                    break
                command = json.loads(line)
                t_pub = time.time()
                async with conn.transaction():
                    if command["op"] == "warmup":
                        await bus.emit(conn, args.topic, "bench.warmup", {"warmup": command["n"], "t_pub": t_pub})
                    else:
                        for seq in command["seqs"]:
                            body = {"tender": args.topic.partition(":")[2], "bid": f"bench-{seq}", "lot": "L1",
                                    "bidder": "91350100MA0000000X", "order": seq, "summary": SUMMARY}
                            appended = await log.append_entry(conn, signer, "opening.read_out", body)
                            await bus.emit(conn, args.topic, "hall.read_out", {
                                "log_index": appended.index, **body, "bidder": f"Bench bidder #{seq}",
                                "amounts_in_words": AMOUNTS_IN_WORDS, "seq": seq, "t_pub": t_pub})
                print(json.dumps({"t_pub": t_pub, "t_commit": time.time()}), flush=True)
        finally:
            await conn.close()
    finally:
        if embedded is not None:
            embedded.stop()


def run_child(*argv: str, timeout: float = 600) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BenchError(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


# ============================================================================ publishers


SUMMARY = {"price": "12345678.90", "duration_days": 365, "quality": "合格"}
AMOUNTS_IN_WORDS = {"price": "壹仟贰佰叁拾肆万伍仟陆佰柒拾捌元玖角"}


@dataclass
class Published:
    """What one phase published: key → publish time, and when the host's call returned."""

    t_pub: dict[Any, float] = field(default_factory=dict)
    host_ms: list[float] = field(default_factory=list)


class ReadNextPublisher:
    """The host's read-next over HTTP; warm-ups are host chat messages."""

    def __init__(self, agent: Any, tender_id: str) -> None:
        self.agent, self.tender_id = agent, tender_id
        self.next_warmup = 0.0
        self.last_warmup = 0

    async def warmup(self) -> int:
        """Write in the hall chat; its message id numbers the warm-up."""
        r = await self.agent.http.post(f"/api/tenders/{self.tender_id}/hall/chat", json={"text": "bench warm-up"})
        if r.status_code == 200:
            self.last_warmup = r.json()["message"]
        elif r.status_code != 429:  # 429: too soon after the last one; that one stands
            raise BenchError(f"chat: HTTP {r.status_code} {r.text[:300]}")
        self.next_warmup = time.monotonic() + WARMUP_EVERY_S
        return self.last_warmup

    async def publish(self, seqs: Sequence[int], out: Published) -> None:
        t_pub = time.time()
        body = {"all": True} if len(seqs) > 1 else {}
        done = await self.agent.call("POST", f"/api/tenders/{self.tender_id}/hall/read-next", json=body)
        out.host_ms.append((time.time() - t_pub) * 1000)
        if len(done["read"]) != len(seqs):
            raise BenchError(f"read-next read {len(done['read'])} bids, expected {len(seqs)}")
        for bid in done["read"]:
            out.t_pub[bid] = t_pub

    async def close(self) -> None:
        pass


class DirectPublisher:
    """The hall service's transaction run by a child process on the same database."""

    def __init__(self, data_dir: Path, topic: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), "publish-direct", "--data-dir", str(data_dir),
                                      "--topic", topic], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        self.warmups, self.next_warmup = 0, 0.0

    async def start(self) -> None:
        line = await asyncio.to_thread(self._line)
        if line != "READY":
            raise BenchError(f"publish-direct did not start: {line!r}")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    async def _command(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        line = await asyncio.to_thread(self._line)
        if not line:
            raise BenchError(f"publish-direct exited ({self.proc.poll()})")
        return json.loads(line)

    async def warmup(self) -> int:
        self.warmups += 1
        self.next_warmup = time.monotonic() + WARMUP_EVERY_S
        await self._command({"op": "warmup", "n": self.warmups})
        return self.warmups

    async def publish(self, seqs: Sequence[int], out: Published) -> None:
        t0 = time.time()
        answer = await self._command({"op": "read_out", "seqs": list(seqs)})
        out.host_ms.append((time.time() - t0) * 1000)
        for seq in seqs:
            out.t_pub[seq] = answer["t_pub"]

    async def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        await asyncio.to_thread(self.proc.wait, 60)


class BarePublisher:
    """A socket to the bare server's /publish; each message carries its seq and publish time."""

    def __init__(self, url: str, topic: str) -> None:
        self.url, self.topic = url, topic
        self.ws: Any = None
        self.warmups, self.next_warmup = 0, 0.0

    async def start(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, ping_interval=None, max_queue=None)

    def _message(self, kind: str, seq: int | None, t_pub: float) -> str:
        payload: dict[str, Any] = {"t_pub": t_pub}
        if seq is None:
            payload["warmup"] = self.warmups
        else:
            payload.update({"log_index": 100000 + seq, "bid": f"bench-{seq}", "lot": "L1",
                            "bidder": f"Bench bidder #{seq}", "order": seq, "summary": SUMMARY,
                            "amounts_in_words": AMOUNTS_IN_WORDS, "seq": seq})
        return json.dumps({"id": 100000 + (seq or 0), "topic": self.topic, "kind": kind, "payload": payload,
                           "created_at": now_iso()})

    async def warmup(self) -> int:
        self.warmups += 1
        self.next_warmup = time.monotonic() + WARMUP_EVERY_S
        await self.ws.send(self._message("bench.warmup", None, time.time()))
        return self.warmups

    async def publish(self, seqs: Sequence[int], out: Published) -> None:
        t0 = time.time()
        for seq in seqs:
            t_pub = time.time()
            await self.ws.send(self._message("hall.read_out", seq, t_pub))
            out.t_pub[seq] = t_pub
        out.host_ms.append((time.time() - t0) * 1000)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


# ============================================================================ one measurement


@dataclass
class Phase:
    """Latencies and throughput of one target (platform or bare)."""

    spaced_ms: list[float]
    burst_ms: list[float]
    burst_msgs_per_s: float
    lost: int
    reconnects: int
    errors: list[str]
    host_ms: list[float]


async def measure(name: str, base: str, path: str, tokens: Sequence[str | None], publisher: Any, tmp: Path, *,
                  after: int, spaced: int, spacing: float, burst: int, cookie: str) -> Phase:
    """Connect the audience, warm up, publish `spaced` read-outs then a burst of `burst`; collect receipts."""
    half = (len(tokens) + CLIENT_PROCESSES - 1) // CLIENT_PROCESSES
    groups = [tokens[i:i + half] for i in range(0, len(tokens), half)]
    clients = [ClientProcess(base, path, g, tmp, f"{name}-{i}", after=after, expect=spaced + burst, cookie=cookie)
               for i, g in enumerate(groups)]
    try:
        for c in clients:
            connected = int((await c.wait_for("CONNECTED", 300)).split()[1])
            if connected != c.n:
                raise BenchError(f"{name}: only {connected} of {c.n} clients of one process connected")
        # Warm up until every client has seen the latest warm-up: all are subscribed, and the
        # fan-out of everything before it (connections, earlier warm-ups) is over.
        give_up = time.monotonic() + WARMUP_TIMEOUT_S
        number = await publisher.warmup()
        while not all(c.warmed_up_to() >= number for c in clients):
            if time.monotonic() > give_up:
                raise BenchError(f"{name}: not every client saw a warm-up message within {WARMUP_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.2)  # poll interval while warm-ups propagate
            if time.monotonic() >= publisher.next_warmup:
                number = await publisher.warmup()
        spaced_pub, burst_pub = Published(), Published()
        start = time.monotonic()
        for i in range(spaced):
            await asyncio.sleep(max(0.0, start + i * spacing - time.monotonic()))
            await publisher.publish([i], spaced_pub)
        await asyncio.sleep(max(0.0, start + spaced * spacing - time.monotonic()))
        if burst:
            await publisher.publish(list(range(spaced, spaced + burst)), burst_pub)
        give_up = time.monotonic() + DRAIN_TIMEOUT_S
        while not all(c.has_said("DONE") for c in clients) and time.monotonic() < give_up:
            await asyncio.sleep(0.2)  # poll interval while the last messages arrive
        results = [await c.stop() for c in clients]
    finally:
        for c in clients:
            c.kill()
    receipts: dict[Any, list[float]] = {}
    for r in results:
        for key, t in r["records"]:
            receipts.setdefault(key, []).append(t)
    spaced_ms = [(t - t_pub) * 1000 for key, t_pub in spaced_pub.t_pub.items() for t in receipts.get(key, ())]
    burst_times = [t for key in burst_pub.t_pub for t in receipts.get(key, ())]
    burst_ms = [(t - burst_pub.t_pub[key]) * 1000 for key in burst_pub.t_pub for t in receipts.get(key, ())]
    rate = 0.0
    if burst_times:
        rate = len(burst_times) / max(1e-9, max(burst_times) - min(burst_pub.t_pub.values()))
    expected = len(tokens) * (spaced + burst)
    return Phase(spaced_ms, burst_ms, rate, expected - len(spaced_ms) - len(burst_ms),
                 sum(r["reconnects"] for r in results), [e for r in results for e in r["errors"]],
                 spaced_pub.host_ms + burst_pub.host_ms)


# ============================================================================ the opening, over HTTP


async def opening_at_reading(h: Harness, bids: int, setup_concurrency: int) -> tuple[Any, str]:
    """A tender whose opening is at the read-out with `bids` opened bids; (agent session, tender id)."""
    from tenderhall.canonical import b64url
    from trading import key_wrap
    from trading.manifest import validate_manifest

    agent = await h.agent()
    custodians = await h.custodians(3)
    bidders = await h.bidders(bids, concurrency=setup_concurrency)
    # Time for sealing and uploading every bid before the deadline, with room to spare.
    tender = await h.publish_tender(agent, custodians, deadline=time.time() + 15 + 0.1 * bids)
    tender_id, deadline = tender["id"], parse_iso(tender["deadline"])

    async def submit(i: int, bidder: KeyOwner) -> Any:
        path = h.files / f"bid-{i:04d}.bin"
        sealed = await asyncio.to_thread(seal_to_file, bidder, tender, [("technical.bin", os.urandom(1024))], path)
        r = await bidder.session.http.post(f"/api/tenders/{tender_id}/lots/L1/uploads", json=sealed.submission(),
                                           headers=TUS)
        if r.status_code != 201:
            raise BenchError(f"upload POST: HTTP {r.status_code} {r.text[:300]}")
        size = sealed.manifest["ciphertext"]["size"]
        r = await bidder.session.http.patch(f"/api/uploads/{r.json()['upload_id']}", content=file_body(path),
                                            headers=patch_headers(size))
        if r.status_code != 200:
            raise BenchError(f"upload PATCH: HTTP {r.status_code} {r.text[:300]}")
        return sealed, r.json()["bid"]

    submitted = await gather_bounded([submit(i, b) for i, b in enumerate(bidders)], setup_concurrency)
    if time.time() >= deadline:
        raise BenchError("the bids were not all in before the deadline; the setup is too slow for this many bids")
    h.note(f"{bids} bids submitted; the deadline is in {deadline - time.time():.1f} s")
    await asyncio.sleep(max(0.0, deadline - time.time() + 0.5))  # the deadline is a clock time, not a server state

    hall = f"/api/tenders/{tender_id}/hall"
    await agent.call("POST", f"{hall}/start-sign-in", json={})
    await agent.call("POST", f"{hall}/close-submissions", json={})
    await gather_bounded([agent.call("POST", f"{hall}/deposits", json={
        "organisation_id": b.organisation_id, "deposit": "confirmed"}) for b in bidders], setup_concurrency)
    published = await agent.call("POST", f"{hall}/publish-bidders", json={})
    if published.get("step") != "decryption":
        raise BenchError(f"publish-bidders: {published}")

    async def decrypt(bidder: KeyOwner, sealed: Any, bid_id: str) -> None:
        manifest = validate_manifest(sealed.manifest)
        key = key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, bidder.decrypt)
        await bidder.session.call("POST", f"{hall}/decrypt", json={"bid_id": bid_id, "content_key": b64url(key)})

    await gather_bounded([decrypt(b, s, bid) for b, (s, bid) in zip(bidders, submitted)], setup_concurrency)
    await asyncio.to_thread(run_child, "end-window", "--data-dir", str(h.data_dir), "--tender", tender_id)
    closed = await agent.call("POST", f"{hall}/close-window", json={})
    if closed.get("step") != "reading":
        raise BenchError(f"close-window: {closed}")
    return agent, tender_id


# ============================================================================ the run


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.1f}" if values else "nan"


async def run(args: argparse.Namespace) -> dict[str, str]:
    raise_fd_limit()
    wall = time.perf_counter()
    async with Harness(keep=args.keep) as h:
        audience_file = h.tmp / "audience.json"
        audience = asyncio.create_task(asyncio.to_thread(
            run_child, "audience", "--data-dir", str(h.data_dir), "--n", str(args.clients), "--run", h.run_id,
            "--out", str(audience_file)))
        if args.path == "read-next":
            agent, tender_id = await opening_at_reading(h, args.spaced + args.burst, args.setup_concurrency)
            snapshot = await agent.call("GET", f"/api/tenders/{tender_id}/hall")
            after = snapshot["hall"]["last_event_id"]
            platform_pub: Any = ReadNextPublisher(agent, tender_id)
        else:
            tender_id, after = str(uuid.uuid4()), 0
            platform_pub = DirectPublisher(h.data_dir, f"tender:{tender_id}")
            await platform_pub.start()
        await audience
        tokens: list[str | None] = json.loads(audience_file.read_text())
        setup_s = time.perf_counter() - wall
        h.note(f"set up in {setup_s:.1f} s: {len(tokens)} audience sessions, hall of tender {tender_id}")

        base = h.base_url.replace("http://", "ws://")
        profiler = None
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            profiler = subprocess.Popen(["py-spy", "record", "--nonblocking", "-p", str(h.server.pid), "-r", "250", "--format", "raw",
                                         "-o", str(Path(args.profile) / f"server-{args.path}.txt")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            platform = await measure("platform", base, f"/ws/events?topic=tender:{tender_id}&after={{after}}",
                                     tokens, platform_pub, h.tmp, after=after, spaced=args.spaced,
                                     spacing=args.spacing, burst=args.burst, cookie="th_session")
        finally:
            await platform_pub.close()
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                await asyncio.to_thread(profiler.wait, 60)
        h.note(f"platform: {len(platform.spaced_ms) + len(platform.burst_ms)} receipts, {platform.lost} lost")

        port = free_port()
        bare_proc = subprocess.Popen([sys.executable, str(SCRIPT), "bare-server", "--port", str(port)],
                                     stdout=subprocess.PIPE, text=True)
        try:
            assert bare_proc.stdout is not None
            if (await asyncio.to_thread(bare_proc.stdout.readline)).strip() != "LISTENING":
                raise BenchError("the bare websockets server did not start")
            bare_pub = BarePublisher(f"ws://127.0.0.1:{port}/publish", f"tender:{tender_id}")
            await bare_pub.start()
            try:
                bare = await measure("bare", f"ws://127.0.0.1:{port}", "/ws/events", [None] * len(tokens),
                                     bare_pub, h.tmp, after=0, spaced=args.spaced, spacing=args.spacing,
                                     burst=args.burst, cookie="x")
            finally:
                await bare_pub.close()
        finally:
            bare_proc.terminate()
            await asyncio.to_thread(bare_proc.wait, 30)
        h.note(f"bare: {len(bare.spaced_ms) + len(bare.burst_ms)} receipts, {bare.lost} lost")

    for which, phase in (("platform", platform), ("bare", bare)):
        for e in phase.errors[:10]:
            print(f"# {which}: {e}", file=sys.stderr)
    ratio = platform.burst_msgs_per_s / bare.burst_msgs_per_s if bare.burst_msgs_per_s else float("nan")
    host = "read-next POST" if args.path == "read-next" else "publish transaction"
    return {
        "hall_p50_ms": f"{_ms(platform.spaced_ms, 50)} # {args.spaced} read-outs {args.spacing} s apart, "
                       f"{args.clients} clients, path {args.path}",
        "hall_p99_ms": f"{_ms(platform.spaced_ms, 99)} (goal < 250)",
        "hall_ratio": f"{ratio:.2f} (goal >= 0.5) # burst msgs/s delivered, platform / bare",
        "baseline_p50_ms": _ms(bare.spaced_ms, 50),
        "baseline_p99_ms": _ms(bare.spaced_ms, 99),
        "hall_max_ms": f"{max(platform.spaced_ms, default=float('nan')):.1f}",
        "hall_burst_msgs_per_s": f"{platform.burst_msgs_per_s:.0f} # {args.burst} read-outs at once",
        "baseline_burst_msgs_per_s": f"{bare.burst_msgs_per_s:.0f}",
        "hall_burst_p50_ms": _ms(platform.burst_ms, 50),
        "hall_burst_p99_ms": _ms(platform.burst_ms, 99),
        "baseline_burst_p99_ms": _ms(bare.burst_ms, 99),
        "hall_lost": f"{platform.lost} of {args.clients * (args.spaced + args.burst)} (goal 0)",
        "baseline_lost": str(bare.lost),
        "hall_reconnects": f"{platform.reconnects} # clients closed 4409 (lagged) and resumed",
        "hall_host_p50_ms": f"{_ms(platform.host_ms[:args.spaced], 50)} # {host}, spaced phase",
        "hall_setup_s": f"{setup_s:.1f}",
        "hall_wall_s": f"{time.perf_counter() - wall:.1f}",
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        child = argparse.ArgumentParser(prog=f"hall.py {sys.argv[1]}")
        for flag, kwargs in CHILDREN[sys.argv[1]][1]:
            child.add_argument(flag, **kwargs)
        asyncio.run(CHILDREN[sys.argv[1]][0](child.parse_args(sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="websocket clients following the hall (default 1000)")
    parser.add_argument("--spaced", type=int, default=50, help="read-outs published one by one (default 50)")
    parser.add_argument("--spacing", type=float, default=0.5, help="seconds between spaced read-outs (default 0.5)")
    parser.add_argument("--burst", type=int, default=200,
                        help="read-outs published at once after the spaced ones (default 200; keep it under the "
                             "bus queue of 1000 per client)")
    parser.add_argument("--path", choices=("read-next", "direct"), default="read-next",
                        help="how the platform publishes: the host's read-next over HTTP (default), or the hall "
                             "service's transaction run directly on the database")
    parser.add_argument("--setup-concurrency", type=int, default=8, help="HTTP calls at once while setting up")
    parser.add_argument("--profile", metavar="DIR", help="sample the server with py-spy (raw stacks into DIR)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, data)")
    args = parser.parse_args()
    if args.clients < 1 or args.spaced < 1 or args.burst < 0 or args.spacing < 0:
        parser.error("need --clients >= 1, --spaced >= 1, --burst >= 0 and --spacing >= 0")
    figures = asyncio.run(run(args))
    for name, value in figures.items():
        print(f"{name}: {value}")


_S: dict[str, Any] = {"required": True}
CHILDREN: dict[str, tuple[Any, list[tuple[str, dict[str, Any]]]]] = {
    "clients": (_client_main, [("--base", _S), ("--path", _S), ("--tokens", _S), ("--out", _S),
                               ("--after", {"type": int, "default": 0}), ("--expect", {"type": int, "default": 0}),
                               ("--cookie", _S)]),
    "bare-server": (_bare_server_main, [("--port", {"type": int, "required": True})]),
    "audience": (_audience_main, [("--data-dir", _S), ("--n", {"type": int, "required": True}), ("--run", _S),
                                  ("--out", _S)]),
    "end-window": (_end_window_main, [("--data-dir", _S), ("--tender", _S)]),
    "publish-direct": (_publish_direct_main, [("--data-dir", _S), ("--topic", _S)]),
}


if __name__ == "__main__":
    main()
