"""Shared machinery of the HTTP benchmarks (bench/upload.py, bench/rush.py); not a benchmark itself.

`Harness` starts the real server (bench/_server.py under uvicorn) as a subprocess on a
free loopback port with a fresh data directory under /tmp (embedded PostgreSQL unless
DATABASE_URL is set), waits for /readyz, creates the first admin directly in the
database, and from then on does everything over HTTP as real users would: the admin
creates organisations and users, each user logs in with its own cookie session and CSRF
token, bidders and custodians generate and register their keys, an agent creates and
publishes a tender with custodians 2-of-3, bidders seal with trading.sealing.seal_bid
into files and upload them (tus POST + PATCH), and receipts are checked from the outside
(platform signature, tree head signature, inclusion proof, and the entry fetched from
/api/log/entries/{idx}). On leaving it stops the server (SIGTERM, then wait) and removes
every temporary file, also on error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tenderhall import accounts, credit_code, db, merkle  # noqa: E402
from tenderhall import log as tlog  # noqa: E402
from tenderhall.canonical import canonical_json  # noqa: E402
from tenderhall.keyfile import generate_keys, load_public_key_spki_b64url, public_key_spki_b64url  # noqa: E402
from tenderhall.platform_key import load_public_pem  # noqa: E402
from trading import receipts, sealing, uploads  # noqa: E402
from trading.manifest import SealedBid  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
SERVER_SCRIPT = BENCH_DIR / "_server.py"
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
READ_BYTES = 1 << 20  # body reads of 1 MiB
SUMMARY = {"price": "12345678.90", "duration_days": 365, "quality": "合格"}
TUS = {"Tus-Resumable": uploads.TUS_VERSION}


class BenchError(RuntimeError):
    """The benchmark could not do what it set out to do; the message says what and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def utc_now_z() -> str:
    """client_time of a manifest: YYYY-MM-DDTHH:MM:SSZ."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(epoch: float) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds (a tender deadline)."""
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def new_password() -> str:
    return "Bench-" + secrets.token_urlsafe(12)


def new_credit_code() -> str:
    """A random valid unified social credit code (GB 32100): '91' + region + 9 + check."""
    body = "".join(secrets.choice(credit_code.ALPHABET) for _ in range(9))
    return credit_code.make("91350100" + body)


# ---------------------------------------------------------------------------- the server process


class ServerProcess:
    """bench/_server.py as a subprocess: start, wait for /readyz, sample RSS, stop with SIGTERM."""

    def __init__(self, data_dir: Path, log_path: Path, port: int | None = None) -> None:
        self.data_dir, self.log_path = data_dir, log_path
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    def start(self) -> None:
        env = dict(os.environ, TENDERHALL_DATA_DIR=str(self.data_dir), TENDERHALL_PORT=str(self.port),
                   TENDERHALL_HOST="127.0.0.1", PYTHONUNBUFFERED="1")
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--data-dir", str(self.data_dir), "--port", str(self.port)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(BENCH_DIR.parent))
        give_up = time.monotonic() + READY_TIMEOUT_S
        last = "no answer yet"
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise BenchError(f"the server exited with {self.proc.returncode} before it was ready:\n{self.log_tail()}")
                try:
                    r = client.get("/readyz")
                    if r.status_code == 200:
                        return
                    last = f"/readyz {r.status_code}: {r.text[:200]}"
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() > give_up:
                    raise BenchError(f"the server was not ready after {READY_TIMEOUT_S:.0f} s ({last}):\n{self.log_tail()}")
                time.sleep(0.1)  # poll interval, not a wait for readiness

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        """Resident set size of the server process (uvicorn; PostgreSQL runs in its own processes)."""
        return psutil.Process(self.pid).memory_info().rss

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down, the lifespan stops the embedded database), wait, kill if stuck."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"# server {self.proc.pid} ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread; `peak` is the largest seen."""

    def __init__(self, rss: Callable[[], int], interval: float = 0.05) -> None:
        self._rss, self.interval = rss, interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._rss())
                self.samples += 1
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self._rss())


