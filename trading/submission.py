"""Trading use cases for sealed bids: upload (tus creation and PATCH), receipt, list, withdraw, confirm.

Like trading.service (whose Deps, server clock, topics and constraint mapping they share),
each use case runs in one transaction with its log entry and events. Nothing here ever
holds a key able to open a bid: the server checks the signed manifest, stores ciphertext
and issues receipts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tenderhall import accounts, bus, log
from tenderhall.accounts import CurrentUser
from trading import receipts, store, uploads
from trading.manifest import validate_manifest, verify_raw_p256, verify_signature
from trading.seal_errors import ManifestInvalid, SignatureInvalid
from trading.service import Deps, constraint_error, get_tender, server_now, topic
from trading.tenders import (
    ExpectedSubmission, NotFound, StateConflict, SubmissionRefused, TooLarge, TradingError, check_before_deadline,
    confirmation_message, iso, match_manifest, needs_confirmation,
)

# A PATCH's claim on its upload; renewed every third of it while the body streams in.
CLAIM_LEASE = timedelta(seconds=60)


def _public_key(spki: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_der_public_key(bytes(spki))
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


async def _published_tender(conn: asyncpg.Connection, tender_id: uuid.UUID, lock: str | None = None) -> asyncpg.Record:
    row = await store.tender(conn, tender_id, lock)
    if row is None or row["status"] == "draft":
        raise NotFound("no such published tender", code="tender_not_found")
    if row["status"] != "published":
        raise StateConflict("this tender is not open for bids", code="tender_closed")
    return row


async def create_upload(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, lot: str, body: Any) -> dict[str, Any]:
    """tus creation: check the signed manifest against the tender, the lot and the bidder; record the upload.

    Every refusal writes nothing: tender_not_found/lot_not_found 404, deadline_passed 409,
    no_keys 422, invalid_manifest 422, wrong_* 422, client_clock_skew 422, bid_too_large 413,
    bad_signature 422, replayed_manifest 409, duplicate_upload 409, upload_in_progress 409 (a PATCH of
    another upload of this lot by the organisation is running now: at most one receives at a time).
    An earlier unfinished upload that no PATCH holds is replaced (failed as 'replaced', bytes deleted).
    """
    if user.organisation_id is None:
        raise SubmissionRefused("you act for no organisation", code="no_organisation")
    if not isinstance(body, dict) or not isinstance(body.get("manifest"), dict) or not isinstance(body.get("signature"), str):
        raise SubmissionRefused('send {"manifest": {...}, "signature": "..."}', code="invalid_body")
    raw_manifest, signature = body["manifest"], body["signature"]
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            tender = await _published_tender(conn, tender_id, "share")
            lots = {l["code"] for l in await store.lots(conn, tender_id)}
            if lot not in lots:
                raise NotFound(f"the tender has no lot {lot!r}", code="lot_not_found")
            now = await server_now(conn)
            check_before_deadline(tender["deadline"], now)
            keys = await store.org_active_keys(conn, user.organisation_id)
            if keys is None or keys["id"] is None:
                raise SubmissionRefused("your organisation has no active key set; generate and register keys first",
                                        code="no_keys")
            try:
                manifest = validate_manifest(raw_manifest)
            except ManifestInvalid as exc:
                raise SubmissionRefused(str(exc), code="invalid_manifest") from None
            custodians = await store.custodians(conn, tender_id)
            expected = ExpectedSubmission(
                tender=str(tender_id), lot=lot, organisation=keys["credit_code"], signing_key=keys["sign_key_id"],
                bidder_key=keys["decrypt_key_id"], custodian_keys=tuple(c["decrypt_key_id"] for c in custodians),
                threshold=tender["threshold"])
            match_manifest(manifest, expected, now, deps.settings.client_clock_skew_seconds)
            if manifest.ciphertext.size > deps.settings.max_bid_bytes:
                raise TooLarge(f"the bid is {manifest.ciphertext.size} bytes; at most {deps.settings.max_bid_bytes} "
                               "are accepted", code="bid_too_large")
            try:
                verify_signature(raw_manifest, signature, _public_key(keys["sign_spki"]))
            except SignatureInvalid as exc:
                raise SubmissionRefused(str(exc), code="bad_signature") from None
            except ManifestInvalid as exc:
                raise SubmissionRefused(str(exc), code="invalid_manifest") from None
            digest = receipts.manifest_digest(raw_manifest)
            upload_id = uuid.UUID(manifest.upload_id)
            if await store.upload_by_digest(conn, digest) is not None:
                raise StateConflict("this manifest was already submitted (replay)", code="replayed_manifest")
            if await store.upload_exists(conn, upload_id):
                raise StateConflict("an upload with this upload_id already exists", code="duplicate_upload")
            # The latest submission counts: an unfinished upload nobody is sending now (a closed
            # tab, a lost machine) gives way, so the bidder is never locked out of the lot.
            replaced = await store.replace_idle_receiving(conn, tender_id, lot, user.organisation_id)
            receiving = await store.receiving_upload(conn, tender_id, lot, user.organisation_id)
            if receiving is not None:
                raise _upload_in_progress(receiving)
            try:
                # A savepoint: should another upload of this lot be created at the same moment, the
                # one that won can still be read here and named.
                async with conn.transaction():
                    await store.insert_upload(
                        conn, upload_id=upload_id, tender_id=tender_id, lot=lot, organisation_id=user.organisation_id,
                        user_id=user.id, manifest=raw_manifest, manifest_sha256=digest, signature=signature,
                        key_set_id=keys["id"], length=manifest.ciphertext.size)
            except asyncpg.IntegrityConstraintViolationError as exc:
                if getattr(exc, "constraint_name", None) == ONE_RECEIVING_KEY:
                    receiving = await store.receiving_upload(conn, tender_id, lot, user.organisation_id)
                    if receiving == upload_id:
                        raise StateConflict("this manifest was already submitted (replay)",
                                            code="replayed_manifest") from None
                    raise _upload_in_progress(receiving) from None
                raise constraint_error(exc) from None
    for old in replaced:
        uploads.remove_quietly(uploads.incoming_path(deps.settings.storage_dir, old))
        deps.registry.forget(old)
    return {"upload_id": str(upload_id), "offset": 0, "length": manifest.ciphertext.size,
            "manifest_sha256": digest, "replaced": [str(old) for old in replaced]}


# The partial unique index of migration 0005: one receiving upload per tender, lot and organisation.
ONE_RECEIVING_KEY = "uploads_one_receiving_key"


def _upload_in_progress(receiving: uuid.UUID | None) -> StateConflict:
    which = f"upload {receiving}" if receiving is not None else "another upload"
    return StateConflict(
        f"your organisation's {which} for this lot is being sent right now; resume it (HEAD /api/uploads/"
        f"{receiving or '{id}'} gives its offset) or start again once that transfer stops",
        code="upload_in_progress")


async def _own_upload(conn: asyncpg.Connection, user: CurrentUser, upload_id: uuid.UUID,
                      for_update: bool = False) -> asyncpg.Record:
    row = await store.upload(conn, upload_id, for_update=for_update)
    if row is None or row["organisation_id"] != user.organisation_id:
        raise NotFound("no such upload among your organisation's", code="upload_not_found")
    return row


async def upload_status(deps: Deps, user: CurrentUser, upload_id: uuid.UUID) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        row = await _own_upload(conn, user, upload_id)
        bid = await store.bid_by_upload(conn, upload_id) if row["status"] == "complete" else None
    status = {"upload_id": str(upload_id), "tender": str(row["tender_id"]), "lot": row["lot_code"],
              "offset": row["offset"], "length": row["length"], "status": row["status"], "failure": row["failure"],
              "bid": None, "receipt": None}
    if bid is not None:
        status["bid"], status["receipt"] = str(bid["id"]), bid["receipt"]
    return status


async def _fail(deps: Deps, upload_id: uuid.UUID, failure: str, *paths: Path) -> None:
    async with deps.pool.acquire() as conn:
        await store.fail_upload(conn, upload_id, failure)
    for path in paths:
        uploads.remove_quietly(path)
    deps.registry.forget(upload_id)


async def expire_abandoned_uploads(deps: Deps) -> int:
    """Fail the uploads left incomplete past their tender's deadline and delete their partial files.

    They could never complete; without this their bytes would stay on disk for good.
    """
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            expired = await store.expire_uploads(conn)
            if expired:
                await accounts.record_audit(conn, "uploads.expired", subject="uploads",
                                            detail={"uploads": [str(u) for u in expired]})
    for upload_id in expired:
        uploads.remove_quietly(uploads.incoming_path(deps.settings.storage_dir, upload_id))
        deps.registry.forget(upload_id)
    return len(expired)


async def patch_upload(deps: Deps, user: CurrentUser, upload_id: uuid.UUID, *, offset_header: str | None,
                       content_type: str, content_length: str | None, checksum: bytes | None,
                       chunks: AsyncIterator[bytes]) -> dict[str, Any]:
    """tus PATCH: append the body at Upload-Offset; on the last byte, verify and record the bid.

    Refusals: 415 wrong content type, 400 bad Upload-Offset, 404, 409 offset_mismatch /
    deadline_passed / upload_complete / upload_failed / upload_locked (another PATCH, on any
    server instance, holds the upload), 413 upload_too_long, 460 checksum_mismatch, 422 digest_mismatch (the upload fails).
    Returns {"offset", "length", "complete", "bid"?, "receipt"?}.
    """
    if content_type.split(";")[0].strip().lower() != uploads.OFFSET_CONTENT_TYPE:
        raise TradingError(f"send the body as {uploads.OFFSET_CONTENT_TYPE}", code="unsupported_media_type",
                           status=415)
    if offset_header is None or not offset_header.isdigit():
        raise TradingError("Upload-Offset is required: a non-negative integer", code="bad_offset_header")
    offset = int(offset_header)
    async with deps.pool.acquire() as conn:
        row = await _own_upload(conn, user, upload_id)
        tender = await store.tender(conn, row["tender_id"])
        now = await server_now(conn)
    path = uploads.incoming_path(deps.settings.storage_dir, upload_id)
    _check_receiving(row)
    async with _claimed(deps, upload_id) as claim:
        async with deps.pool.acquire() as conn:
            claimed = await store.upload(conn, upload_id)  # the claim makes this read stable
        # Checked again under the claim: another PATCH may have completed (or failed) the upload
        # since the read above (say a client retrying its last, zero-length PATCH).
        _check_receiving(claimed)
        if now >= tender["deadline"]:
            await _fail(deps, upload_id, "deadline_passed", path)
            check_before_deadline(tender["deadline"], now)
        current = claimed["offset"]
        if offset != current:
            raise StateConflict(f"Upload-Offset {offset} is not the upload's offset {current}; ask with HEAD",
                                code="offset_mismatch")
        length = row["length"]
        if content_length and content_length.isdigit() and offset + int(content_length) > length:
            raise TooLarge(f"the body goes past Upload-Length {length}", code="upload_too_long")
        final = uploads.bid_path(deps.settings.storage_dir, row["tender_id"], upload_id)
        try:
            # A completion that crashed between moving the file to `final` and its commit left it
            # there: prepare moves it back (the upload is receiving, checked above). See _complete.
            progress = await uploads.prepare(deps.registry, path, upload_id, offset, moved_to=final)
        except uploads.PartialFileLost:
            # The recorded bytes are gone from storage: the upload can never complete. Fail it and
            # say so, rather than answer every later PATCH with a 500.
            await _fail(deps, upload_id, "storage_lost", path)
            raise StateConflict("the bytes received so far for this upload were lost from the server's storage; "
                                "the upload failed: submit the sealed bid again as a new upload",
                                code="upload_failed") from None

        async def record(position: int) -> None:
            async with deps.pool.acquire() as c:
                if not await store.set_offset(c, upload_id, position, claim, CLAIM_LEASE):
                    raise StateConflict("this PATCH lost its claim on the upload; resume with HEAD",
                                        code="upload_locked")

        received = await uploads.receive(chunks, path, progress, length, checksum, record)
        await record(received.offset)
        if received.disconnected or received.offset < length:
            return {"offset": received.offset, "length": length, "complete": False}
        return await _complete(deps, user, row, progress.digest.hexdigest(), path)


def _check_receiving(row: asyncpg.Record) -> None:
    if row["status"] == "complete":
        raise StateConflict("this upload is complete", code="upload_complete")
    if row["status"] == "failed":
        raise StateConflict(f"this upload failed ({row['failure']}); start a new one", code="upload_failed")


@contextlib.asynccontextmanager
async def _claimed(deps: Deps, upload_id: uuid.UUID) -> AsyncIterator[uuid.UUID]:
    """Hold the upload's database claim for the PATCH, renewing it while the body streams in.

    StateConflict upload_locked when another PATCH (on any server instance) holds it.
    """
    claim = uuid.uuid4()
    async with deps.pool.acquire() as conn:
        if not await store.claim_upload(conn, upload_id, claim, CLAIM_LEASE):
            raise StateConflict("another PATCH of this upload is running (or was cut off under a minute ago); "
                                "retry shortly", code="upload_locked")

    async def renew() -> None:
        while True:
            await asyncio.sleep(CLAIM_LEASE.total_seconds() / 3)
            async with deps.pool.acquire() as conn:
                await store.renew_claim(conn, upload_id, claim, CLAIM_LEASE)

    renewer = asyncio.create_task(renew())
    try:
        yield claim
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        async with deps.pool.acquire() as conn:
            await store.release_claim(conn, upload_id, claim)


async def _complete(deps: Deps, user: CurrentUser, upload: asyncpg.Record, sha256: str, path: Path) -> dict[str, Any]:
    upload_id, tender_id = upload["id"], upload["tender_id"]
    manifest = upload["manifest"]
    if sha256 != manifest["ciphertext"]["sha256"]:
        await _fail(deps, upload_id, "digest_mismatch", path)
        raise SubmissionRefused(f"the received ciphertext has SHA-256 {sha256}; the manifest says "
                                f"{manifest['ciphertext']['sha256']}; the upload failed, seal and submit again",
                                code="digest_mismatch")
    final = uploads.bid_path(deps.settings.storage_dir, tender_id, upload_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    # The file is moved (durably) before the transaction commits, so a complete upload always has
    # its bid file in place. A crash between the two leaves the upload receiving at its last byte
    # with the file at `final`: uploads.prepare moves it back at the next PATCH, which completes it.
    # (Committing first would need a recovery pass for complete bids whose file never arrived.)
    await asyncio.to_thread(uploads.move_durably, path, final)
    bid_id = uuid.uuid4()
    try:
        async with deps.pool.acquire() as conn:
            async with conn.transaction():
                tender = await store.tender(conn, tender_id, "share")
                current = await store.upload(conn, upload_id, for_update=True)
                if current["status"] != "receiving":
                    raise StateConflict("this upload is no longer receiving", code="upload_complete")
                received_at = await server_now(conn)
                if received_at >= tender["deadline"]:
                    raise _DeadlineAtCompletion()
                superseded = await store.supersede_active(conn, tender_id, upload["lot_code"], upload["organisation_id"])
                org = await store.org_active_keys(conn, upload["organisation_id"])
                body = receipts.log_body(
                    tender=str(tender_id), lot=upload["lot_code"], bid=str(bid_id),
                    manifest_sha256=upload["manifest_sha256"], ciphertext_sha256=sha256, size=upload["length"],
                    received_at=iso(received_at))
                appended = await log.append_entry(conn, deps.signer, receipts.LOG_KIND, body)
                receipt = receipts.build_receipt(
                    signer=deps.signer, bid=str(bid_id), tender=str(tender_id), lot=upload["lot_code"],
                    organisation=org["credit_code"], upload_id=str(upload_id),
                    manifest_sha256=upload["manifest_sha256"], ciphertext_sha256=sha256, size=upload["length"],
                    received_at=iso(received_at), appended=appended)
                try:
                    await store.insert_bid(
                        conn, bid_id=bid_id, upload_id=upload_id, tender_id=tender_id, lot=upload["lot_code"],
                        organisation_id=upload["organisation_id"], user_id=user.id, ciphertext_sha256=sha256,
                        size=upload["length"], manifest_sha256=upload["manifest_sha256"],
                        tender_version=tender["version"], received_at=received_at, log_index=appended.index,
                        receipt=receipt)
                except asyncpg.IntegrityConstraintViolationError as exc:
                    raise constraint_error(exc) from None
                await store.complete_upload(conn, upload_id)
                await bus.emit(conn, topic(tender_id), "bid.received", await _public_count(conn, tender))
                await bus.emit(conn, f"org:{upload['organisation_id']}", "bid.received",
                               {"bid": str(bid_id), "tender": str(tender_id), "lot": upload["lot_code"],
                                "superseded": [str(s) for s in superseded]})
                await accounts.record_audit(conn, "bid.received", actor_id=user.id, subject=f"bid:{bid_id}",
                                            detail={"tender": str(tender_id), "upload": str(upload_id)})
    except _DeadlineAtCompletion:
        await _fail(deps, upload_id, "deadline_passed", final)
        raise StateConflict("the deadline passed before the upload completed; the bid was not received",
                            code="deadline_passed") from None
    except BaseException:
        if final.exists():
            os.replace(final, path)  # the upload stays resumable at its last byte
        raise
    deps.registry.forget(upload_id)
    return {"offset": upload["length"], "length": upload["length"], "complete": True, "bid": str(bid_id),
            "receipt": receipt}


class _DeadlineAtCompletion(Exception):
    """Raised inside the completion transaction to roll it back; mapped to deadline_passed."""


# ---------------------------------------------------------------------------- bids


async def _public_count(conn: asyncpg.Connection, tender: asyncpg.Record) -> dict[str, Any]:
    """The tender topic's payload: the bid count when the tender shows it, else nothing."""
    if not tender["show_bid_count"]:
        return {}
    return {"bids": await store.count_active_bids(conn, tender["id"])}


