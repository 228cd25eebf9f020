// The "My keys" page: make keys in this browser, save the backup once, register the public
// halves with the server; or restore keys from a backup file. Private keys never leave the
// browser except inside the passphrase-encrypted backup.

import {
  createKeys, exportSpkiB64url, keyId, loadKeys, restoreBackup, WrongPassphrase,
} from "./keys.js";

const section = document.getElementById("active-keys");
const owner = section.dataset.owner;
const activeSignId = section.dataset.signKeyId;
const strings = document.getElementById("keys-strings").dataset;
const messageBox = document.getElementById("keys-message");
const noticeBox = document.getElementById("keys-notice");
const csrfToken = document.querySelector('meta[name="csrf-token"]').content;

function show(box, text) {
  messageBox.hidden = true;
  noticeBox.hidden = true;
  box.textContent = text;
  box.hidden = false;
}
const fail = (text) => show(messageBox, text);
const notice = (text) => show(noticeBox, text);

function download(bytesOrText, filename) {
  const blob = new Blob([bytesOrText], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function register(keys) {
  const body = {
    sign_spki: await exportSpkiB64url(keys.sign.publicKey),
    decrypt_spki: await exportSpkiB64url(keys.decrypt.publicKey),
  };
  const response = await fetch("/api/keys", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    let text = `${response.status}`;
    try { text = (await response.json()).error.message; } catch { /* not JSON */ }
    throw new Error(text);
  }
  return response.json();
}

async function showLocalState() {
  const status = document.getElementById("local-status");
  const registerLocal = document.getElementById("register-local");
  const keys = await loadKeys(owner);
  if (!keys) {
    status.textContent = strings.localNone;
    registerLocal.hidden = true;
    return;
  }
  const localId = await keyId(keys.sign.publicKey);
  const matches = localId === activeSignId;
  status.textContent = matches ? strings.localMatch : strings.localOther;
  // Keys made here whose registration failed (or restored older keys) can be registered again.
  registerLocal.hidden = matches;
}

document.getElementById("generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const passphrase = form.passphrase.value;
  if (passphrase !== form.passphrase2.value) return fail(strings.passphraseMismatch);
  const button = form.querySelector("button");
  button.disabled = true;
  notice(strings.working);
  try {
    const { backup, keys } = await createKeys(owner, passphrase);
    const signId = await keyId(keys.sign.publicKey);
    // The backup is offered exactly once, now: the browser keeps only non-extractable keys.
    download(backup, `tenderhall-keys-${signId.slice(0, 12)}.json`);
    form.reset();
    await register(keys);
    notice(strings.registered);
    setTimeout(() => window.location.reload(), 1500);
  } catch (error) {
    fail(`${strings.failed} ${error.message}`);
    await showLocalState();
  } finally {
    button.disabled = false;
  }
});

document.getElementById("register-local-button").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const keys = await loadKeys(owner);
    if (!keys) return fail(strings.localNone);
    await register(keys);
    notice(strings.registered);
    window.location.reload();
  } catch (error) {
    fail(`${strings.failed} ${error.message}`);
  } finally {
    button.disabled = false;
  }
});

document.getElementById("restore-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const file = form.backup.files[0];
  if (!file) return;
  try {
    const keys = await restoreBackup(new Uint8Array(await file.arrayBuffer()), form.passphrase.value);
    form.reset();
    if (keys.owner !== owner) {
      // A backup of another owner's keys is kept under that owner; say so rather than pretend.
      fail(`${strings.localOther} (${keys.owner})`);
      return;
    }
    notice(strings.restored);
    await showLocalState();
  } catch (error) {
    fail(error instanceof WrongPassphrase ? strings.wrongPassphrase : `${strings.failed} ${error.message}`);
  }
});

if (!globalThis.crypto?.subtle || !globalThis.indexedDB) {
  fail(strings.unsupported);
  for (const button of document.querySelectorAll("form button")) button.disabled = true;
} else {
  showLocalState().catch((error) => fail(`${strings.failed} ${error.message}`));
}
