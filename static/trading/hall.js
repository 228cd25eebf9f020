// The online opening hall (不见面开标大厅): one page for the host, the bidders, the custodians
// and observers, driven by the snapshot of GET /api/tenders/{id}/hall (docs/hall.md).
//
// The page holds no opening state of its own: it renders the latest snapshot, re-reads it
// whenever an event arrives on the tender's topic (debounced), and shows only the actions the
// snapshot lists for this viewer. The countdown runs on the server's clock (the offset is
// measured at each fetch). Keys stay in this browser: see hall_crypto.js.

import { countdown, fill, localToIso, when } from "./hall_format.js";
import { debouncedRefresher, followTopic } from "./hall_live.js";
import { HallKeyError, keysState, openShares, recoverContentKey, signRecord } from "./hall_crypto.js";
import {
  bidRows, bidderRows, chatItems, confirmedByMe, keepInputs, lotRows, myPendingBids, myShareBids, objectionItems,
  readoutRows, recordNodes, renderTrack, timelineItems, todoText, viewerRole,
} from "./hall_render.js";

const $ = (id) => document.getElementById(id);
const root = $("hall");
const S = JSON.parse($("hall-strings").textContent);
const FIELDS = JSON.parse($("hall-fields").textContent);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const tenderId = root.dataset.tenderId;
const owner = root.dataset.owner;
const zone = root.dataset.zone || undefined;
const api = `/api/tenders/${tenderId}/hall`;
// Settings.ice_servers(): RTCIceServer dicts, TURN ones with their credentials.
const iceServers = JSON.parse(root.dataset.iceServers || "[]");
// A snapshot action is named after its POST path with '_' for '-'; these have their own paths.
const ACTION_PATHS = { read_all: "read-next" };
const EXPIRY_REFRESHES = 6; // after a countdown ends: at +0.3 s, then 1, 2, 4, 8, 16 s later

const state = {
  hall: null,
  offset: 0, // server clock minus this browser's clock, in ms
  loadFailed: false,
  lastEventId: 0,
  notes: new Map(), // bid id -> {text, kind}: what happened when this browser tried to decrypt it
  busy: new Set(),
  expired: null, // {target, count, at}: refreshes made (and when the next is due) after a countdown ended
  keys: null,
  live: null,
  video: { module: undefined, watching: null, publishing: null, failed: false },
};

class ApiFailure extends Error {
  constructor(code, message, status) {
    super(`${message} (${code})`);
    this.code = code;
    this.status = status;
  }
}

function describe(error) {
  if (error instanceof HallKeyError) return fill(S[error.reason] ?? error.message, error.detail);
  return error?.message ?? String(error);
}

function showError(error) {
  $("hall-error").textContent = typeof error === "string" ? error : describe(error);
  $("hall-error").hidden = false;
}

function showNotice(text) {
  $("hall-notice").textContent = text;
  $("hall-notice").hidden = false;
}

function clearMessages() {
  $("hall-error").hidden = true;
  $("hall-notice").hidden = true;
}

const can = (action) => Boolean(state.hall && state.hall.actions.includes(action));

function view() {
  return { hall: state.hall, S, fields: FIELDS, zone, can, notes: state.notes, busy: state.busy };
}

// ---------------------------------------------------------------------------- server

