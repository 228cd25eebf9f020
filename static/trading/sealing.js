// Sealed bids in the browser, format "tenderhall-sealed-bid/1" (docs/sealing.md).
//
// The twin of trading/sealing.py: the same container, chunking, AAD, HPKE suite, Shamir
// shares and manifest, pinned together by docs/test-vectors/sealing.json and the browser
// interop test. The signed manifest commits to the content key (HMAC-SHA256), because AES-GCM
// alone is not key-committing; openBid checks that before decrypting. Primitives come from WebCrypto; HPKE (RFC 9180), Shamir sharing and
// incremental SHA-256 (WebCrypto can only hash a whole buffer) come from vendored,
// audited libraries (static/vendor/README.md).

import { Aes256Gcm, CipherSuite, DhkemP256HkdfSha256, HkdfSha256 } from "../vendor/hpke-core.js";
import { combine, split } from "../vendor/shamir-secret-sharing.js";
import { sha256 } from "../vendor/noble-hashes-sha256.js";
import { b64url, b64urlDecode, canonicalJson, hex } from "../tenderhall/canonical.js";
import { keyId } from "../tenderhall/keys.js";

export const FORMAT = "tenderhall-sealed-bid/1";
export const CHUNK_SIZE = 1048576;
export const TAG_SIZE = 16;
export const AEAD_NAME = "AES-256-GCM";
const encoder = new TextEncoder();
const CHUNK_AAD_PREFIX = encoder.encode("tenderhall-bid-v1");
const BIDDER_WRAP_INFO = encoder.encode("tenderhall/v1/bid-key");
const SHARE_WRAP_INFO = encoder.encode("tenderhall/v1/key-share");
const KEY_COMMITMENT_LABEL = encoder.encode("tenderhall/v1/key-commitment");
const MAX_HEADER_SIZE = 1048576;
const ECDH = { name: "ECDH", namedCurve: "P-256" };
const subtle = () => globalThis.crypto.subtle;

export class SealError extends Error {
  constructor(message) { super(message); this.name = this.constructor.name; }
}
export class ChunkAuthFailed extends SealError {
  constructor(index, final) {
    super(`${final ? "final chunk" : "chunk"} ${index} failed authentication (tampered, reordered, truncated, spliced, or wrong content key)`);
    this.index = index;
    this.final = final;
  }
}
export class DigestMismatch extends SealError {}
export class SizeMismatch extends SealError {}
export class WrapInvalid extends SealError {}
export class BidContentInvalid extends SealError {}
/** The content key is not the one the manifest commits to (see checkContentKey). */
export class KeyCommitmentMismatch extends SealError {
  constructor() { super("the content key does not match the manifest's key commitment"); }
}

function hpkeSuite() {
  // RFC 9180 base mode, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
  return new CipherSuite({ kem: new DhkemP256HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
}

function u64be(value) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(value));
  return out;
}

function chunkNonce(index) {
  const nonce = new Uint8Array(12); // 4 zero bytes || uint64_be(index)
  nonce.set(u64be(index), 4);
  return nonce;
}

function chunkAad(index, final) {
  const aad = new Uint8Array(CHUNK_AAD_PREFIX.length + 9);
  aad.set(CHUNK_AAD_PREFIX, 0);
  aad.set(u64be(index), CHUNK_AAD_PREFIX.length);
  aad[aad.length - 1] = final ? 1 : 0;
  return aad;
}

/** Throws BidContentInvalid unless `name` is a safe bare file name (same rule as Python). */
export function checkFileName(name) {
  if (typeof name !== "string" || name === "") throw new BidContentInvalid("file name must be a non-empty string");
  if (name === "." || name === "..") throw new BidContentInvalid(`file name ${JSON.stringify(name)} is not allowed`);
  for (const bad of ["/", "\\", "\0"]) {
    if (name.includes(bad)) throw new BidContentInvalid(`file name ${JSON.stringify(name)} contains ${JSON.stringify(bad)}`);
  }
  if (encoder.encode(name).length > 255) throw new BidContentInvalid("file name is longer than 255 bytes");
  return name;
}

function checkSummary(summary) {
  if (!summary || typeof summary !== "object" || Array.isArray(summary)) throw new BidContentInvalid("summary must be an object");
  for (const [key, value] of Object.entries(summary)) {
    const ok = typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isSafeInteger(value));
    if (!key || !ok) throw new BidContentInvalid(`summary.${key} must be a string, integer or boolean`);
  }
}