# ---------------------------------------------------------------------------- users over HTTP


def api_error_code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


class Session:
    """One user's own HTTP client: cookie session plus the CSRF token on state-changing calls."""

    def __init__(self, base_url: str, username: str, password: str, timeout: httpx.Timeout | None = None) -> None:
        self.username, self.password = username, password
        self.http = httpx.AsyncClient(base_url=base_url,
                                      timeout=timeout or httpx.Timeout(120.0, connect=15.0, pool=60.0))
        self.user: dict[str, Any] = {}

    async def login(self) -> "Session":
        r = await self.http.post("/api/session", json={"username": self.username, "password": self.password})
        if r.status_code != 200:
            raise BenchError(f"login of {self.username}: HTTP {r.status_code} {r.text[:300]}")
        body = r.json()
        self.user = body["user"]
        self.http.headers["X-CSRF-Token"] = body["csrf_token"]
        return self

    async def call(self, method: str, path: str, *, expect: Sequence[int] = (200, 201), **kwargs: Any) -> Any:
        r = await self.http.request(method, path, **kwargs)
        if r.status_code not in expect:
            raise BenchError(f"{self.username}: {method} {path}: HTTP {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass
class KeyOwner:
    """A user who holds keys: a bidder (for its organisation) or a custodian."""

    session: Session
    sign: ec.EllipticCurvePrivateKey
    decrypt: ec.EllipticCurvePrivateKey
    user_id: str
    organisation_id: str | None = None
    credit_code: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def register_keys(session: Session) -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    sign, decrypt = generate_keys()
    await session.call("POST", "/api/keys", json={"sign_spki": public_key_spki_b64url(sign),
                                                  "decrypt_spki": public_key_spki_b64url(decrypt)})
    return sign, decrypt


async def gather_bounded(coros: Sequence[Any], limit: int) -> list[Any]:
    """Run coroutines at most `limit` at a time; the first failure cancels the rest and is raised."""
    semaphore = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with semaphore:
            return await coro

    tasks = [asyncio.ensure_future(one(c)) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# ---------------------------------------------------------------------------- the harness


class Harness:
    """A fresh server and data directory for one benchmark run; use as `async with Harness() as h`."""

    def __init__(self, *, keep: bool = False, quiet: bool = False, tmp_root: str = "/tmp") -> None:
        self.keep, self.quiet = keep, quiet
        self.run_id = secrets.token_hex(3)
        self.tmp = Path(tempfile.mkdtemp(prefix="tenderhall-bench-", dir=tmp_root))
        # The embedded PostgreSQL runs as user 'pgserver' when we are root: it must traverse here.
        self.tmp.chmod(0o755)
        self.data_dir = self.tmp / "data"
        self.files = self.tmp / "files"
        self.files.mkdir()
        self.server = ServerProcess(self.data_dir, self.tmp / "server.log")
        self.database_url = os.environ.get("DATABASE_URL") or None
        self.sessions: list[Session] = []
        self.admin: Session | None = None
        self.platform_pem: str = ""
        self.platform_key: Any = None
        self.public = httpx.AsyncClient(base_url=self.server.base_url, timeout=httpx.Timeout(60.0, connect=15.0))

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"# {text}", file=sys.stderr, flush=True)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    async def __aenter__(self) -> "Harness":
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None and not isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
            print(f"# server log (last lines):\n{self.server.log_tail()}", file=sys.stderr)
        await self.close()

    async def start(self) -> None:
        started = time.perf_counter()
        where = "DATABASE_URL" if self.database_url else f"embedded PostgreSQL in {self.data_dir}"
        self.note(f"starting the server on {self.base_url} ({where})")
        await asyncio.to_thread(self.server.start)
        self.note(f"server ready in {time.perf_counter() - started:.1f} s (pid {self.server.pid})")
        key = (await self.public.get("/.well-known/tenderhall-log-key")).json()
        self.platform_pem = key["public_key_pem"]
        self.platform_key = load_public_pem(self.platform_pem)
        self.admin = await self._first_admin()

    async def _first_admin(self) -> Session:
        """The one account no API can make: created straight in the database, as `tenderhall user create` does.

        Done in a short child process (this file's __main__): joining the embedded PostgreSQL
        leaves an exit hook in the joining process, which must run while the data directory exists.
        """
        username, password = f"admin-{self.run_id}", new_password()
        env = dict(os.environ, BENCH_ADMIN_PASSWORD=password)
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, str(Path(__file__).resolve()), "create-admin", str(self.data_dir), username],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise BenchError(f"creating the first admin failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return await self.session(username, password).login()

    def session(self, username: str, password: str, timeout: httpx.Timeout | None = None) -> Session:
        s = Session(self.base_url, username, password, timeout)
        self.sessions.append(s)
        return s

    async def close(self) -> None:
        for s in self.sessions:
            with contextlib.suppress(Exception):
                await s.aclose()
        with contextlib.suppress(Exception):
            await self.public.aclose()
        try:
            await asyncio.to_thread(self.server.stop)
            await asyncio.to_thread(self._check_database_stopped)
        finally:
            if self.keep:
                self.note(f"kept {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def _check_database_stopped(self) -> None:
        """The embedded server stops when its last handle (the app's) is released; make sure it did."""
        if self.database_url:
            return
        pid_file = self.data_dir / "pgdata" / "postmaster.pid"
        give_up = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < give_up:
            try:
                pid = int(pid_file.read_text().split("\n", 1)[0])
            except (OSError, ValueError):
                return
            if not psutil.pid_exists(pid):
                return
            time.sleep(0.2)
        if pid_file.exists():
            print("# the embedded PostgreSQL outlived the server; stopping it through a handle of ours",
                  file=sys.stderr)
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "stop-database", str(self.data_dir)],
                           timeout=120, stdin=subprocess.DEVNULL, check=False)

    # ------------------------------------------------------------------ people

    async def create_organisation(self, kind: str, name: str) -> dict[str, Any]:
        assert self.admin is not None
        for _ in range(5):  # a random credit code could collide, in theory
            r = await self.admin.http.post("/api/organisations", json={
                "credit_code": new_credit_code(), "name": name, "kind": kind})
            if r.status_code == 201:
                return r.json()["organisation"]
            if r.status_code != 409:
                raise BenchError(f"creating organisation {name}: HTTP {r.status_code} {r.text[:300]}")
        raise BenchError(f"creating organisation {name}: credit codes kept colliding")

    async def create_user(self, username: str, roles: list[str], organisation_id: str | None = None,
                          timeout: httpx.Timeout | None = None) -> Session:
        assert self.admin is not None
        password = new_password()
        body: dict[str, Any] = {"username": username, "display_name": username, "password": password, "roles": roles}
        if organisation_id:
            body["organisation_id"] = organisation_id
        await self.admin.call("POST", "/api/users", json=body)
        return self.session(username, password, timeout)

    async def agent(self) -> Session:
        org = await self.create_organisation("agency", f"Bench agency {self.run_id}")
        session = await self.create_user(f"agent-{self.run_id}", ["agent"], org["id"])
        return await session.login()

    async def custodians(self, n: int = 3) -> list[KeyOwner]:
        async def one(i: int) -> KeyOwner:
            session = await (await self.create_user(f"custodian-{self.run_id}-{i}", ["custodian"])).login()
            sign, decrypt = await register_keys(session)
            return KeyOwner(session, sign, decrypt, session.user["id"])
        return await gather_bounded([one(i) for i in range(n)], 3)

    async def bidders(self, n: int, concurrency: int = 8, timeout: httpx.Timeout | None = None) -> list[KeyOwner]:
        """n bidder organisations, one bidder user each, logged in, with registered keys."""
        done = 0

        async def one(i: int) -> KeyOwner:
            nonlocal done
            org = await self.create_organisation("bidder", f"Bench bidder {self.run_id} #{i}")
            session = await self.create_user(f"bidder-{self.run_id}-{i:04d}", ["bidder"], org["id"], timeout)
            await session.login()
            sign, decrypt = await register_keys(session)
            done += 1
            if done % 50 == 0:
                self.note(f"{done}/{n} bidders ready")
            return KeyOwner(session, sign, decrypt, session.user["id"], org["id"], org["credit_code"])
        return await gather_bounded([one(i) for i in range(n)], concurrency)

    async def publish_tender(self, agent: Session, custodians: Sequence[KeyOwner], deadline: float,
                             threshold: int = 2) -> dict[str, Any]:
        """Create and publish a one-lot tender (lot L1) closing at epoch `deadline`; return GET /api/tenders/{id}."""
        draft = await agent.call("POST", "/api/tenders", json={
            "code": f"BENCH-{self.run_id}-{secrets.token_hex(2)}", "name": "Bench tender", "tenderer": "Bench tenderer",
            "lots": [{"code": "L1", "name": "Lot 1", "budget": "100000000.00"}], "budget": "100000000.00",
            "evaluation_method": "lowest_evaluated_price", "deadline": iso_ms(deadline), "decryption_minutes": 30,
            "decryption_rule": "custodians", "custodians": [c.user_id for c in custodians], "threshold": threshold})
        tender_id = draft["tender"]["id"]
        await agent.call("POST", f"/api/tenders/{tender_id}/publish")
        return (await agent.call("GET", f"/api/tenders/{tender_id}"))["tender"]

    # ------------------------------------------------------------------ bids


