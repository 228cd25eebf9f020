"""Bid receipts ("tenderhall-bid-receipt/1"): build, sign and verify, with no I/O.

A receipt is canonical JSON signed with the platform's Ed25519 key over
canonical_json(receipt without "signature"). It carries the log entry "bid.received" it
was appended as, the signed tree head after that append and the RFC 9162 inclusion proof,
so a bidder can check offline, with only the platform's public key, that the server
recorded exactly this ciphertext at this time in the public log.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tenderhall import log
from tenderhall.canonical import CanonicalJSONError, b64url, b64url_decode, canonical_json
from tenderhall.platform_key import PlatformKey, as_public_key, key_id_of, verify_with

RECEIPT_FORMAT = "tenderhall-bid-receipt/1"
LOG_KIND = "bid.received"
# The log body names no bidder: before the opening nobody may learn who bid.
LOG_BODY_FIELDS = ("tender", "lot", "bid", "manifest_sha256", "ciphertext_sha256", "size", "received_at")


class ReceiptInvalid(ValueError):
    """The receipt does not verify; the message says which check failed."""


def log_body(*, tender: str, lot: str, bid: str, manifest_sha256: str, ciphertext_sha256: str, size: int,
             received_at: str) -> dict[str, Any]:
    """The body of the "bid.received" log entry: exactly LOG_BODY_FIELDS."""
    return {"tender": tender, "lot": lot, "bid": bid, "manifest_sha256": manifest_sha256,
            "ciphertext_sha256": ciphertext_sha256, "size": size, "received_at": received_at}


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the manifest's canonical JSON (the bytes its signature covers)."""
    return hashlib.sha256(canonical_json(dict(manifest))).hexdigest()


def build_receipt(*, signer: PlatformKey, bid: str, tender: str, lot: str, organisation: str, upload_id: str,
                  manifest_sha256: str, ciphertext_sha256: str, size: int, received_at: str,
                  appended: log.AppendResult) -> dict[str, Any]:
    """Return the signed receipt for a bid whose "bid.received" entry is `appended`."""
    unsigned = {
        "receipt": RECEIPT_FORMAT,
        "bid": bid,
        "tender": tender,
        "lot": lot,
        "organisation": organisation,
        "upload_id": upload_id,
        "manifest_sha256": manifest_sha256,
        "ciphertext_sha256": ciphertext_sha256,
        "size": size,
        "received_at": received_at,
        "log_index": appended.index,
        # The entry as hashed into the log (it adds the log's own index and time to the body),
        # so the inclusion proof can be checked without asking the server for it.
        "log_entry": appended.entry,
        "tree_head": appended.tree_head.as_json(),
        "inclusion_proof": [p.hex() for p in appended.inclusion_proof],
        "platform_key_id": signer.key_id,
    }
    return {**unsigned, "signature": b64url(signer.sign(canonical_json(unsigned)))}


def verify_receipt(receipt: Mapping[str, Any], platform_public_key: Ed25519PublicKey | str | bytes,
                   entry_bytes: bytes | None = None) -> None:
    """Check a receipt completely; raise ReceiptInvalid naming the first failed check.

    Checks: the format; the platform key id and Ed25519 signature over the receipt; that the
    log entry (given as `entry_bytes`, else the receipt's own `log_entry`) is a "bid.received"
    entry at `log_index` whose body repeats the receipt's fields; the tree head's signature;
    and the inclusion proof of that entry under the head (log.verify_receipt_proof).
    """
    platform_public_key = as_public_key(platform_public_key)
    if not isinstance(receipt, Mapping) or receipt.get("receipt") != RECEIPT_FORMAT:
        raise ReceiptInvalid(f"not a {RECEIPT_FORMAT} receipt")
    unsigned = {k: v for k, v in receipt.items() if k != "signature"}
    if unsigned.get("platform_key_id") != key_id_of(platform_public_key):
        raise ReceiptInvalid("the receipt names another platform key")
    try:
        signature = b64url_decode(receipt.get("signature", ""))
        message = canonical_json(unsigned)
    except (ValueError, CanonicalJSONError):
        raise ReceiptInvalid("the receipt signature or body is malformed") from None
    if not verify_with(platform_public_key, signature, message):
        raise ReceiptInvalid("the platform signature on the receipt does not verify")
    try:
        data = entry_bytes if entry_bytes is not None else canonical_json(receipt["log_entry"])
        entry = json.loads(data)
    except (KeyError, ValueError, CanonicalJSONError):
        raise ReceiptInvalid("the receipt's log entry is missing or malformed") from None
    if not isinstance(entry, dict) or entry.get("kind") != LOG_KIND or entry.get("index") != receipt.get("log_index"):
        raise ReceiptInvalid(f"the log entry is not the {LOG_KIND} entry at index {receipt.get('log_index')}")
    body = entry.get("body")
    expected = {name: receipt.get(name) for name in LOG_BODY_FIELDS}
    if body != expected:
        raise ReceiptInvalid("the log entry's body differs from the receipt")
    if not log.verify_receipt_proof(data, receipt["log_index"], receipt.get("tree_head", {}),
                                    receipt.get("inclusion_proof", []), platform_public_key):
        raise ReceiptInvalid("the tree head signature or the inclusion proof does not verify")
