"""Setting up an opening hall for bench/opening.py: sealed bids uploaded through the API, the hall walked to the custodian step.

Everything a bidder, custodian or host does goes over HTTP against the real server
(bench/_harness.py). The two exceptions are the clock moves the integration tests make
too (tests/hall_world.py pass_deadline, end_window): the tender's deadline and the
decryption window's end are set one second into the past, directly in the database,
from a short child process (this file's __main__), because joining the embedded
PostgreSQL leaves an exit hook in the joining process. Sealing runs in worker
processes: pure CPU, and 500 bids of 4 MiB are 2 GB of AES-GCM and SHA-256.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from bench._harness import (  # noqa: E402
    TUS, BenchError, Harness, KeyOwner, Session, file_body, gather_bounded, iso_ms, patch_headers, server_database,
    utc_now_z,
)
from tenderhall.canonical import b64url  # noqa: E402
from tenderhall.keyfile import load_public_key_spki_b64url  # noqa: E402
from trading import key_wrap, sealing  # noqa: E402
from trading.manifest import SealedBid, validate_manifest  # noqa: E402

CHILD_TIMEOUT_S = 120
# The clock moves of tests/hall_world.py, on the database's clock (the one the hall reads).
PAST_SQL = {
    "deadline": "UPDATE tenders SET deadline = clock_timestamp() - interval '1 second' WHERE id = $1",
    "window": "UPDATE openings SET window_ends_at = clock_timestamp() - interval '1 second' WHERE tender_id = $1",
}


def price_of(index: int) -> str:
    """Each bid's opening price: distinct, so the read-out can be checked bid by bid."""
    return f"{10_000_000 + index * 1_000}.00"


# ---------------------------------------------------------------------------- sealing (worker processes)


@dataclass(frozen=True)
class SealJob:
    """One bid to seal, in picklable form: keys as PKCS#8 / SPKI DER."""

    index: int
    out_path: str
    plain_bytes: int
    tender_id: str
    threshold: int
    custodian_spki: tuple[str, ...]  # b64url SPKI, in share order
    credit_code: str
    sign_pkcs8: bytes
    decrypt_pkcs8: bytes


@dataclass(frozen=True)
class Sealed:
    index: int
    path: Path
    bid: SealedBid
    content_key: bytes  # unwrapped from the bidder wrap: what the baseline decrypts with
    size: int