def custodian_keys(tender: dict[str, Any]) -> list[ec.EllipticCurvePublicKey]:
    """The tender's pinned custodian decryption keys, in share order, as published by GET /api/tenders/{id}."""
    ordered = sorted(tender["custodians"], key=lambda c: c["position"])
    return [load_public_key_spki_b64url(c["decrypt_spki"]) for c in ordered]


def seal_to_file(bidder: KeyOwner, tender: dict[str, Any], files: Sequence[tuple[str, Any]], out_path: Path,
                 lot: str = "L1") -> SealedBid:
    """Seal a bid for `bidder` into `out_path` (streams are read twice, memory flat).

    The file is fsynced, so that writing it back does not compete with the runs that read it.
    """
    assert bidder.credit_code is not None
    with out_path.open("wb") as out:
        sealed = sealing.seal_bid(
            summary=SUMMARY, files=files, tender=tender["id"], lot=lot, organisation=bidder.credit_code,
            upload_id=str(uuid.uuid4()), client_time=utc_now_z(), signing_key=bidder.sign,
            bidder_public_key=bidder.decrypt.public_key(), custodian_keys=custodian_keys(tender),
            threshold=tender["threshold"], out=out)
        out.flush()
        os.fsync(out.fileno())
    return sealed


async def file_body(path: Path, marks: dict[str, float] | None = None, read_bytes: int = READ_BYTES) -> AsyncIterator[bytes]:
    """The file's bytes in 1 MiB reads; marks["last_byte_sent"] = time.time() once the last one went out.

    httpx asks for the next block only after it has written the previous one to the socket,
    so the code after the last yield runs when the last byte has been handed to the kernel.
    """
    with path.open("rb") as f:
        while True:
            block = f.read(read_bytes)
            if not block:
                break
            yield block
    if marks is not None:
        marks["last_byte_sent"] = time.time()