async function post(path, body = {}) {
  const response = await fetch(`${api}/${path}`, {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  refresher.request(0);
  if (!response.ok) {
    const code = data.error?.code ?? `http_${response.status}`;
    throw new ApiFailure(code, data.error?.message ?? `HTTP ${response.status}`, response.status);
  }
  return data;
}

async function load() {
  const sent = Date.now();
  let response;
  try {
    response = await fetch(api, { cache: "no-store", headers: { Accept: "application/json" } });
  } catch (error) {
    state.loadFailed = true;
    showError(fill(S.failedToLoad, { reason: error.message }));
    return;
  }
  const received = Date.now();
  const data = await response.json().catch(() => ({}));
  if (!response.ok || !data.hall) {
    state.loadFailed = true;
    const reason = data.error ? `${data.error.message} (${data.error.code})` : `HTTP ${response.status}`;
    showError(fill(S.failedToLoad, { reason }));
    return;
  }
  if (state.loadFailed) {
    state.loadFailed = false;
    $("hall-error").hidden = true; // the page is current again
  }
  const hall = data.hall;
  // The server read its clock somewhere between sending and receiving: take the midpoint.
  state.offset = Date.parse(hall.server_time) - (sent + received) / 2;
  state.lastEventId = Math.max(state.lastEventId, hall.last_event_id ?? 0);
  state.hall = hall;
  render();
  if (!state.live) {
    state.live = followTopic({
      topic: `tender:${tenderId}`,
      lastId: () => state.lastEventId,
      onEvent: (event) => {
        state.lastEventId = Math.max(state.lastEventId, event.id ?? 0);
        // Every page in the hall re-reads the snapshot after an event; spreading the audience's
        // reads over a second keeps a hall of hundreds from asking the server all at once.
        refresher.request(state.hall?.me?.host ? 150 : 150 + Math.random() * 850);
      },
      onState: showConnection,
    });
  }
}

const refresher = debouncedRefresher(load, 150);

function showConnection(status, detail = {}) {
  const box = $("hall-connection");
  box.dataset.state = status;
  box.textContent = fill(S.connection[status] ?? status, detail);
  // Back after a gap: whatever happened meanwhile is in the snapshot.
  if (status === "live") refresher.request(0);
}

// ---------------------------------------------------------------------------- rendering

function render() {
  const hall = state.hall;
  const v = view();
  const role = viewerRole(hall);
  if (root.dataset.step !== hall.step) $("hall-notice").hidden = true; // a notice is about the step it was given in
  root.dataset.step = hall.step;
  root.dataset.role = role;
  renderTrack($("step-track"), hall.step);
  for (const item of $("step-track").querySelectorAll("li[data-step]")) item.textContent = S.steps[item.dataset.step];
  $("step-name").textContent = S.steps[hall.step] ?? hall.step;
  $("step-todo").textContent = todoText(v);
  $("bids-received").textContent = hall.bids_received ?? S.none;
  $("signed-in-count").textContent = hall.signed_in_count ?? S.none;
  $("resumption-at").textContent = hall.resumption_at ? when(hall.resumption_at, zone) : S.none;
  $("failure-reason").hidden = !hall.failure_reason;
  $("failure-reason").textContent = hall.failure_reason ?? "";

  $("sign-in").hidden = !can("sign_in");
  $("decrypt-mine").hidden = !(can("decrypt") && myPendingBids(hall).length);
  $("release-shares").hidden = !(can("release_shares") && myShareBids(hall).length);
  $("confirm-record").hidden = !(can("confirm") && hall.record && !confirmedByMe(hall));

  $("host-controls").hidden = !hall.me.host;
  let anything = false;
  for (const button of $("host-controls").querySelectorAll("[data-action]")) {
    const action = button.dataset.action === "read_all" ? "read_next" : button.dataset.action;
    button.hidden = !can(action);
    anything ||= !button.hidden;
  }
  $("close-form").hidden = !can("close");
  $("host-idle").hidden = anything || can("close") || can("deposits");

  const progress = hall.progress;
  const counted = hall.bids.filter((b) => b.status !== "excluded");
  const opened = counted.filter((b) => b.status === "opened").length;
  $("decrypt-progress").max = Math.max(1, counted.length);
  $("decrypt-progress").value = opened;
  $("decrypt-progress-text").textContent = fill(S.progress, { done: opened, total: counted.length });
  $("decrypt-counts").textContent = fill(S.counts, {
    ...progress, opened: (progress.bytes_opened ?? 0).toLocaleString("en-US"),
    total: (progress.bytes_total ?? 0).toLocaleString("en-US"),
  });

  keepInputs($("bidders").tBodies[0], () => bidderRows(v));
  keepInputs($("bids").tBodies[0], () => bidRows(v));
  keepInputs($("readout").tBodies[0], () => readoutRows(v));
  keepInputs($("lots").tBodies[0], () => lotRows(v));
  keepInputs($("objections"), () => objectionItems(v));
  $("objection-form").hidden = !can("object");
  const chat = $("chat");
  const atBottom = chat.scrollTop + chat.clientHeight >= chat.scrollHeight - 4;
  keepInputs(chat, () => chatItems(v));
  if (atBottom) chat.scrollTop = chat.scrollHeight;
  $("chat-form").hidden = !can("chat");
  keepInputs($("record"), () => recordNodes(v));
  keepInputs($("timeline"), () => timelineItems(v));
  renderCountdown();
  renderKeys(role);
  renderVideo(role);
}

function countdownTarget(hall) {
  switch (hall.step) {
    case "locked": return ["locked", hall.hall_opens_at];
    case "waiting": case "sign_in": return [hall.step, hall.deadline];
    case "decryption": return ["decryption", hall.window_ends_at];
    case "record": return ["record", hall.confirm_deadline ?? hall.record?.confirm_deadline];
    default: return [null, null];
  }
}

function renderCountdown() {
  if (!state.hall) return;
  const [kind, target] = countdownTarget(state.hall);
  $("countdown-box").hidden = !target;
  if (!target) return;
  const remaining = Date.parse(target) - (Date.now() + state.offset);
  $("countdown-label").textContent = remaining > 0 ? S.countdown[kind] : S.countdown.passed;
  $("countdown").textContent = countdown(remaining);
  $("countdown").dateTime = target;
  $("countdown-target").textContent = when(target, zone);
  if (remaining > 0) return;
  // What may be done next depends on the server's clock (close-submissions, close-window,
  // close): ask again just after the moment passes, and a few more times, spaced out, in case
  // this browser's estimate of the server clock ran a little ahead.
  if (state.expired?.target !== target) state.expired = { target, count: 0, at: Date.now() + 300 };
  const due = state.expired;
  if (due.count < EXPIRY_REFRESHES && Date.now() >= due.at) {
    due.count += 1;
    due.at = Date.now() + 500 * 2 ** due.count;
    refresher.request(0);
  }
}

async function renderKeys(role) {
  const box = $("keys-status");
  if (!(role === "bidder" || role === "custodian") || ["closed", "failed"].includes(state.hall.step)) {
    box.hidden = true;
    return;
  }
  state.keys ??= await keysState(owner, role === "bidder" ? root.dataset.signKeyId : "");
  box.hidden = false;
  box.dataset.keys = state.keys;
  box.textContent = state.keys === "ready" ? S.keysReady
    : state.keys === "mismatch" ? S.signKeyMismatch : role === "bidder" ? S.noKeys : S.noCustodianKeys;
}

// ---------------------------------------------------------------------------- video

async function mediaModule() {
  // media.js is optional: without it (or without WebRTC) the hall works, minus the video.
  if (state.video.module === undefined) {
    try {
      state.video.module = await import("../tenderhall/media.js");
    } catch {
      state.video.module = null;
    }
  }
  return state.video.module;
}

function stopHandle(handle) {
  for (const name of ["close", "stop"]) {
    if (handle && typeof handle[name] === "function") {
      handle[name]();
      return;
    }
  }
}

async function renderVideo(role) {
  const hall = state.hall;
  const live = Boolean(hall.video?.live);
  const ended = ["closed", "failed"].includes(hall.step);
  if (role === "host" && ended && state.video.publishing) {
    stopHandle(state.video.publishing); // the opening is over: so is the broadcast
    state.video.publishing = null;
  }
  $("video-card").hidden = !(role === "host" ? !ended || state.video.publishing : hall.video !== undefined);
  $("hall-video").hidden = !(role === "host" ? state.video.publishing : live);
  $("video-card").dataset.live = String(role === "host" ? Boolean(state.video.publishing) : live);
  $("start-camera").hidden = !(role === "host" && can("video") && !state.video.publishing);
  $("stop-camera").hidden = !state.video.publishing;
  if (role === "host") return;
  const status = $("video-status");
  if (!live) {
    if (state.video.watching) state.video.watching.then(stopHandle, () => {});
    state.video.watching = null;
    state.video.failed = false;
    status.textContent = S.videoOff;
    return;
  }
  if (state.video.watching || state.video.failed) return;
  // Set before any await, so renders arriving meanwhile do not start a second viewer.
  const watching = (async () => {
    const media = await mediaModule();
    if (!media?.watch) throw new Error(S.videoUnavailable);
    return media.watch(`${api}/video/view`, csrf, $("hall-video"), { iceServers });
  })();
  state.video.watching = watching;
  try {
    await watching;
    status.textContent = S.videoLive;
  } catch (error) {
    if (state.video.watching === watching) state.video.watching = null;
    state.video.failed = true; // tried once while live; a new broadcast (live off, then on) tries again
    status.textContent = error.message === S.videoUnavailable ? S.videoUnavailable
      : `${S.videoUnavailable} ${error.message ?? ""}`;
  }
}

async function startCamera(button) {
  const media = await mediaModule();
  if (!media?.publishCamera) throw new Error(S.videoUnavailable);
  $("hall-video").hidden = false;
  try {
    state.video.publishing = await media.publishCamera(`${api}/video/publish`, csrf,
      { video: $("hall-video"), iceServers });
  } finally {
    render();
  }
  $("video-status").textContent = S.cameraLive;
  button.hidden = true;
}

async function stopCamera() {
  const publishing = state.video.publishing;
  state.video.publishing = null;
  publishing?.stop();
  $("hall-video").hidden = true;
  $("video-status").textContent = S.videoOff;
  await post("video/stop", {});
  render();
}

// ---------------------------------------------------------------------------- actions

async function act(button, work) {
  clearMessages();
  if (button) button.disabled = true;
  try {
    await work();
  } catch (error) {
    showError(error);
  } finally {
    if (button) button.disabled = false;
  }
}

async function decryptBid(bid) {
  if (state.busy.has(bid.bid_id)) return;
  state.busy.add(bid.bid_id);
  state.notes.set(bid.bid_id, { text: S.decrypting, kind: "muted" });
  render();
  try {
    const contentKey = await recoverContentKey(owner, bid.manifest);
    await post("decrypt", { bid_id: bid.bid_id, content_key: contentKey });
    state.notes.set(bid.bid_id, { text: S.decrypted, kind: "ok" });
  } catch (error) {
    if (error instanceof HallKeyError && error.reason === "noKeys") state.keys = "missing";
    state.notes.set(bid.bid_id, { text: describe(error), kind: "error" });
  } finally {
    state.busy.delete(bid.bid_id);
    render();
  }
}

function bidById(id) {
  return state.hall.bids.find((b) => b.bid_id === id);
}

$("sign-in").addEventListener("click", (e) => act(e.currentTarget, () => post("sign-in")));
$("decrypt-mine").addEventListener("click", (e) => act(e.currentTarget, async () => {
  for (const bid of myPendingBids(state.hall)) await decryptBid(bid);
}));
$("release-shares").addEventListener("click", (e) => act(e.currentTarget, async () => {
  const shares = await openShares(owner, myShareBids(state.hall));
  await post("shares", { shares });
  showNotice(S.released);
}));
$("confirm-record").addEventListener("click", (e) => act(e.currentTarget, async () => {
  const record = state.hall.record;
  const signature = await signRecord(owner, tenderId, record.sha256, root.dataset.signKeyId);
  await post("confirm", { signature });
}));
$("start-camera").addEventListener("click", (e) => act(e.currentTarget, () => startCamera(e.currentTarget)));
$("stop-camera").addEventListener("click", (e) => act(e.currentTarget, stopCamera));

$("host-controls").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const action = button.dataset.action;
  const path = ACTION_PATHS[action] ?? action.replaceAll("_", "-");
  const body = action === "read_all" ? { all: true } : action === "read_next" ? { all: false } : {};
  act(button, () => post(path, body));
});
$("close-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  act(form.querySelector("button"), () => post("close", { resumption_at: localToIso(form.resumption_at.value) }));
});

