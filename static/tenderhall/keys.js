// A user's key pairs in the browser: generate, back up under a passphrase, keep non-extractable.
//
// Each owner (bidder organisation or custodian) has an ECDSA P-256 key (signs manifests) and
// an ECDH P-256 key (opens HPKE wraps). They are generated extractable only long enough to
// write the passphrase-encrypted backup ("tenderhall-keys/1", the same bytes as
// tenderhall/keyfile.py), then re-imported as non-extractable CryptoKeys and kept in
// IndexedDB (database "tenderhall-keys", store "keys", keyed by owner). Restoring a backup
// does the same. Only WebCrypto is used.

import { b64url, b64urlDecode, canonicalJson, hex } from "./canonical.js";

export const KEYFILE_FORMAT = "tenderhall-keys/1";
export const KDF_NAME = "PBKDF2-SHA256";
export const DEFAULT_ITERATIONS = 600000;
const DB_NAME = "tenderhall-keys";
const STORE = "keys";
const ECDSA = { name: "ECDSA", namedCurve: "P-256" };
const ECDH = { name: "ECDH", namedCurve: "P-256" };
const AAD = new TextEncoder().encode(KEYFILE_FORMAT);
const subtle = () => globalThis.crypto.subtle;

export class KeyFileError extends Error {
  constructor(message) { super(message); this.name = "KeyFileError"; }
}
export class WrongPassphrase extends KeyFileError {
  constructor() { super("wrong passphrase, or the key file was altered"); this.name = "WrongPassphrase"; }
}

/** Fresh extractable key pairs: {sign: CryptoKeyPair (ECDSA), decrypt: CryptoKeyPair (ECDH)}. */
export async function generateKeys() {
  const sign = await subtle().generateKey(ECDSA, true, ["sign", "verify"]);
  const decrypt = await subtle().generateKey(ECDH, true, ["deriveBits"]);
  return { sign, decrypt };
}

/** PKCS#8 DER bytes of an extractable private key. */
export async function exportPkcs8(privateKey) {
  return new Uint8Array(await subtle().exportKey("pkcs8", privateKey));
}

/** b64url(SPKI DER) of a public key: how public keys travel in JSON. */
export async function exportSpkiB64url(publicKey) {
  return b64url(new Uint8Array(await subtle().exportKey("spki", publicKey)));
}

/** Key id: lowercase hex SHA-256 of SPKI DER; accepts a public CryptoKey or the SPKI bytes. */
export async function keyId(publicKeyOrSpki) {
  const spki = publicKeyOrSpki instanceof CryptoKey
    ? await subtle().exportKey("spki", publicKeyOrSpki) : publicKeyOrSpki;
  return hex(new Uint8Array(await subtle().digest("SHA-256", spki)));
}

async function deriveAesKey(passphrase, salt, iterations) {
  const base = await subtle().importKey("raw", new TextEncoder().encode(passphrase), "PBKDF2", false, ["deriveKey"]);
  return subtle().deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    base, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"],
  );
}

/**
 * Encrypt two PKCS#8 private keys under a passphrase; returns the key file as UTF-8 bytes.
 * `salt` (16 bytes) and `nonce` (12 bytes) are for test vectors only.
 */
export async function encryptKeyfile(owner, signPkcs8, decryptPkcs8, passphrase,
  { iterations = DEFAULT_ITERATIONS, salt, nonce } = {}) {
  if (!passphrase) throw new KeyFileError("passphrase must not be empty");
  salt = salt ?? crypto.getRandomValues(new Uint8Array(16));
  nonce = nonce ?? crypto.getRandomValues(new Uint8Array(12));
  const payload = canonicalJson({ owner, sign: b64url(signPkcs8), decrypt: b64url(decryptPkcs8) });
  const key = await deriveAesKey(passphrase, salt, iterations);
  const ciphertext = new Uint8Array(await subtle().encrypt({ name: "AES-GCM", iv: nonce, additionalData: AAD }, key, payload));
  return canonicalJson({
    format: KEYFILE_FORMAT,
    kdf: { name: KDF_NAME, iterations, salt: b64url(salt) },
    nonce: b64url(nonce),
    ciphertext: b64url(ciphertext),
  });
}

/**
 * Open a key file (bytes or string); returns {owner, sign: PKCS#8 bytes, decrypt: PKCS#8 bytes}.
 * Throws WrongPassphrase if it does not authenticate, KeyFileError if malformed.
 */
