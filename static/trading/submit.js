// The bidder's page: seal the bid in this browser, upload it resumably (tus 1.0), show the receipt.
//
// The bid is sealed with static/trading/sealing.js using the organisation's keys kept in
// IndexedDB by static/tenderhall/keys.js; only ciphertext and the signed manifest leave the
// browser. The ciphertext goes up in 8 MiB PATCHes, each with an Upload-Checksum; after a
// failed PATCH the offset is asked with HEAD and the upload resumes from there.

import { sealBid } from "./sealing.js";
import { exportSpkiB64url, keyId, loadKeys } from "../tenderhall/keys.js";
import { b64url, b64urlDecode, canonicalJson } from "../tenderhall/canonical.js";

const PATCH_BYTES = 8 * 1024 * 1024;
const MAX_RETRIES = 8;
const page = document.getElementById("bid-page");
const strings = JSON.parse(document.getElementById("bid-strings").textContent);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
const tus = { "Tus-Resumable": "1.0.0", "X-CSRF-Token": csrf };

function fail(message) {
  const box = $("bid-error");
  box.textContent = message;
  box.hidden = false;
}

async function apiError(response) {
  try {
    const body = await response.json();
    return `${body.error.message} (${body.error.code})`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function showProgress(phase, done, total) {
  $("progress").hidden = false;
  $("phase").textContent = phase;
  const pct = total ? Math.floor((done / total) * 100) : 100;
  $("progress-bar").value = pct;
  $("progress-text").textContent = `${done.toLocaleString()} / ${total.toLocaleString()} ${strings.bytes} (${pct}%)`;
}

async function ourKeys() {
  const keys = await loadKeys(page.dataset.owner);
  if (!keys) return null;
  const signId = await keyId(keys.sign.publicKey);
  if (page.dataset.signKeyId && signId !== page.dataset.signKeyId) {
    $("keys-status").textContent = strings.keysMismatch;
    return null;
  }
  return keys;
}

function readSummary(form) {
  const summary = {};
  for (const input of form.querySelectorAll("[name^='summary.']")) {
    const name = input.name.slice("summary.".length);
    const value = input.value.trim();
    if (value === "") continue;
    if (input.dataset.type === "integer") summary[name] = Number.parseInt(value, 10);
    else if (input.dataset.type === "money") summary[name] = normaliseMoney(value);
    else summary[name] = value;
  }
  return summary;
}

function normaliseMoney(text) {
  // Decimal strings, never floats: "12" -> "12.00", "12.5" -> "12.50".
  const [whole, frac = ""] = text.split(".");
  return `${whole}.${(frac + "00").slice(0, 2)}`;
}

async function sha256b64(blob) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
  let binary = "";
  for (const byte of digest) binary += String.fromCharCode(byte);
  return btoa(binary);
}

async function currentOffset(location) {
  const response = await fetch(location, { method: "HEAD", headers: tus, cache: "no-store" });
  if (!response.ok) throw new Error(`HEAD ${response.status}`);
  return Number(response.headers.get("Upload-Offset"));
}

async function upload(location, blob) {
  let offset = 0;
  let retries = 0;
  while (true) {
    const piece = blob.slice(offset, Math.min(offset + PATCH_BYTES, blob.size));
    let response;
    try {
      response = await fetch(location, {
        method: "PATCH",
        headers: { ...tus, "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(offset),
                   "Upload-Checksum": `sha256 ${await sha256b64(piece)}` },
        body: piece,
      });
    } catch (error) {
      response = null;
    }
    if (response && (response.status === 204 || response.status === 200)) {
      offset = Number(response.headers.get("Upload-Offset"));
      retries = 0;
      showProgress(strings.uploading, offset, blob.size);
      if (response.status === 200) return response.json();
      continue;
    }
    const retryable = response === null || response.status >= 500 || response.status === 460 ||
      (response.status === 409 && (await response.clone().json()).error.code === "offset_mismatch");
    if (!retryable || ++retries > MAX_RETRIES) throw new Error(response ? await apiError(response) : "network error");
    $("phase").textContent = strings.retrying;
    offset = await currentOffset(location);
  }
}

async function verifyReceipt(receipt) {
  // Optional in-browser check of the platform's Ed25519 signature over the receipt.
  const info = await (await fetch("/.well-known/tenderhall-log-key")).json();
  const pem = info.public_key_pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  const der = Uint8Array.from(atob(pem), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey("spki", der, { name: "Ed25519" }, false, ["verify"]);
  const { signature, ...unsigned } = receipt;
  return crypto.subtle.verify({ name: "Ed25519" }, key, b64urlDecode(signature), canonicalJson(unsigned));
}

async function showReceipt(result) {
  const receipt = result.receipt;
  $("receipt").hidden = false;
  $("receipt-bid").textContent = result.bid;
  $("receipt-log-index").textContent = String(receipt.log_index);
  $("receipt-time").textContent = receipt.received_at;
  $("receipt-digest").textContent = receipt.ciphertext_sha256;
  let ok = false;
  try {
    ok = await verifyReceipt(receipt);
  } catch {
    ok = false;
  }
  $("receipt-check").textContent = ok ? strings.verified : strings.notVerified;
  $("receipt-check").dataset.verified = String(ok);
}

async function submit(event) {
  event.preventDefault();
  $("bid-error").hidden = true;
  const form = event.target;
  const button = $("submit-bid");
  button.disabled = true;
  try {
    const keys = await ourKeys();
    if (!keys) throw new Error(strings.noKeys);
    const lot = form.lot.value;
    const files = [...form.files.files].map((file) => ({ name: file.name, data: file }));
    const sealed = await sealBid({
      summary: readSummary(form), files, tender: page.dataset.tenderId, lot,
      organisation: page.dataset.creditCode, uploadId: crypto.randomUUID(),
      clientTime: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
      signingKey: keys.sign, bidderPublicKeySpki: await exportSpkiB64url(keys.decrypt.publicKey),
      custodianKeysSpki: JSON.parse(page.dataset.custodians), threshold: Number(page.dataset.threshold),
      onProgress: ({ phase, done, total }) => showProgress(phase === "hash" ? strings.hashing : strings.sealing, done, total),
    });
    const created = await fetch(`/api/tenders/${page.dataset.tenderId}/lots/${encodeURIComponent(lot)}/uploads`, {
      method: "POST", headers: { ...tus, "Content-Type": "application/json" },
      body: JSON.stringify({ manifest: sealed.manifest, signature: sealed.signature }),
    });
    if (created.status !== 201) throw new Error(await apiError(created));
    showProgress(strings.uploading, 0, sealed.ciphertext.size);
    const result = await upload(created.headers.get("Location"), sealed.ciphertext);
    $("phase").textContent = strings.done;
    await showReceipt(result);
  } catch (error) {
    fail(error.message);
  } finally {
    button.disabled = false;
  }
}

async function withdraw(row) {
  if (!confirm(strings.confirmWithdraw)) return;
  const response = await fetch(`/api/bids/${row.dataset.bidId}/withdraw`, { method: "POST", headers: tus });
  if (!response.ok) return fail(await apiError(response));
  location.reload();
}

async function reconfirm(row) {
  const keys = await ourKeys();
  if (!keys) return fail(strings.noKeys);
  const message = canonicalJson({ bid: row.dataset.bidId, tender: page.dataset.tenderId,
                                  tender_version: Number(page.dataset.version),
                                  manifest_sha256: row.dataset.manifestSha256 });
  const raw = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.sign.privateKey, message));
  const response = await fetch(`/api/bids/${row.dataset.bidId}/confirm`, {
    method: "POST", headers: { ...tus, "Content-Type": "application/json" },
    body: JSON.stringify({ signature: b64url(raw) }),
  });
  if (!response.ok) return fail(await apiError(response));
  location.reload();
}

document.getElementById("bid-form").addEventListener("submit", submit);
document.getElementById("bids").addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-bid-id]");
  if (!row) return;
  if (event.target.classList.contains("withdraw")) withdraw(row);
  if (event.target.classList.contains("confirm")) reconfirm(row);
});
ourKeys().then((keys) => {
  if (keys) $("keys-status").textContent = strings.keysReady;
  else if (!$("keys-status").textContent) $("keys-status").textContent = strings.noKeys;
});