function contentKeyBytes(key) {
  const bytes = key instanceof Uint8Array ? key : ArrayBuffer.isView(key)
    ? new Uint8Array(key.buffer, key.byteOffset, key.byteLength) : new Uint8Array(key);
  if (bytes.length !== 32) throw new SealError(`content key must be 32 bytes, got ${bytes.length}`);
  return bytes;
}

async function keyCommitmentBytes(key) {
  const hmacKey = await subtle().importKey("raw", contentKeyBytes(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle().sign("HMAC", hmacKey, KEY_COMMITMENT_LABEL));
}

/** The manifest's key_commitment: lowercase hex of HMAC-SHA256(key = K, msg = "tenderhall/v1/key-commitment"). */
export async function keyCommitment(key) {
  return hex(await keyCommitmentBytes(key));
}

/**
 * Throws KeyCommitmentMismatch unless `key` (32 bytes) is the content key `manifest` commits
 * to; a missing or malformed manifest.key_commitment is a SealError. Call it on every K right
 * after unwrapBidderKey / combineShares; openBid calls it before decrypting anything.
 * The bytes are compared in constant time.
 */
export async function checkContentKey(manifest, key) {
  const claimedHex = manifest ? manifest.key_commitment : undefined;
  if (typeof claimedHex !== "string" || !/^[0-9a-f]{64}$/.test(claimedHex)) {
    throw new SealError("manifest.key_commitment must be 64 lowercase hex digits");
  }
  const actual = await keyCommitmentBytes(key);
  let diff = 0;
  for (let i = 0; i < 32; i++) diff |= actual[i] ^ parseInt(claimedHex.slice(2 * i, 2 * i + 2), 16);
  if (diff !== 0) throw new KeyCommitmentMismatch();
}

const sizeOf = (data) => (data instanceof Blob ? data.size : data.byteLength);

async function sliceBytes(data, start, end) {
  if (data instanceof Blob) return new Uint8Array(await data.slice(start, end).arrayBuffer());
  return data.subarray(start, end);
}

async function hashSource(data, onBytes) {
  const h = sha256.create();
  const size = sizeOf(data);
  for (let pos = 0; pos < size || pos === 0; pos += CHUNK_SIZE) {
    const piece = await sliceBytes(data, pos, Math.min(size, pos + CHUNK_SIZE));
    h.update(piece);
    onBytes(piece.length);
    if (size === 0) break;
  }
  return hex(h.digest());
}

/** Reads consecutive byte ranges across a list of Blobs / Uint8Arrays, one chunk at a time. */
class SourceReader {
  constructor(sources) { this.sources = sources; this.index = 0; this.offset = 0; }

  async read(want) {
    const out = new Uint8Array(want);
    let filled = 0;
    while (filled < want && this.index < this.sources.length) {
      const source = this.sources[this.index];
      const take = Math.min(sizeOf(source) - this.offset, want - filled);
      out.set(await sliceBytes(source, this.offset, this.offset + take), filled);
      filled += take;
      this.offset += take;
      if (this.offset === sizeOf(source)) { this.index += 1; this.offset = 0; }
    }
    if (filled !== want) throw new SealError("bid content ended early while sealing");
    return out;
  }
}

async function importEcdhSpki(spkiB64) {
  return subtle().importKey("spki", b64urlDecode(spkiB64), ECDH, true, []);
}

async function wrap(suite, plaintext, spkiB64, info) {
  const { ct, enc } = await suite.seal({ recipientPublicKey: await importEcdhSpki(spkiB64), info }, plaintext);
  const out = new Uint8Array(enc.byteLength + ct.byteLength); // wire form: enc || ct
  out.set(new Uint8Array(enc), 0);
  out.set(new Uint8Array(ct), enc.byteLength);
  return out;
}

/**
 * Seal a bid. Files are read in 1 MiB slices (twice: hashed for the header, then
 * encrypted), so a large File is never held whole. Returns {manifest, signature,
 * ciphertext}: ciphertext is a Blob of the chunks, or null when `onChunk(index, bytes)` is
 * given to stream them out (e.g. to a resumable upload) instead.
 *
 * custodianKeysSpki: b64url SPKI ECDH keys; empty with threshold 0, or 2..255 with
 * 2 <= threshold <= length. onProgress({phase: "hash"|"encrypt", done, total}) reports bytes.
 * contentKey (32 bytes) is for test vectors only.
 */
export async function sealBid({
  summary, files, tender, lot, organisation, uploadId, clientTime, signingKey,
  bidderPublicKeySpki, custodianKeysSpki = [], threshold = 0, onProgress, onChunk, contentKey,
}) {
  checkSummary(summary);
  const names = files.map((f) => checkFileName(f.name));
  if (new Set(names).size !== names.length) throw new BidContentInvalid("two files have the same name");
  const nCustodians = custodianKeysSpki.length;
  if (nCustodians === 1 || nCustodians > 255) throw new SealError("custodians must number 0, or between 2 and 255");
  if (nCustodians === 0 ? threshold !== 0 : !(threshold >= 2 && threshold <= nCustodians)) {
    throw new SealError(`threshold ${threshold} is not valid for ${nCustodians} custodians`);
  }
  const progress = onProgress ?? (() => {});
  const fileBytes = files.reduce((sum, f) => sum + sizeOf(f.data), 0);

  let hashed = 0;
  const entries = [];
  for (const file of files) {
    const digest = await hashSource(file.data, (count) => {
      hashed += count;
      progress({ phase: "hash", done: hashed, total: fileBytes });
    });
    entries.push({ name: file.name, size: sizeOf(file.data), sha256: digest });
  }
  const header = canonicalJson({ summary, files: entries });
  if (header.length > MAX_HEADER_SIZE) throw new BidContentInvalid("header is over the 1 MiB limit");
  const head = new Uint8Array(4 + header.length);
  new DataView(head.buffer).setUint32(0, header.length);
  head.set(header, 4);

  const total = head.length + fileBytes;
  const n = Math.max(1, Math.ceil(total / CHUNK_SIZE));
  const key = contentKey ?? crypto.getRandomValues(new Uint8Array(32));
  const aesKey = await subtle().importKey("raw", key, "AES-GCM", false, ["encrypt"]);
  const reader = new SourceReader([head, ...files.map((f) => f.data)]);
  const ctHash = sha256.create();
  const parts = [];
  let ctSize = 0;
  for (let index = 0; index < n; index++) {
    const want = Math.min(CHUNK_SIZE, total - index * CHUNK_SIZE);
    const plain = await reader.read(want);
    const params = { name: "AES-GCM", iv: chunkNonce(index), additionalData: chunkAad(index, index === n - 1), tagLength: 128 };
    const cipher = new Uint8Array(await subtle().encrypt(params, aesKey, plain));
    ctHash.update(cipher);
    ctSize += cipher.length;
    if (onChunk) await onChunk(index, cipher);
    else parts.push(cipher);
    progress({ phase: "encrypt", done: index * CHUNK_SIZE + want, total });
  }

  const suite = hpkeSuite();
  const custodianWraps = [];
  if (nCustodians > 0) {
    const shares = await split(key, nCustodians, threshold);
    for (let i = 0; i < nCustodians; i++) {
      custodianWraps.push({
        custodian: await keyId(b64urlDecode(custodianKeysSpki[i])),
        enc: b64url(await wrap(suite, shares[i], custodianKeysSpki[i], SHARE_WRAP_INFO)),
      });
    }
  }
  const signingPublic = await signingPublicSpki(signingKey);
  const manifest = {
    format: FORMAT,
    tender,
    lot,
    organisation,
    upload_id: uploadId,
    client_time: clientTime,
    signing_key: await keyId(signingPublic),
    ciphertext: { sha256: hex(ctHash.digest()), size: ctSize, chunk_size: CHUNK_SIZE, aead: AEAD_NAME },
    key_commitment: await keyCommitment(key),
    bidder_wrap: {
      key: await keyId(b64urlDecode(bidderPublicKeySpki)),
      enc: b64url(await wrap(suite, key, bidderPublicKeySpki, BIDDER_WRAP_INFO)),
    },
    custodian_wraps: custodianWraps,
    threshold,
  };
  const signature = await signManifest(manifest, signingKey);
  if (!contentKey) key.fill(0);
  return { manifest, signature, ciphertext: onChunk ? null : new Blob(parts, { type: "application/octet-stream" }) };
}

async function signingPublicSpki(signingKey) {
  // signingKey is {privateKey, publicKey} (as stored by keys.js) or a CryptoKeyPair.
  if (!signingKey || !signingKey.privateKey || !signingKey.publicKey) {
    throw new SealError("signingKey must be {privateKey, publicKey} (ECDSA P-256)");
  }
  return new Uint8Array(await subtle().exportKey("spki", signingKey.publicKey));
}

/** b64url raw r||s ECDSA P-256/SHA-256 signature of canonicalJson(manifest) (WebCrypto emits P1363). */
export async function signManifest(manifest, signingKey) {
  const signature = await subtle().sign({ name: "ECDSA", hash: "SHA-256" }, signingKey.privateKey, canonicalJson(manifest));
  return b64url(new Uint8Array(signature));
}

/** True if `signatureB64` signs canonicalJson(manifest) under the ECDSA public key (CryptoKey). */
export async function verifyManifest(manifest, signatureB64, publicKey) {
  return subtle().verify({ name: "ECDSA", hash: "SHA-256" }, publicKey, b64urlDecode(signatureB64), canonicalJson(manifest));
}

async function unwrap(encB64, keyPair, info, size, what) {
  if (!keyPair || !keyPair.privateKey || !keyPair.publicKey) {
    // A non-extractable private key cannot give its public half, which HPKE needs (RFC 9180 §4.1).
    throw new WrapInvalid(`${what}: pass the ECDH key pair {privateKey, publicKey}`);
  }
  let data;
  try { data = b64urlDecode(encB64); } catch { throw new WrapInvalid(`${what} is not unpadded base64url`); }
  if (data.length <= 65) throw new WrapInvalid(`${what} is too short`);
  let plain;
  try {
    plain = new Uint8Array(await hpkeSuite().open(
      { recipientKey: keyPair, enc: data.slice(0, 65).buffer, info }, data.slice(65).buffer,
    ));
  } catch {
    throw new WrapInvalid(`${what} does not open with this key`);
  }
  if (plain.length !== size) throw new WrapInvalid(`${what} holds ${plain.length} bytes, expected ${size}`);
  return plain;
}

/** HPKE-open the bidder wrap with the ECDH key pair (private key may be non-extractable); returns K. */
export async function unwrapBidderKey(encB64, decryptKeyPair) {
  return unwrap(encB64, decryptKeyPair, BIDDER_WRAP_INFO, 32, "bidder wrap");
}

/** HPKE-open a custodian wrap; returns the 33-byte Shamir share. */
export async function unwrapShare(encB64, decryptKeyPair) {
  return unwrap(encB64, decryptKeyPair, SHARE_WRAP_INFO, 33, "custodian wrap");
}

/** Recover K from at least `threshold` shares; check it with checkContentKey (openBid refuses a wrong K). */
export async function combineShares(shares) {
  return combine(shares);
}

/** Incremental parser of the decrypted container: uint32 header length, header, file bytes. */
class Container {
  constructor() {
    this.head = [];
    this.headLen = 0;
    this.headerLength = null;
    this.summary = null;
    this.files = [];
    this.current = -1;
    this.remaining = 0;
  }

  feed(bytes) {
    let pos = 0;
    while (pos < bytes.length || (this.summary && this.remaining === 0 && this.current < this.files.length)) {
      if (!this.summary) {
        const need = (this.headerLength === null ? 4 : 4 + this.headerLength) - this.headLen;
        const take = Math.min(need, bytes.length - pos);
        this.head.push(bytes.subarray(pos, pos + take));
        this.headLen += take;
        pos += take;
        if (this.headerLength === null && this.headLen === 4) {
          this.headerLength = new DataView(this.joinHead().buffer).getUint32(0);
          if (this.headerLength > MAX_HEADER_SIZE) throw new BidContentInvalid("header length over the 1 MiB limit");
        }
        if (this.headerLength !== null && this.headLen === 4 + this.headerLength) {
          this.parseHeader(this.joinHead().subarray(4));
          this.nextFile();
        }
        continue;
      }
      if (this.current >= this.files.length) throw new BidContentInvalid(`${bytes.length - pos} bytes follow the last file`);
      const file = this.files[this.current];
      const take = Math.min(this.remaining, bytes.length - pos);
      const piece = bytes.slice(pos, pos + take);
      file.hash.update(piece);
      file.parts.push(piece);
      pos += take;
      this.remaining -= take;
      if (this.remaining === 0) {
        const digest = hex(file.hash.digest());
        if (digest !== file.sha256) throw new DigestMismatch(`file ${JSON.stringify(file.name)} has SHA-256 ${digest}, the header says ${file.sha256}`);
        this.nextFile();
      }
    }
  }

  joinHead() {
    const out = new Uint8Array(this.headLen);
    let at = 0;
    for (const piece of this.head) { out.set(piece, at); at += piece.length; }
    this.head = [out];
    return out;
  }

  parseHeader(raw) {
    let header;
    try { header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw)); } catch {
      throw new BidContentInvalid("header is not valid JSON");
    }
    const canonical = canonicalJson(header);
    if (canonical.length !== raw.length || canonical.some((b, i) => b !== raw[i])) {
      throw new BidContentInvalid("header is not in canonical JSON form");
    }
    if (!header || typeof header !== "object" || !Array.isArray(header.files) || Object.keys(header).length !== 2) {
      throw new BidContentInvalid("header must hold exactly 'summary' and 'files'");
    }
    checkSummary(header.summary);
    const names = new Set();
    for (const entry of header.files) {
      checkFileName(entry.name);
      if (!Number.isSafeInteger(entry.size) || entry.size < 0 || !/^[0-9a-f]{64}$/.test(entry.sha256)) {
        throw new BidContentInvalid(`header entry for ${JSON.stringify(entry.name)} is malformed`);
      }
      if (names.has(entry.name)) throw new BidContentInvalid(`header names ${JSON.stringify(entry.name)} twice`);
      names.add(entry.name);
      this.files.push({ name: entry.name, size: entry.size, sha256: entry.sha256, hash: sha256.create(), parts: [] });
    }
    this.summary = header.summary;
  }

  nextFile() {
    this.current += 1;
    if (this.current < this.files.length) this.remaining = this.files[this.current].size;
  }

  finish() {
    if (!this.summary) throw new BidContentInvalid("plaintext ends inside the header");
    if (this.current < this.files.length) throw new BidContentInvalid("plaintext ends inside a file");
    return {
      summary: this.summary,
      files: this.files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256, data: new Blob(f.parts) })),
    };
  }
}

