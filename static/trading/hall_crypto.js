// The opening hall's key work in this browser: a bidder recovers its content keys, a
// custodian opens its key shares, a bidder signs the opening record.
//
// Private keys never leave IndexedDB (static/tenderhall/keys.js keeps them non-extractable);
// what is sent is the bid's 32-byte content key (checked against the manifest's commitment
// first, so a wrong key is caught here with a precise message), a 33-byte Shamir share, or
// a signature. Failures are HallKeyError with a `reason` the page turns into its own words.

import { KeyCommitmentMismatch, WrapInvalid, checkContentKey, unwrapBidderKey, unwrapShare } from "./sealing.js";
import { keyId, loadKeys } from "../tenderhall/keys.js";
import { b64url } from "../tenderhall/canonical.js";

export const RECORD_CONFIRMATION_PREFIX = "tenderhall-opening-record/1\n";

/** reason: "noKeys" | "keysMismatch" | "signKeyMismatch" | "wrapInvalid" | "keyMismatch"; detail for the message. */
export class HallKeyError extends Error {
  constructor(reason, detail = {}, cause = undefined) {
    super(cause ? `${reason}: ${cause.message}` : reason);
    this.name = "HallKeyError";
    this.reason = reason;
    this.detail = detail;
    this.cause = cause;
  }
}

async function keysOf(owner) {
  const keys = owner ? await loadKeys(owner) : null;
  if (!keys) throw new HallKeyError("noKeys");
  return keys;
}

/**
 * The b64url content key of one of my bids, from its manifest's bidder wrap, checked against
 * manifest.key_commitment. Throws HallKeyError: noKeys (none in this browser), keysMismatch
 * (the browser holds other keys than the ones the bid was sealed to), wrapInvalid, keyMismatch.
 */
export async function recoverContentKey(owner, manifest) {
  const keys = await keysOf(owner);
  const expected = manifest?.bidder_wrap?.key;
  if (expected && (await keyId(keys.decrypt.publicKey)) !== expected) {
    throw new HallKeyError("keysMismatch", { expected: expected.slice(0, 16) });
  }
  let key;
  try {
    key = await unwrapBidderKey(manifest.bidder_wrap.enc, keys.decrypt);
  } catch (error) {
    if (error instanceof WrapInvalid) throw new HallKeyError("wrapInvalid", {}, error);
    throw error;
  }
  try {
    await checkContentKey(manifest, key);
  } catch (error) {
    if (error instanceof KeyCommitmentMismatch) throw new HallKeyError("keyMismatch", {}, error);
    throw error;
  }
  const encoded = b64url(key);
  key.fill(0);
  return encoded;
}

/**
 * [{bid_id, share}] for each bid that holds my custodian wrap (`share_enc`), shares as b64url.
 * Throws HallKeyError noKeys or wrapInvalid (with detail.bid) for the first wrap that does not open.
 */
export async function openShares(owner, bids) {
  const keys = await keysOf(owner);
  const out = [];
  for (const bid of bids) {
    let share;
    try {
      share = await unwrapShare(bid.share_enc, keys.decrypt);
    } catch (error) {
      if (error instanceof WrapInvalid) throw new HallKeyError("wrapInvalid", { bid: bid.bid_id }, error);
      throw error;
    }
    out.push({ bid_id: bid.bid_id, share: b64url(share) });
    share.fill(0);
  }
  return out;
}

/** The bytes a bidder signs to confirm the record (docs/hall.md, record_confirmation_message). */
export function recordConfirmationMessage(tenderId, recordSha256) {
  return new TextEncoder().encode(`${RECORD_CONFIRMATION_PREFIX}${tenderId}\n${recordSha256}`);
}

/**
 * b64url raw r||s ECDSA P-256/SHA-256 signature of the confirmation message (WebCrypto
 * emits IEEE P1363, i.e. raw r||s). `signKeyId`, when given, must be the key in this browser:
 * the server checks against the organisation's registered key. Throws HallKeyError noKeys
 * or signKeyMismatch.
 */
export async function signRecord(owner, tenderId, recordSha256, signKeyId) {
  const keys = await keysOf(owner);
  if (signKeyId && (await keyId(keys.sign.publicKey)) !== signKeyId) throw new HallKeyError("signKeyMismatch");
  const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.sign.privateKey,
    recordConfirmationMessage(tenderId, recordSha256));
  return b64url(new Uint8Array(signature));
}

/** "ready" | "missing" | "mismatch": whether this browser holds the owner's keys (and the registered signing key). */
export async function keysState(owner, signKeyId) {
  const keys = owner ? await loadKeys(owner) : null;
  if (!keys) return "missing";
  if (signKeyId && (await keyId(keys.sign.publicKey)) !== signKeyId) return "mismatch";
  return "ready";
}
