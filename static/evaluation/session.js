// The remote evaluation session page (远程异地评标): experts, room staff, the main venue and
// supervisors, each seeing the snapshot of GET /api/sessions/{id} for themselves.
//
// The page holds no evaluation state of its own: it renders the latest snapshot and re-reads
// it after every event of the session's websocket (/ws/sessions/{id}), which it resumes after
// the last event id it saw. Acts go over that socket while it is open (the HTTP act endpoint
// otherwise), and so does the media signalling (session_media.js). The expert's signing key
// is made here at sign-in with WebCrypto, non-extractable, and kept in IndexedDB for this
// session, so a reload or a rejoin can still sign the declaration and the report.

import { b64url, hex } from "../tenderhall/canonical.js";
import { exportSpkiB64url, loadKeys, storeKeys } from "../tenderhall/keys.js";
import { debouncedRefresher } from "../trading/hall_live.js";
import { el, keepInputs } from "../trading/hall_render.js";
import { fill } from "../trading/hall_format.js";
import { post, showError } from "./commitment.js";
import { RoomMedia } from "./session_media.js";
import {
  bidderRows, canDraftClarification, clarificationItems, committeeRows, faultText, markItems, myPartText, names,
  seesRecordings, segmentItems, stepPanel, stepTrack, timelineItem, ENDED,
} from "./session_render.js";

const $ = (id) => document.getElementById(id);
const root = $("session");
const S = JSON.parse($("session-strings").textContent);
const sessionId = root.dataset.sessionId;
const zone = root.dataset.zone || undefined;
const api = `/api/sessions/${sessionId}`;
// Settings.ice_servers(): RTCIceServer dicts (empty on a LAN).
const iceServers = JSON.parse(root.dataset.iceServers || "[]");
const ECDSA = { name: "ECDSA", namedCurve: "P-256" };
const FINAL_CLOSES = { 4400: "refused", 4401: "loggedOut", 4403: "refused", 4404: "refused" };
const BACKOFF_MS = [1000, 2000, 4000, 8000, 16000, 30000];
const REQUEST_TIMEOUT_MS = 30000;

const state = {
  snap: JSON.parse($("session-data").textContent),
  lastEventId: 0,
  winners: {}, // election round -> elected member, from the session.voted events
  socket: null,
  loadFailed: false,
};

class ActFailure extends Error {
  constructor(error, status) {
    super(`${error?.message ?? `HTTP ${status}`} (${error?.code ?? status})`);
    this.code = error?.code;
    this.status = status;
  }
}

// ---------------------------------------------------------------------------- the socket

/** The session's websocket: events in, {id, type, ...} requests out with their replies; resumes after the last event. */
class SessionSocket {
  constructor(room) {
    this.room = room; // the room the server counted this socket for (presence), fixed at connect
    this.pending = new Map();
    this.nextId = 1;
    this.failures = 0;
    this.stopped = false;
    this.open();
  }

  get live() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  open() {
    showConnection("connecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.ws = new WebSocket(`${scheme}//${location.host}/ws/sessions/${sessionId}?after=${state.lastEventId}`);
    this.ws.addEventListener("open", () => {
      this.failures = 0;
      showConnection("live");
      media.reconnected();
    });
    this.ws.addEventListener("message", (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      if (data.type === "reply") this.settle(data);
      else onEvent(data);
    });
    this.ws.addEventListener("close", (closed) => this.closed(closed));
  }

  closed(closed) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new ActFailure({ code: "disconnected", message: S.offline }, 0));
    }
    this.pending.clear();
    if (this.stopped) return; // replaced by a new socket, which owns the media's state now
    media.setLive(false);
    const final = FINAL_CLOSES[closed.code];
    if (final) return showConnection(final, { reason: closed.reason || String(closed.code) });
    const wait = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    showConnection("retrying", { seconds: Math.round(wait / 1000) });
    setTimeout(() => this.stopped || this.open(), wait);
  }

  settle(reply) {
    const waiting = this.pending.get(reply.id);
    if (!waiting) return;
    this.pending.delete(reply.id);
    clearTimeout(waiting.timer);
    if (reply.ok) waiting.resolve(reply.result);
    else waiting.reject(new ActFailure(reply.error, reply.status));
  }

  /** Send {type, ...}; resolves to the reply's result, rejects with ActFailure. */
  request(message) {
    if (!this.live) return Promise.reject(new ActFailure({ code: "disconnected", message: S.offline }, 0));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ActFailure({ code: "timeout", message: S.offline }, 0));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, ...message }));
    });
  }

  stop() {
    this.stopped = true;
    this.ws.close(1000, "reconnecting");
  }
}

function showConnection(status, detail = {}) {
  const box = $("session-connection");
  box.dataset.state = status;
  box.textContent = fill(S.connection[status] ?? status, detail);
}

