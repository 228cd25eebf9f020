"""Decryption in the hall: bidders' own keys inside the window, then custodians' shares, then the record of what opened.

Opening a bid (minutes of AES-GCM for a large one) runs on worker threads between short
transactions and never holds a lock; a second attempt racing it loses cleanly when the
bid is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import asyncpg

from tenderhall import bus, log
from tenderhall.accounts import CurrentUser
from tenderhall.canonical import canonical_json
from trading import hall_store as hs
from trading import uploads
from trading.hall import (
    SHARE_SIZE, HallRefused, InvalidInput, b64url_bytes, check_window_closed, check_window_open, require_step,
    share_subsets, step_after_window, uuid_field,
)
from trading.hall_acts import (
    log_and_announce, record_failed_attempt, host_act, opening_act, require_bidder_org, published_tender,
    viewer_of,
)
from trading.manifest import Manifest, validate_manifest
from trading.seal_errors import KeyCommitmentMismatch, SealError, WrapInvalid
from trading.sealing import check_content_key, content_key_from_shares, open_bid
from trading.service import Deps, server_now, topic
from trading.tenders import NotFound


# ---------------------------------------------------------------------------- decryption


@dataclass(frozen=True)
class _Verified:
    """A bid whose stored ciphertext opened and verified under `key`, waiting to be recorded."""

    bid: Mapping[str, Any]
    key: bytes
    summary: dict[str, Any]
    files: list[dict[str, Any]]
    by: str
    from_status: str


class _OpenFailed(Exception):
    """The bid did not open; the message is recorded against it."""


def _open_stored(path: Path, bid: Mapping[str, Any], manifest: Manifest, key: bytes) -> tuple[dict[str, Any], list]:
    """Check the receipt, then decrypt and authenticate every chunk, writing no plaintext (_OpenFailed).

    The files' header digests are checked when the evaluation extracts them (docs/sealing.md §7).
    """
    # The stored ciphertext must be exactly what the receipt acknowledged: its digest is checked
    # against the manifest by open_bid, and the manifest's against the receipt's here.
    if not (bid["ciphertext_sha256"] == manifest.ciphertext.sha256 == bid["receipt"].get("ciphertext_sha256")):
        raise _OpenFailed("the stored ciphertext does not match the receipt")
    try:
        with path.open("rb") as stream:
            opened = open_bid(stream, key, manifest, None, check_file_digests=False)
    except (SealError, OSError) as exc:
        raise _OpenFailed(f"the stored ciphertext does not open: {exc}") from None
    return dict(opened.summary), [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in opened.files]


def _open_with_shares(path: Path, bid: Mapping[str, Any], k: int) -> tuple[bytes, dict[str, Any], list]:
    """Combine k of the released shares into the committed key and open the bid with it (_OpenFailed)."""
    manifest = validate_manifest(bid["manifest"])
    for subset in share_subsets([bytes(s) for s in bid["shares"]], k):
        try:
            key = content_key_from_shares(manifest, list(subset))
        except (KeyCommitmentMismatch, WrapInvalid, SealError, ValueError):
            continue
        return (key, *_open_stored(path, bid, manifest, key))
    raise _OpenFailed("the released shares do not combine to the bid's key")


async def _record_opened(deps: Deps, tender_id: uuid.UUID, batch: list[_Verified]) -> set[uuid.UUID]:
    """Record verified bids as opened in one transaction; the ids recorded (another attempt may have won)."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            row = await hs.opening(conn, tender_id, for_update=True)
            recorded = await hs.mark_opened(conn, now, [{
                "bid_id": v.bid["bid_id"], "by": v.by, "summary": v.summary, "key": v.key, "files": v.files,
                "from_status": v.from_status} for v in batch])
            done = [v for v in batch if v.bid["bid_id"] in recorded]
            if not done:
                return recorded
            await log.append_entries(conn, deps.signer, [("opening.bid_opened", {
                "tender": str(tender_id), "bid": str(v.bid["bid_id"]), "lot": v.bid["lot_code"], "by": v.by,
                "ciphertext_sha256": v.bid["ciphertext_sha256"],
                "summary_sha256": hashlib.sha256(canonical_json(v.summary)).hexdigest(), "declared_files": v.files})
                for v in done])
            await bus.emit(conn, topic(tender_id), "hall.bids_opened", {"bids": [str(v.bid["bid_id"]) for v in done]})
            if row["step"] == "custodians" and await hs.count_status(conn, tender_id, "awaiting_custodians") == 0:
                await hs.set_step(conn, tender_id, "reading", now)
                await log_and_announce(conn, deps, tender_id, "step", {"step": "reading"}, {"step": "reading"})
    return recorded