$("bidders").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-deposit-set]");
  if (!button) return;
  const row = button.closest("tr[data-organisation-id]");
  const note = row.querySelector("input.deposit-note");
  act(button, async () => {
    await post("deposits", { organisation_id: row.dataset.organisationId, deposit: button.dataset.depositSet,
                             note: note ? note.value.trim() : "" });
    if (note) note.value = "";
  });
});
$("bids").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-decrypt]");
  if (!button) return;
  const bid = bidById(button.dataset.decrypt);
  if (bid) decryptBid(bid);
});

$("objection-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  act(form.querySelector("button"), async () => {
    await post("objections", { text: form.text.value.trim() });
    form.reset();
  });
});
$("objections").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-answer]");
  if (!button) return;
  const box = button.closest("li").querySelector("textarea");
  act(button, async () => {
    await post(`objections/${button.dataset.answer}/answer`, { answer: box.value.trim() });
    box.value = "";
  });
});
$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  act(form.querySelector("button"), async () => {
    await post("chat", { text: form.text.value.trim() });
    form.reset();
  });
});
$("chat").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-hide]");
  if (button) act(button, () => post(`chat/${button.dataset.hide}/hide`));
});

window.addEventListener("online", () => state.live?.poke());
setInterval(renderCountdown, 250);
refresher.now();