// The server counts a room as up while a socket opened by one of its terminals is held, so a
// socket opened before its holder had a room (an expert before sign-in) is opened again.
function ensureSocket() {
  const room = state.snap.me.room;
  if (state.socket && state.socket.room !== room) {
    state.socket.stop();
    state.socket = null;
  }
  if (!state.socket) state.socket = new SessionSocket(room);
}

function onEvent(event) {
  state.lastEventId = Math.max(state.lastEventId, event.id ?? 0);
  if (event.kind === "session.voted" && event.payload?.winner) state.winners[event.payload.round] = event.payload.winner;
  const timeline = $("timeline");
  timeline.querySelector(".empty")?.remove();
  timeline.prepend(timelineItem(event, view()));
  refresher.request();
}

// ---------------------------------------------------------------------------- acts

function act(name, body = {}) {
  return state.socket?.live ? state.socket.request({ type: "act", act: name, body }) : post(`${api}/acts/${name}`, body);
}

function hideMessages() {
  $("action-error").hidden = true;
  $("session-notice").hidden = true;
}

function notice(text) {
  $("session-notice").textContent = text;
  $("session-notice").hidden = false;
}

/** Run `work` with `control`'s buttons disabled; show the server's refusal in the alert region. */
async function busy(control, work) {
  const buttons = control.matches("button") ? [control] : [...control.querySelectorAll("button")];
  buttons.forEach((b) => { b.disabled = true; });
  hideMessages();
  try {
    await work();
  } catch (error) {
    showError(error?.message ?? String(error));
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    refresher.request(0);
  }
}

const keyOwner = () => `session:${sessionId}:${state.snap.me.id}`;

/** A new session key pair in this browser (private half non-extractable); returns the SPKI, base64url. */
async function newSessionKey() {
  const pair = await crypto.subtle.generateKey(ECDSA, false, ["sign", "verify"]);
  await storeKeys({ owner: keyOwner(), sign: pair });
  return exportSpkiB64url(pair.publicKey);
}

/** b64url raw r||s ECDSA P-256/SHA-256 signature of the UTF-8 `text` with this session's key. */
async function signText(text) {
  const keys = await loadKeys(keyOwner());
  if (!keys) throw new Error(S.noKey);
  const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.sign.privateKey, new TextEncoder().encode(text));
  return b64url(new Uint8Array(signature));
}

async function sha256Hex(text) {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))));
}

// evaluation/session_state.py: declaration_message and report_signature_message, byte for byte.
async function declarationMessage(conflict, statement) {
  return `tenderhall conflict declaration\nsession ${sessionId}\nconflict ${conflict ? "yes" : "no"}\n`
    + `statement-sha256 ${await sha256Hex(statement)}\n`;
}

const reportMessage = (sha256) => `tenderhall evaluation report\nsession ${sessionId}\nsha256 ${sha256}\n`;

// "v:<bidder>:<criterion>" (a bidder id is a UUID; a criterion id is the scheme's own).
function cellKey(name) {
  const [, bidder, ...criterion] = name.split(":");
  return [bidder, criterion.join(":")];
}

const FORMS = {
  "sign-in": async (form) => {
    const publicKey = await newSessionKey();
    await act("sign-in", { room_id: form.room.value, public_key: publicKey });
  },
  declare: async (form) => {
    const conflict = form.conflict.value === "yes";
    const statement = form.statement.value.trim(); // the server keeps (and hashes) the trimmed text
    const signature = await signText(await declarationMessage(conflict, statement));
    await act("declare", { conflict, statement, signature });
  },
  vote: (form) => act("vote", { candidate: form.candidate.value }),
  review: (form) => act("review", {
    verdicts: [...form.querySelectorAll("select[data-verdict]")].map((select) => {
      const [bidder, criterion] = cellKey(select.name);
      const reason = form.querySelector(`input[data-reason="${select.dataset.verdict}"]`).value.trim();
      return { bidder, criterion, passed: select.value === "pass", reason };
    }),
  }),
  score: (form) => act("score", {
    scores: [...form.querySelectorAll("input[data-score]")].map((input) => {
      const [bidder, criterion] = cellKey(input.name);
      return { bidder, criterion, score: input.value.trim() };
    }),
  }),
  explain: (form) => act("explain-deviation", {
    bidder: form.dataset.bidder, criterion: form.dataset.criterion, reason: form.reason.value.trim(),
  }),
  "sign-report": async (form) => {
    const signature = await signText(reportMessage(state.snap.report_sha256));
    const dissent = form.dissent.value.trim();
    await act("sign-report", dissent ? { signature, dissent } : { signature });
  },
  clarify: async (form) => {
    await act("clarifications", { bidder: form.bidder.value, question: form.question.value.trim() });
    form.question.value = "";
    notice(S.saved);
  },
  mark: async (form) => {
    await act("mark", { label: form.label.value.trim() || S.markDefault });
    form.label.value = "";
  },
  approve: (form) => post(`${api}/clarifications/${form.dataset.id}/review`,
    { decision: "approve", hours: Number(form.hours.value) }),
};