def patch_headers(length: int) -> dict[str, str]:
    return {**TUS, "Content-Type": uploads.OFFSET_CONTENT_TYPE, "Upload-Offset": "0", "Content-Length": str(length)}


async def verify_receipt(public: httpx.AsyncClient, platform_key: Any, receipt: Any, *,
                         sealed: SealedBid | None = None, bidder: KeyOwner | None = None,
                         bid_id: str | None = None) -> str | None:
    """Check a receipt from the outside; None when it holds, else the first failed check.

    Fetches the entry at receipt["log_index"] from /api/log/entries/{idx}; checks its leaf
    hash, that it is byte for byte the entry the receipt carries, the platform's Ed25519
    signature over the receipt, the tree head signature and the RFC 9162 inclusion proof
    (trading.receipts.verify_receipt with the fetched bytes, and tenderhall.log.verify_receipt_proof
    once more on its own), and that the receipt names this bid, ciphertext and organisation.
    """
    try:
        index = receipt["log_index"]
        r = await public.get(f"/api/log/entries/{index}")
        if r.status_code != 200:
            return f"log entry {index}: HTTP {r.status_code}"
        fetched = r.json()
        entry_bytes = fetched["canonical"].encode("utf-8")
        if fetched["leaf_hash"] != merkle.leaf_hash(entry_bytes).hex():
            return f"log entry {index}: leaf hash does not match its bytes"
        if entry_bytes != canonical_json(receipt["log_entry"]):
            return f"log entry {index} differs from the entry the receipt carries"
        receipts.verify_receipt(receipt, platform_key, entry_bytes=entry_bytes)
        if not tlog.verify_receipt_proof(entry_bytes, index, receipt["tree_head"], receipt["inclusion_proof"],
                                         platform_key):
            return "tree head signature or inclusion proof"
    except receipts.ReceiptInvalid as exc:
        return f"receipt: {exc}"
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed receipt or entry: {type(exc).__name__}: {exc}"
    except httpx.HTTPError as exc:
        return f"fetching the log entry: {type(exc).__name__}: {exc}"
    if sealed is not None:
        m = sealed.manifest
        if (receipt["ciphertext_sha256"], receipt["size"], receipt["upload_id"], receipt["tender"]) != (
                m["ciphertext"]["sha256"], m["ciphertext"]["size"], m["upload_id"], m["tender"]):
            return "the receipt names another ciphertext, upload or tender"
        if receipt["manifest_sha256"] != receipts.manifest_digest(m):
            return "the receipt names another manifest"
    if bidder is not None and receipt["organisation"] != bidder.credit_code:
        return "the receipt names another organisation"
    if bid_id is not None and receipt["bid"] != bid_id:
        return "the receipt names another bid"
    return None


