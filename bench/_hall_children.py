"""The hall benchmark's publishing side: the bare websockets server, the database helpers and the publishers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._feed import HALL_SCRIPT, raise_fd_limit  # noqa: E402
from bench._harness import BenchError, new_credit_code, new_password, server_database  # noqa: E402

WARMUP_EVERY_S = 2.5  # the hall chat refuses a user's messages closer than 2 s (CHAT_INTERVAL)
SESSION_HOURS = 4
AUDIENCE_SCRYPT_N = 2**10  # the audience never logs in with its password; only its sessions are used


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ============================================================================ the bare baseline server


async def bare_server_main(args: argparse.Namespace) -> None:
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


async def audience_main(args: argparse.Namespace) -> None:
    """`--n` bidder organisations with a user each, and a session for each user; tokens to `--out`."""
    from tenderhall import accounts

    async with server_database(Path(args.data_dir)) as conn:
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
    Path(args.out).write_text(json.dumps(tokens))


async def end_window_main(args: argparse.Namespace) -> None:
    """Move the decryption window's end to now (the tender's minimum is 5 minutes)."""
    async with server_database(Path(args.data_dir)) as conn:
        await conn.execute("UPDATE openings SET window_ends_at = now() - interval '1 second' WHERE tender_id = $1",
                           uuid.UUID(args.tender))


async def publish_direct_main(args: argparse.Namespace) -> None:
    """Publish as the hall service does, on command lines from stdin; answer each with its times."""
    from tenderhall import bus, log
    from tenderhall.platform_key import load_or_create
    from tenderhall.settings import Settings

    settings = Settings.from_env(data_dir=Path(args.data_dir))
    signer = load_or_create(settings.platform_key_path)
    async with server_database(Path(args.data_dir)) as conn:
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


def run_child(*argv: str, timeout: float = 600) -> None:
    proc = subprocess.run([sys.executable, str(HALL_SCRIPT), *argv], capture_output=True, text=True, timeout=timeout,
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
        self.proc = subprocess.Popen([sys.executable, str(HALL_SCRIPT), "publish-direct", "--data-dir", str(data_dir),
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