const BUTTONS = {
  advance: () => act("advance"),
  "open-sign-in": () => act("open-sign-in"),
  "confirm-room": (b) => act("confirm-room", { room_id: b.dataset.room }),
  "release-member": (b) => act("release-member", { user_id: b.dataset.user }),
  decision: (b) => act("decision", { choice: b.dataset.choice }),
  "reject-clarification": (b) => post(`${api}/clarifications/${b.dataset.id}/review`, { decision: "reject" }),
};

root.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-form]");
  if (!form || !FORMS[form.dataset.form]) return;
  event.preventDefault();
  busy(form, () => FORMS[form.dataset.form](form));
});

root.addEventListener("click", (event) => {
  const control = event.target.closest("button[data-act]");
  if (!control || !BUTTONS[control.dataset.act]) return;
  busy(control, () => BUTTONS[control.dataset.act](control));
});

// A fail needs its reason: the browser checks it before the form is sent.
root.addEventListener("change", (event) => {
  const select = event.target.closest("select[data-verdict]");
  if (!select) return;
  const reason = root.querySelector(`input[data-reason="${select.dataset.verdict}"]`);
  if (reason) reason.required = select.value === "fail";
});

$("sound-on").addEventListener("click", () => {
  media.soundOn();
  $("sound-on").hidden = true;
});

// ---------------------------------------------------------------------------- render

function view() {
  return { snap: state.snap, S, zone, winners: state.winners, names: names(state.snap) };
}

function fillOptions(select, options) {
  const wanted = options.map(([value, text]) => `${value}\u0000${text}`).join("\u0001");
  if (select.dataset.options === wanted) return;
  const chosen = select.value;
  select.replaceChildren(...options.map(([value, text]) => new Option(text, value, false, value === chosen)));
  select.dataset.options = wanted;
}

function render() {
  const v = view();
  const { snap } = v;
  root.dataset.step = snap.step;
  root.dataset.kind = snap.me.kind;
  stepTrack($("step-track"), v);
  $("step-name").textContent = S.steps[snap.step] ?? snap.step;
  $("step-todo").textContent = S.todo[snap.step] ?? "";
  $("my-part").textContent = myPartText(v);
  const fault = faultText(v);
  $("fault").textContent = fault;
  $("fault").hidden = !fault;
  keepInputs($("step-panel"), () => stepPanel(v));
  $("bidders").tBodies[0].replaceChildren(...bidderRows(v));
  $("committee").tBodies[0].replaceChildren(...committeeRows(v));
  keepInputs($("clarifications"), () => clarificationItems(v));
  const clarify = $("clarify-form");
  clarify.hidden = !canDraftClarification(v);
  fillOptions(clarify.bidder, snap.bidders.map((b) => [b.id, b.name]));
  $("mark-form").hidden = ENDED.includes(snap.step) || (snap.me.kind === "expert" && !snap.me.member);
  $("marks").replaceChildren(...markItems(v));
  $("recordings-card").hidden = !seesRecordings(v);
  if (seesRecordings(v)) syncSegments(v);
  if (!$("timeline").children.length) $("timeline").append(el("li", { class: "empty", text: S.noTimeline }));
  ensureSocket();
  media.update(snap, Boolean(state.socket?.live));
}

// Segments only grow: keep the <video> elements already there (one may be playing).
function syncSegments(v) {
  const list = $("recordings");
  const items = segmentItems(v);
  if (!v.snap.segments.length || list.querySelector(".empty")) {
    list.replaceChildren(...items);
    return;
  }
  const shown = new Set([...list.querySelectorAll("[data-segment]")].map((li) => li.dataset.segment));
  for (const item of items) if (!shown.has(item.dataset.segment)) list.append(item);
}

async function load() {
  try {
    const response = await fetch(api, { cache: "no-store", headers: { Accept: "application/json" } });
    const data = await response.json().catch(() => ({}));
    if (!response.ok || !data.session) throw new ActFailure(data.error, response.status);
    state.snap = data.session;
  } catch (error) {
    state.loadFailed = true;
    showError(fill(S.failedToLoad, { reason: error.message }));
    return;
  }
  if (state.loadFailed) {
    state.loadFailed = false;
    $("action-error").hidden = true; // the page is current again
  }
  render();
}

// Everyone in the session re-reads after each event: spread the reads over a moment.
const refresher = debouncedRefresher(load, 150 + Math.random() * 350);

const media = new RoomMedia({
  container: $("rooms"), S, zone, iceServers,
  signal: (message) => state.socket.request(message),
  onSoundBlocked: () => { $("sound-on").hidden = false; },
});

render();
