// Test-only glue: exposes the real browser modules to Playwright as window.th with JSON-friendly
// arguments (binary as b64url). Nothing here is used by the application.

import { b64url, b64urlDecode, canonicalJsonText, hex } from "/static/tenderhall/canonical.js";
import * as keys from "/static/tenderhall/keys.js";
import * as sealing from "/static/trading/sealing.js";

async function sha256Hex(blob) {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer())));
}

function toFiles(files) {
  // Alternate Blob and Uint8Array inputs so both reading paths are exercised.
  return files.map((f, i) => {
    const bytes = b64urlDecode(f.data);
    return { name: f.name, data: i % 2 === 0 ? new Blob([bytes]) : bytes };
  });
}

window.th = {
  canonical: (value) => canonicalJsonText(value),

  /** New keys in this browser (backup + non-extractable copies in IndexedDB). */
  async createKeys(owner, passphrase, iterations) {
    const { backup, keys: made } = await keys.createKeys(owner, passphrase, { iterations });
    const loaded = await keys.loadKeys(owner);
    return {
      backup: new TextDecoder().decode(backup),
      signSpki: await keys.exportSpkiB64url(loaded.sign.publicKey),
      decryptSpki: await keys.exportSpkiB64url(loaded.decrypt.publicKey),
      signKeyId: await keys.keyId(made.sign.publicKey),
      extractable: [loaded.sign.privateKey.extractable, loaded.decrypt.privateKey.extractable],
    };
  },

  /** Restore a backup into IndexedDB and describe what was stored. */
  async restore(backup, passphrase) {
    const restored = await keys.restoreBackup(new TextEncoder().encode(backup), passphrase);
    const loaded = await keys.loadKeys(restored.owner);
    return {
      owner: loaded.owner,
      signSpki: await keys.exportSpkiB64url(loaded.sign.publicKey),
      decryptSpki: await keys.exportSpkiB64url(loaded.decrypt.publicKey),
      extractable: [loaded.sign.privateKey.extractable, loaded.decrypt.privateKey.extractable],
    };
  },

  async wrongPassphrase(backup, passphrase) {
    try {
      await keys.decryptKeyfile(backup, passphrase);
      return "opened";
    } catch (error) {
      return error.name;
    }
  },

  async encryptKeyfileVector(v, signPkcs8, decryptPkcs8) {
    const salt = Uint8Array.from(v.salt.match(/../g), (h) => parseInt(h, 16));
    const nonce = Uint8Array.from(v.nonce.match(/../g), (h) => parseInt(h, 16));
    const file = await keys.encryptKeyfile(v.owner, b64urlDecode(signPkcs8), b64urlDecode(decryptPkcs8), v.passphrase,
      { iterations: v.iterations, salt, nonce });
    return new TextDecoder().decode(file);
  },

  /** Seal with the owner's stored keys; returns the submission and the ciphertext. */
  async seal(owner, args) {
    const stored = await keys.loadKeys(owner);
    const progress = [];
    const sealed = await sealing.sealBid({
      ...args,
      files: toFiles(args.files),
      contentKey: args.contentKey ? b64urlDecode(args.contentKey) : undefined,
      signingKey: stored.sign,
      bidderPublicKeySpki: await keys.exportSpkiB64url(stored.decrypt.publicKey),
      onProgress: (p) => progress.push(p.phase),
    });
    return {
      manifest: sealed.manifest,
      signature: sealed.signature,
      ciphertext: b64url(new Uint8Array(await sealed.ciphertext.arrayBuffer())),
      verifies: await sealing.verifyManifest(sealed.manifest, sealed.signature, stored.sign.publicKey),
      progressPhases: [...new Set(progress)],
    };
  },

  /** Open a bid with the owner's stored, non-extractable ECDH key. */
  async open(owner, manifest, ciphertextB64) {
    const stored = await keys.loadKeys(owner);
    const contentKey = await sealing.unwrapBidderKey(manifest.bidder_wrap.enc, stored.decrypt);
    const opened = await sealing.openBid(new Blob([b64urlDecode(ciphertextB64)]), contentKey, manifest);
    const files = [];
    for (const f of opened.files) files.push({ name: f.name, size: f.size, sha256: f.sha256, actual: await sha256Hex(f.data) });
    return { summary: opened.summary, files, extractable: stored.decrypt.privateKey.extractable };
  },

  /** Open with custodian shares: each custodian's backup is restored, then shares combined. */
  async openWithCustodians(custodians, manifest, ciphertextB64) {
    const shares = [];
    for (const c of custodians) {
      const restored = await keys.restoreBackup(new TextEncoder().encode(c.backup), c.passphrase);
      const id = await keys.keyId(restored.decrypt.publicKey);
      const wrap = manifest.custodian_wraps.find((w) => w.custodian === id);
      shares.push(await sealing.unwrapShare(wrap.enc, restored.decrypt));
    }
    const contentKey = await sealing.combineShares(shares);
    const opened = await sealing.openBid(b64urlDecode(ciphertextB64), contentKey, manifest);
    return { summary: opened.summary, files: opened.files.map((f) => ({ name: f.name, sha256: f.sha256 })) };
  },

  /** Flip one ciphertext byte and report the error. */
  async openTampered(owner, manifest, ciphertextB64, position) {
    const stored = await keys.loadKeys(owner);
    const contentKey = await sealing.unwrapBidderKey(manifest.bidder_wrap.enc, stored.decrypt);
    const bytes = b64urlDecode(ciphertextB64);
    bytes[position] ^= 1;
    try {
      await sealing.openBid(bytes, contentKey, manifest);
      return "opened";
    } catch (error) {
      return `${error.name}:${error.index ?? ""}`;
    }
  },
};

document.getElementById("status").textContent = "ready";
window.thReady = true;