async def _own_bid(conn: asyncpg.Connection, user: CurrentUser, bid_id: uuid.UUID, for_update: bool = False) -> asyncpg.Record:
    row = await store.bid(conn, bid_id, for_update=for_update)
    if row is None or row["organisation_id"] != user.organisation_id:
        raise NotFound("no such bid among your organisation's", code="bid_not_found")
    return row


def _bid_json(row: asyncpg.Record, tender_version: int, confirmed: list[int]) -> dict[str, Any]:
    return {"id": str(row["id"]), "tender": str(row["tender_id"]), "lot": row["lot_code"], "status": row["status"],
            "upload_id": str(row["upload_id"]), "size": row["size"], "ciphertext_sha256": row["ciphertext_sha256"],
            "manifest_sha256": row["manifest_sha256"], "received_at": iso(row["received_at"]),
            "log_index": row["log_index"], "tender_version": row["tender_version"],
            "current_tender_version": tender_version,
            "withdrawn_at": iso(row["withdrawn_at"]) if row["withdrawn_at"] else None,
            "needs_confirmation": needs_confirmation(row["status"], row["tender_version"], tender_version, confirmed)}


async def list_bids(deps: Deps, user: CurrentUser, tender_id: uuid.UUID | None) -> dict[str, Any]:
    """The caller's organisation's bids (never anyone else's), newest first."""
    if user.organisation_id is None:
        return {"bids": []}
    async with deps.pool.acquire() as conn:
        rows = await store.org_bids(conn, user.organisation_id, tender_id)
    return {"bids": [_bid_json(r, r["current_tender_version"], list(r["confirmed_versions"])) for r in rows]}