async def decrypt(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A bidder sends its bid's content key; the server opens and verifies the stored ciphertext."""
    if not isinstance(data, dict):
        raise InvalidInput('send {"bid_id": "...", "content_key": "..."}')
    bid_id = uuid_field(data, "bid_id")
    key = b64url_bytes(data.get("content_key"), 32, "content_key")
    async with opening_act(deps, tender_id) as (conn, tender, row, now):
        require_step(row["step"], ("decryption",), "decrypt")
        check_window_open(row["window_ends_at"], now)
        org = require_bidder_org(await viewer_of(conn, tender, user, True), user)
        bid = await hs.bid(conn, bid_id)
        if bid is None or bid["tender_id"] != tender_id:
            raise NotFound("no bid with this id is in this opening", code="bid_not_found")
        if bid["organisation_id"] != org:
            raise HallRefused("this bid belongs to another bidder", code="not_your_bid", status=403)
        if bid["status"] != "listed":
            raise HallRefused(f"this bid is {bid['status']}; there is nothing to decrypt", code="already_opened")
    manifest = validate_manifest(bid["manifest"])
    try:
        check_content_key(manifest, key)
    except KeyCommitmentMismatch:
        await record_failed_attempt(deps, tender_id, bid_id, "the key does not open this bid")
        raise HallRefused("this key is not the bid's content key (its commitment does not match); "
                          "check the key file and retry", code="key_mismatch", status=422) from None
    # An attempt that began inside the window is recorded even if its verification ends after it.
    path = uploads.bid_path(deps.settings.storage_dir, tender_id, bid["upload_id"])
    try:
        summary, files = await asyncio.to_thread(_open_stored, path, bid, manifest, key)
    except _OpenFailed as exc:
        await record_failed_attempt(deps, tender_id, bid_id, str(exc))
        raise HallRefused(f"{exc}; nothing was opened", code="ciphertext_invalid", status=422) from None
    verified = _Verified(bid, key, summary, files, "bidder", "listed")
    if bid_id not in await _record_opened(deps, tender_id, [verified]):
        raise HallRefused("this bid was opened by another attempt meanwhile", code="already_opened")
    return {"bid_id": str(bid_id), "status": "opened"}


async def close_window(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """After the window: bids not decrypted go to the custodians, or become void, per the tender's rule."""
    async with host_act(deps, user, tender_id, ("decryption",), "close the decryption window") as (conn, tender, row, now):
        check_window_closed(row["window_ends_at"], now)
        pending = await hs.count_status(conn, tender_id, "listed")
        to = step_after_window(tender["decryption_rule"], pending)
        if to == "custodians":
            moved = await hs.await_custodians(conn, tender_id)
            body = {"step": to, "to_custodians": [str(b) for b in moved]}
        else:
            voided = await hs.void_rest(conn, tender_id, ["listed"], "not decrypted within the window")
            body = {"step": to, "void": [str(b) for b in voided]}
        await hs.set_step(conn, tender_id, to, now)
        await log_and_announce(conn, deps, tender_id, "step", body, {"step": to})
    return {"step": to}


async def release_shares(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A custodian releases its decrypted shares of the bids waiting for custodians; k of them open a bid."""
    items = data.get("shares") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items or len(items) > 10000:
        raise InvalidInput('send {"shares": [{"bid_id": "...", "share": "..."}, ...]} (1 to 10000 items)')
    parsed: dict[uuid.UUID, bytes] = {}
    for item in items:
        if not isinstance(item, dict):
            raise InvalidInput("each share is an object with bid_id and share")
        bid_id = uuid_field(item, "bid_id")
        if bid_id in parsed:
            raise InvalidInput(f"bid {bid_id} is named twice")
        parsed[bid_id] = b64url_bytes(item.get("share"), SHARE_SIZE, f"the share for bid {bid_id}")
    async with opening_act(deps, tender_id) as (conn, tender, row, now):
        require_step(row["step"], ("custodians",), "release shares")
        viewer = await viewer_of(conn, tender, user, True)
        if viewer.custodian_position is None:
            raise HallRefused("only this tender's key custodians may release shares", code="not_custodian",
                              status=403)
        statuses = await hs.bid_statuses(conn, list(parsed))
        for bid_id in parsed:
            bid = statuses.get(bid_id)
            if bid is None or bid["tender_id"] != tender_id:
                raise NotFound(f"bid {bid_id} is not in this opening", code="bid_not_found")
            if bid["status"] != "awaiting_custodians":
                raise HallRefused(f"bid {bid_id} is {bid['status']}, not waiting for custodians",
                                  code="bid_not_waiting")
        already = await hs.released_by(conn, list(parsed), viewer.custodian_position)
        if already:
            raise HallRefused(f"you already released your share of bid {already[0]}",
                              code="share_already_released")
        await hs.insert_shares(conn, parsed, viewer.custodian_position, user.id, now)
        await log_and_announce(conn, deps, tender_id, "shares_released",
                   {"position": viewer.custodian_position, "bids": sorted(str(b) for b in parsed)},
                   {"position": viewer.custodian_position, "count": len(parsed)})
    opened = await open_ready_bids(deps, tender_id)
    return {"released": len(parsed), "opened": opened}


RECORD_BATCH = 200
RECORD_GATHER_SECONDS = 0.2


async def open_ready_bids(deps: Deps, tender_id: uuid.UUID) -> int:
    """Combine shares and open every waiting bid that has k of them; safe to repeat (a restart resumes here).

    What the bids need is read in one query; combining and verifying run on as many worker
    threads as there are CPUs, while one recorder writes whatever has finished in batches, so
    the database work overlaps the decryption and costs one transaction per batch, not per bid.
    """
    async with deps.pool.acquire() as conn:
        tender = await published_tender(conn, tender_id)
        k = tender["threshold"]
        ready = await hs.bids_with_shares(conn, await hs.ready_for_custodians(conn, tender_id, k))
    if not ready:
        return 0
    limit = asyncio.Semaphore(max(1, os.cpu_count() or 1))
    finished: asyncio.Queue[_Verified | None] = asyncio.Queue()

    async def open_one(bid: asyncpg.Record) -> None:
        result = None
        try:
            path = uploads.bid_path(deps.settings.storage_dir, tender_id, bid["upload_id"])
            async with limit:
                key, summary, files = await asyncio.to_thread(_open_with_shares, path, bid, k)
            result = _Verified(bid, key, summary, files, "custodians", "awaiting_custodians")
        except _OpenFailed as exc:
            await record_failed_attempt(deps, tender_id, bid["bid_id"], str(exc))
        finally:
            finished.put_nowait(result)

    workers = [asyncio.create_task(open_one(b)) for b in ready]
    recorded = 0
    try:
        outstanding = len(ready)
        loop = asyncio.get_running_loop()
        while outstanding:
            batch = [await finished.get()]
            # Gather what finishes within a short while: a transaction per handful of bids would
            # spend the CPU the decryption needs.
            until = loop.time() + RECORD_GATHER_SECONDS
            while len(batch) < min(RECORD_BATCH, outstanding):
                try:
                    batch.append(await asyncio.wait_for(finished.get(), max(0.0, until - loop.time())))
                except TimeoutError:
                    break
            outstanding -= len(batch)
            verified = [v for v in batch if v is not None]
            if verified:
                recorded += len(await _record_opened(deps, tender_id, verified))
    finally:
        results = await asyncio.gather(*workers, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return recorded


async def finish_custodians(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """The host ends the custodian step: bids still not opened become void, with the reason."""
    await open_ready_bids(deps, tender_id)
    async with host_act(deps, user, tender_id, ("custodians",), "finish the custodian step") as (conn, tender, row, now):
        voided = await hs.void_rest(conn, tender_id, ["awaiting_custodians"], "not opened by the custodians")
        await hs.set_step(conn, tender_id, "reading", now)
        await log_and_announce(conn, deps, tender_id, "step", {"step": "reading", "void": [str(b) for b in voided]},
                   {"step": "reading"})
    return {"step": "reading", "void": len(voided)}


async def open_pending_everywhere(deps: Deps) -> int:
    """Periodic job: finish bids whose shares arrived but whose opening was cut off (e.g. by a restart)."""
    async with deps.pool.acquire() as conn:
        tenders = await hs.openings_at_custodians(conn)
    return sum([await open_ready_bids(deps, t) for t in tenders])