export async function decryptKeyfile(data, passphrase) {
  let outer;
  try {
    outer = JSON.parse(typeof data === "string" ? data : new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch {
    throw new KeyFileError("key file is not JSON");
  }
  if (!outer || outer.format !== KEYFILE_FORMAT) throw new KeyFileError(`key file format is not ${KEYFILE_FORMAT}`);
  const kdf = outer.kdf;
  if (!kdf || kdf.name !== KDF_NAME || !Number.isSafeInteger(kdf.iterations) || kdf.iterations < 1 || kdf.iterations > 10000000) {
    throw new KeyFileError("key file kdf must be PBKDF2-SHA256 with 1 to 10 000 000 iterations");
  }
  let salt, nonce, ciphertext;
  try {
    salt = b64urlDecode(kdf.salt);
    nonce = b64urlDecode(outer.nonce);
    ciphertext = b64urlDecode(outer.ciphertext);
  } catch {
    throw new KeyFileError("key file field is not base64url");
  }
  if (salt.length !== 16 || nonce.length !== 12) throw new KeyFileError("key file salt must be 16 bytes and nonce 12");
  const key = await deriveAesKey(passphrase, salt, kdf.iterations);
  let payload;
  try {
    payload = await subtle().decrypt({ name: "AES-GCM", iv: nonce, additionalData: AAD }, key, ciphertext);
  } catch {
    throw new WrongPassphrase();
  }
  const inner = JSON.parse(new TextDecoder().decode(payload));
  if (typeof inner.owner !== "string" || typeof inner.sign !== "string" || typeof inner.decrypt !== "string") {
    throw new KeyFileError("decrypted key payload must hold owner, sign and decrypt");
  }
  return { owner: inner.owner, sign: b64urlDecode(inner.sign), decrypt: b64urlDecode(inner.decrypt) };
}

async function publicFromPkcs8(pkcs8, algorithm, usages) {
  // A non-extractable private key cannot yield its public half, so read x, y from a
  // short-lived extractable import of the same bytes.
  const temp = await subtle().importKey("pkcs8", pkcs8, algorithm, true, algorithm.name === "ECDSA" ? ["sign"] : ["deriveBits"]);
  const { kty, crv, x, y } = await subtle().exportKey("jwk", temp);
  return subtle().importKey("jwk", { kty, crv, x, y, ext: true }, algorithm, true, usages);
}

/**
 * Import PKCS#8 bytes as non-extractable private keys with their public keys:
 * {owner, sign: {privateKey, publicKey}, decrypt: {privateKey, publicKey}}.
 */
export async function importKeys(owner, signPkcs8, decryptPkcs8) {
  return {
    owner,
    sign: {
      privateKey: await subtle().importKey("pkcs8", signPkcs8, ECDSA, false, ["sign"]),
      publicKey: await publicFromPkcs8(signPkcs8, ECDSA, ["verify"]),
    },
    decrypt: {
      privateKey: await subtle().importKey("pkcs8", decryptPkcs8, ECDH, false, ["deriveBits"]),
      publicKey: await publicFromPkcs8(decryptPkcs8, ECDH, []),
    },
  };
}

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "owner" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function withStore(mode, action) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = action(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** Store an owner's keys (as returned by importKeys) in IndexedDB, replacing any earlier ones. */
export async function storeKeys(keys) {
  await withStore("readwrite", (store) => store.put(keys));
}

/** The owner's keys from IndexedDB, or null. */
export async function loadKeys(owner) {
  return (await withStore("readonly", (store) => store.get(owner))) ?? null;
}

/** Remove the owner's keys from this browser. */
export async function deleteKeys(owner) {
  await withStore("readwrite", (store) => store.delete(owner));
}

/**
 * Make a new identity: generate both key pairs, write the backup, keep only non-extractable
 * copies. Returns {backup: Uint8Array (the key file to save), keys}. The user must save the
 * backup: it is the only way to recover the keys on another machine.
 */
export async function createKeys(owner, passphrase, { iterations = DEFAULT_ITERATIONS } = {}) {
  const fresh = await generateKeys();
  const signPkcs8 = await exportPkcs8(fresh.sign.privateKey);
  const decryptPkcs8 = await exportPkcs8(fresh.decrypt.privateKey);
  const backup = await encryptKeyfile(owner, signPkcs8, decryptPkcs8, passphrase, { iterations });
  const keys = await importKeys(owner, signPkcs8, decryptPkcs8);
  signPkcs8.fill(0);
  decryptPkcs8.fill(0);
  await storeKeys(keys);
  return { backup, keys };
}

/** Restore keys from a backup into this browser (non-extractable); returns the keys. */
export async function restoreBackup(backup, passphrase) {
  const opened = await decryptKeyfile(backup, passphrase);
  const keys = await importKeys(opened.owner, opened.sign, opened.decrypt);
  opened.sign.fill(0);
  opened.decrypt.fill(0);
  await storeKeys(keys);
  return keys;
}
