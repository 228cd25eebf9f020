// The draw's committed secret, made in the browser: 32 random bytes, published only as
// SHA-256("tenderhall-draw-commitment/1" ‖ secret) (evaluation/draw.py `commitment`).
const LABEL = new TextEncoder().encode("tenderhall-draw-commitment/1");

export function b64url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export async function makeSecret() {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const message = new Uint8Array(LABEL.length + secret.length);
  message.set(LABEL);
  message.set(secret, LABEL.length);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", message));
  const commitment = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return { secret: b64url(secret), commitment };
}

export function showSecret(secret, drawId) {
  const box = document.getElementById("secret-box");
  document.getElementById("secret-text").textContent = secret;
  const download = document.getElementById("secret-download");
  if (download) download.href = URL.createObjectURL(new Blob([secret + "\n"], { type: "text/plain" }));
  const go = document.getElementById("go-draw");
  if (go) go.href = `/draws/${drawId}`;
  box.hidden = false;
}

const csrf = document.querySelector('meta[name="csrf-token"]').content;

export async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    const detail = error.detail && error.detail.funnel ? describeFunnel(error.detail.funnel) : "";
    throw new Error((error.message || `HTTP ${response.status}`) + detail);
  }
  return data;
}

function describeFunnel(funnel) {
  return Object.entries(funnel).map(([code, steps]) =>
    `\n${code}: ` + steps.map((s) => `${s.rule} → ${s.left}`).join("; ")).join("");
}

export function showError(message) {
  const box = document.getElementById("form-error") || document.getElementById("action-error");
  box.textContent = message;
  box.style.whiteSpace = "pre-line";
  box.hidden = false;
}