# ---------------------------------------------------------------------------- first admin (child process)


@contextlib.asynccontextmanager
async def server_database(data_dir: Path) -> AsyncIterator[Any]:
    """A connection to the bench server's database (DATABASE_URL, else its embedded instance), from a child process."""
    embedded = None
    dsn = os.environ.get("DATABASE_URL") or None
    if dsn is None:
        from tenderhall.embedded_pg import EmbeddedPostgres

        embedded = EmbeddedPostgres(data_dir)  # joins the server's running instance
        dsn = await asyncio.to_thread(embedded.start)
    try:
        conn = await db.connect(dsn)
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        if embedded is not None:
            # Releases only our handle: the server holds its own, so PostgreSQL keeps running.
            embedded.stop()


async def _create_admin(data_dir: Path, username: str, password: str) -> None:
    async with server_database(data_dir) as conn:
        await accounts.create_user(conn, username=username, display_name="Bench admin", password=password,
                                   roles=["admin"])


def _stop_database(data_dir: Path) -> None:
    """Join the embedded server with a fresh handle and release it: the last handle stops it."""
    from tenderhall.embedded_pg import EmbeddedPostgres

    embedded = EmbeddedPostgres(data_dir)
    embedded.start()
    embedded.stop()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "create-admin":
        asyncio.run(_create_admin(Path(sys.argv[2]), sys.argv[3], os.environ["BENCH_ADMIN_PASSWORD"]))
    elif len(sys.argv) == 3 and sys.argv[1] == "stop-database":
        _stop_database(Path(sys.argv[2]))
    else:
        sys.exit("usage: BENCH_ADMIN_PASSWORD=... python bench/_harness.py create-admin DATA_DIR USERNAME\n"
                 "       python bench/_harness.py stop-database DATA_DIR")