async def get_receipt(deps: Deps, user: CurrentUser, bid_id: uuid.UUID) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        row = await _own_bid(conn, user, bid_id)
    return row["receipt"]


async def withdraw_bid(deps: Deps, user: CurrentUser, bid_id: uuid.UUID) -> dict[str, Any]:
    """Withdraw an active bid before the deadline: logged "bid.withdrawn" (no bidder identity)."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            row = await _own_bid(conn, user, bid_id, for_update=True)
            tender = await store.tender(conn, row["tender_id"], "share")
            now = await server_now(conn)
            check_before_deadline(tender["deadline"], now)
            if row["status"] != "active":
                raise StateConflict(f"this bid is {row['status']}, not active", code="bid_not_active")
            await store.withdraw_bid(conn, bid_id, now)
            appended = await log.append_entry(conn, deps.signer, "bid.withdrawn", {
                "tender": str(row["tender_id"]), "lot": row["lot_code"], "bid": str(bid_id), "withdrawn_at": iso(now)})
            await bus.emit(conn, topic(row["tender_id"]), "bid.withdrawn", await _public_count(conn, tender))
            await bus.emit(conn, f"org:{row['organisation_id']}", "bid.withdrawn", {"bid": str(bid_id)})
            await accounts.record_audit(conn, "bid.withdrawn", actor_id=user.id, subject=f"bid:{bid_id}")
    return {"bid": str(bid_id), "status": "withdrawn", "withdrawn_at": iso(now), "log_index": appended.index}


async def confirm_bid(deps: Deps, user: CurrentUser, bid_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Re-confirm an active bid for the tender's current version with the bid's signing key.

    The signature is raw r||s b64url over confirmation_message(bid, tender, version, manifest_sha256).
    """
    signature = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(signature, str):
        raise SubmissionRefused('send {"signature": "..."}', code="invalid_body")
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            row = await _own_bid(conn, user, bid_id, for_update=True)
            tender = await store.tender(conn, row["tender_id"], "share")
            check_before_deadline(tender["deadline"], await server_now(conn))
            if row["status"] != "active":
                raise StateConflict(f"this bid is {row['status']}, not active", code="bid_not_active")
            version = tender["version"]
            confirmed = await store.confirmed_versions(conn, bid_id)
            if not needs_confirmation(row["status"], row["tender_version"], version, confirmed):
                raise StateConflict(f"the bid is already valid for tender version {version}",
                                    code="confirmation_not_needed")
            upload = await store.upload(conn, row["upload_id"])
            key_set = await store.key_set(conn, upload["key_set_id"])
            message = confirmation_message(str(bid_id), str(row["tender_id"]), version, row["manifest_sha256"])
            try:
                verify_raw_p256(_public_key(key_set["sign_spki"]), message, signature)
            except SignatureInvalid as exc:
                raise SubmissionRefused(f"the confirmation {exc} under your organisation's signing key",
                                        code="bad_signature") from None
            await store.insert_confirmation(conn, bid_id, version, signature, user.id)
            appended = await log.append_entry(conn, deps.signer, "bid.confirmed", {
                "tender": str(row["tender_id"]), "lot": row["lot_code"], "bid": str(bid_id),
                "tender_version": version, "manifest_sha256": row["manifest_sha256"]})
            await bus.emit(conn, f"org:{row['organisation_id']}", "bid.confirmed",
                           {"bid": str(bid_id), "tender_version": version})
    return {"bid": str(bid_id), "tender_version": version, "log_index": appended.index}


async def bidder_context(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """What the bid page needs: the tender, the organisation's credit code and keys, its bids here."""
    tender = await get_tender(deps, user, tender_id)
    async with deps.pool.acquire() as conn:
        keys = await store.org_active_keys(conn, user.organisation_id) if user.organisation_id else None
    bids = (await list_bids(deps, user, tender_id))["bids"]
    return {"tender": tender, "credit_code": keys["credit_code"] if keys else None,
            "sign_key_id": keys["sign_key_id"] if keys and keys["id"] else None,
            "decrypt_key_id": keys["decrypt_key_id"] if keys and keys["id"] else None, "bids": bids}