def _private(der: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def seal_one(job: SealJob) -> Sealed:
    """Seal `plain_bytes` of random plaintext into job.out_path (fsynced); runs in a worker process."""
    sign, decrypt = _private(job.sign_pkcs8), _private(job.decrypt_pkcs8)
    with open(job.out_path, "wb") as out:
        bid = sealing.seal_bid(
            summary={"price": price_of(job.index), "duration_days": 365, "quality": "合格"},
            files=[("technical.bin", os.urandom(job.plain_bytes))], tender=job.tender_id, lot="L1",
            organisation=job.credit_code, upload_id=str(uuid.uuid4()), client_time=utc_now_z(), signing_key=sign,
            bidder_public_key=decrypt.public_key(),
            custodian_keys=[load_public_key_spki_b64url(s) for s in job.custodian_spki], threshold=job.threshold,
            out=out)
        out.flush()
        os.fsync(out.fileno())
    key = sealing.content_key_from_bidder_wrap(validate_manifest(bid.manifest), decrypt)
    return Sealed(job.index, Path(job.out_path), bid, key, bid.manifest["ciphertext"]["size"])


async def seal_all(h: Harness, bidders: Sequence[KeyOwner], tender: dict[str, Any], plain_bytes: int,
                   workers: int) -> list[Sealed]:
    """Seal one bid per bidder in `workers` processes (spawned: this process runs an event loop and threads)."""
    ordered = sorted(tender["custodians"], key=lambda c: c["position"])
    jobs = [SealJob(i, str(h.files / f"bid-{i:04d}.bin"), plain_bytes, tender["id"], tender["threshold"],
                    tuple(c["decrypt_spki"] for c in ordered), b.credit_code or "", _pkcs8(b.sign), _pkcs8(b.decrypt))
            for i, b in enumerate(bidders)]
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(await asyncio.gather(*(loop.run_in_executor(pool, seal_one, j) for j in jobs)))


# ---------------------------------------------------------------------------- tender, uploads, hall walk


async def publish_tender(h: Harness, agent: Session, custodians: Sequence[KeyOwner], bids: int) -> dict[str, Any]:
    """A one-lot tender, custodians 2-of-3, deadline two hours ahead with the hall already open (24 h before)."""
    draft = await agent.call("POST", "/api/tenders", json={
        "code": f"BENCH-OPEN-{h.run_id}-{secrets.token_hex(2)}", "name": "Bench opening", "tenderer": "Bench tenderer",
        "lots": [{"code": "L1", "name": "Lot 1", "budget": "100000000.00"}], "budget": "100000000.00",
        "evaluation_method": "lowest_evaluated_price", "deadline": iso_ms(time.time() + 2 * 3600),
        "decryption_minutes": 5, "decryption_rule": "custodians", "custodians": [c.user_id for c in custodians],
        "threshold": 2, "min_bidders": min(3, bids), "hall_opens_minutes": 1440})
    tender_id = draft["tender"]["id"]
    await agent.call("POST", f"/api/tenders/{tender_id}/publish")
    return (await agent.call("GET", f"/api/tenders/{tender_id}"))["tender"]


async def upload_all(bidders: Sequence[KeyOwner], sealed: Sequence[Sealed], tender_id: str,
                     concurrency: int) -> list[dict[str, Any]]:
    """Each bidder submits its bid through the real API (tus POST, one streaming PATCH); returns the PATCH answers."""

    async def one(bidder: KeyOwner, s: Sealed) -> dict[str, Any]:
        created = await bidder.session.call("POST", f"/api/tenders/{tender_id}/lots/L1/uploads",
                                            json=s.bid.submission(), headers=TUS)
        done = await bidder.session.call("PATCH", f"/api/uploads/{created['upload_id']}",
                                         content=file_body(s.path), headers=patch_headers(s.size))
        if not done.get("complete") or not done.get("bid"):
            raise BenchError(f"bid {s.index}: the upload did not complete: {done}")
        s.path.unlink()  # the server has its own copy now; the baseline reads that one
        return done

    return await gather_bounded([one(b, s) for b, s in zip(bidders, sealed)], concurrency)


async def move_to_past(h: Harness, what: str, tender_id: str) -> None:
    """Set the tender's deadline or its opening's window end one second into the past (database clock)."""
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(Path(__file__).resolve()), "past", str(h.data_dir), tender_id, what],
        capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BenchError(f"moving the {what} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


async def walk_to_custodians(h: Harness, agent: Session, tender_id: str, orgs: Sequence[str],
                             concurrency: int) -> None:
    """The host's acts up to the custodian step, each over the API; no bidder decrypts."""
    url = f"/api/tenders/{tender_id}/hall"
    await agent.call("POST", f"{url}/start-sign-in", json={})
    await move_to_past(h, "deadline", tender_id)
    closed = await agent.call("POST", f"{url}/close-submissions", json={})
    if closed.get("bids") != len(orgs):
        raise BenchError(f"close-submissions froze {closed.get('bids')} bids, expected {len(orgs)}")
    await gather_bounded([agent.call("POST", f"{url}/deposits", json={"organisation_id": org, "deposit": "confirmed"})
                          for org in orgs], concurrency)
    published = await agent.call("POST", f"{url}/publish-bidders", json={})
    if published.get("step") != "decryption":
        raise BenchError(f"publish-bidders went to {published}, not decryption")
    await move_to_past(h, "window", tender_id)
    window = await agent.call("POST", f"{url}/close-window", json={})
    if window.get("step") != "custodians":
        raise BenchError(f"close-window went to {window}, not custodians")


async def custodian_shares(custodian: KeyOwner, tender_id: str, expected: int) -> list[dict[str, str]]:
    """What the custodian's client does before releasing: read its wraps from the hall and decrypt them."""
    hall = (await custodian.session.call("GET", f"/api/tenders/{tender_id}/hall"))["hall"]
    shares = [{"bid_id": b["bid_id"], "share": b64url(key_wrap.unwrap_share(b["share_enc"], custodian.decrypt))}
              for b in hall["bids"] if b["share_enc"]]
    if len(shares) != expected:
        raise BenchError(f"custodian {custodian.session.username} sees {len(shares)} wraps, expected {expected}")
    return shares


# ---------------------------------------------------------------------------- clock moves (child process)


async def _past(data_dir: Path, tender_id: str, what: str) -> None:
    async with server_database(data_dir) as conn:
        status = await conn.execute(PAST_SQL[what], uuid.UUID(tender_id))
    if status != "UPDATE 1":
        raise SystemExit(f"moving the {what} of tender {tender_id}: {status}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "past" and sys.argv[4] in PAST_SQL:
        asyncio.run(_past(Path(sys.argv[2]), sys.argv[3], sys.argv[4]))
    else:
        sys.exit("usage: python bench/_hall_setup.py past DATA_DIR TENDER_ID deadline|window")