/**
 * Decrypt and verify a sealed bid (ciphertext as Blob or Uint8Array) with content key K.
 * Returns {summary, files: [{name, size, sha256, data: Blob}]}. Throws, in this order,
 * KeyCommitmentMismatch (before any decryption), SizeMismatch, ChunkAuthFailed (with
 * .index), DigestMismatch (ciphertext or a file) or BidContentInvalid.
 */
export async function openBid(ciphertext, contentKey, manifest) {
  await checkContentKey(manifest, contentKey);
  const expected = manifest.ciphertext;
  const size = sizeOf(ciphertext);
  if (size !== expected.size) throw new SizeMismatch(`ciphertext is ${size} bytes; the manifest says ${expected.size}`);
  const full = CHUNK_SIZE + TAG_SIZE;
  const n = Math.max(1, Math.ceil(size / full));
  const last = size - (n - 1) * full;
  if (last < TAG_SIZE || (last === TAG_SIZE && n > 1)) throw new SizeMismatch(`ciphertext size ${size} is not a possible chunked length`);
  const aesKey = await subtle().importKey("raw", contentKey, "AES-GCM", false, ["decrypt"]);
  const ctHash = sha256.create();
  const container = new Container();
  for (let index = 0; index < n; index++) {
    const final = index === n - 1;
    const chunk = await sliceBytes(ciphertext, index * full, index * full + (final ? last : full));
    ctHash.update(chunk);
    let plain;
    try {
      plain = new Uint8Array(await subtle().decrypt(
        { name: "AES-GCM", iv: chunkNonce(index), additionalData: chunkAad(index, final), tagLength: 128 }, aesKey, chunk,
      ));
    } catch {
      throw new ChunkAuthFailed(index, final);
    }
    container.feed(plain);
  }
  const digest = hex(ctHash.digest());
  if (digest !== expected.sha256) throw new DigestMismatch(`ciphertext SHA-256 is ${digest}; the manifest says ${expected.sha256}`);
  return container.finish();
}
