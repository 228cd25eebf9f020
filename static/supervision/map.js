// The supervisors' live map (/supervision/map): reads the floor, the people and the open alerts
// from the venue's API, then follows the event socket (topic "venue") from the event id the page
// was rendered at, resuming after the last id seen on every reconnect, so no alert is lost.
//
// Events: venue.positions (people who moved), venue.access (door decisions and events),
// venue.alert and venue.alert_acknowledged. A position older than what the map shows is ignored,
// and alerts are kept by id, so an event that repeats what a read returned changes nothing.

import { followTopic } from "/static/trading/hall_live.js";
import { initHistory } from "./map_history.js";
import * as draw from "./map_render.js";

const root = document.getElementById("vmap");
const S = JSON.parse(document.getElementById("vmap-strings").textContent);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const canAck = root.dataset.canAck === "true";
const STALE_MS = 30_000;          // a dot not heard of for this long is dimmed and not counted
const GONE_MS = 15 * 60_000;      // … and hidden after this long
const TRAIL = 20;                 // points in a live trail
const DOOR_LOG = 40;
const ACKNOWLEDGED_KEPT = 30;

const $ = (id) => document.getElementById(id);
const fmt = (text, values) => text.replace(/\{(\w+)\}/g, (_, key) => values[key] ?? "");
const clock = new Intl.DateTimeFormat(root.dataset.lang, {
  timeZone: root.dataset.zone, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});
const when = (ms) => clock.format(new Date(ms));

const state = {
  floors: [], floor: null, plan: null, drawing: null,
  people: new Map(),   // id -> {id, name, role, floor, x, y, zone, t, trail: [[x, y]]}
  dots: new Map(), trails: new Map(),
  alerts: new Map(),   // id -> alert JSON
  alertItems: new Map(),
  doors: [],
  names: new Map(),    // name -> person id, for the replay's search
  lastId: Number(root.dataset.after || 0),
  replay: null, playing: null, frame: null,
};

// --------------------------------------------------------------------------- fetching

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || `HTTP ${response.status}`);
  return data;
}

async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || `HTTP ${response.status}`);
  return data;
}

function showError(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

// --------------------------------------------------------------------------- the floor

async function loadFloor(code) {
  const { floor } = await getJSON(`/api/venue/floors/${encodeURIComponent(code)}`);
  state.floor = code;
  state.plan = draw.readPlan(floor.plan);
  state.plan.byId = new Map(state.plan.zones.map((z) => [z.id, z]));
  state.plan.byReader = new Map(state.plan.doors.filter((d) => d.reader).map((d) => [d.reader, d]));
  state.drawing = draw.drawPlan($("vmap-svg"), state.plan, { colours: S.kindColours, kinds: S.kinds, doorLabel: S.door });
  state.dots.clear();
  state.trails.clear();
  drawLegend();
  if (state.replay) past.drawReplay();
  requestRender();
}

function drawLegend() {
  const legend = $("vmap-legend");
  legend.replaceChildren();
  const swatch = (colour, label, round) => {
    const span = document.createElement("span");
    span.className = "vmap-key";
    const mark = document.createElement("i");
    mark.style.background = colour;
    if (round) mark.className = "round";
    span.append(mark, label);
    legend.append(span);
  };
  for (const kind of new Set(state.plan.zones.map((z) => z.kind))) swatch(S.kindColours[kind] || "#eee", S.kinds[kind] || kind);
  for (const [role, colour] of Object.entries(draw.ROLE_COLOURS)) swatch(colour, S.roles[role] || role, true);
}

// --------------------------------------------------------------------------- people

function updatePerson(p) {
  const known = state.people.get(p.id);
  if (known && p.t < known.t) return; // an older position than the one shown (a replayed event)
  const trail = known && known.floor === p.floor ? known.trail : [];
  const last = trail.at(-1);
  if (!last || Math.hypot(last[0] - p.x, last[1] - p.y) > 0.05) trail.push([p.x, p.y]);
  if (trail.length > TRAIL) trail.splice(0, trail.length - TRAIL);
  state.people.set(p.id, { ...known, ...p, trail });
  if (p.name) state.names.set(p.name, p.id);
}

function zoneName(id) {
  const zone = id && state.plan && state.plan.byId.get(id);
  return zone ? zone.name : S.outsideZones;
}

function requestRender() {
  if (state.frame === null) state.frame = requestAnimationFrame(render);
}

function render() {
  state.frame = null;
  if (!state.drawing) return;
  const now = Date.now();
  const { layers, zoneEls } = state.drawing;
  const counts = new Map();
  const shown = new Set();
  const alerting = openAlertPeople();
  let present = 0;
  for (const p of state.people.values()) {
    if (p.floor !== state.floor || now - p.t > GONE_MS) continue;
    shown.add(p.id);
    const stale = now - p.t > STALE_MS;
    if (!stale) {
      present += 1;
      if (p.zone) counts.set(p.zone, (counts.get(p.zone) || 0) + 1);
    }
    const title = `${p.name || S.unknown} · ${S.roles[p.role] || p.role || ""} · ${zoneName(p.zone)} · `
      + fmt(S.lastSeen, { time: when(p.t) });
    const dot = draw.placeDot(layers.dots, state.dots, p, title);
    dot.classList.toggle("stale", stale);
    dot.classList.toggle("alerting", alerting.has(p.id));
    draw.drawTrail(layers.trails, state.trails, p);
  }
  for (const [id, node] of [...state.dots, ...state.trails]) {
    if (!shown.has(id)) node.remove();
  }
  for (const map of [state.dots, state.trails]) for (const id of [...map.keys()]) if (!shown.has(id)) map.delete(id);
  draw.drawOccupancy(zoneEls, counts);
  const alertZones = openAlertZones();
  for (const [id, { poly }] of zoneEls) poly.classList.toggle("alerting", alertZones.has(id));
  $("vmap-count").textContent = String(present);
  renderOccupancy(counts);
}

function renderOccupancy(counts) {
  const body = $("occupancy");
  const rows = [...counts].filter(([id]) => state.plan.byId.has(id)).sort((a, b) => b[1] - a[1]);
  body.replaceChildren(...rows.map(([id, n]) => {
    const zone = state.plan.byId.get(id);
    const tr = document.createElement("tr");
    tr.dataset.zone = id;
    const over = zone.capacity && n > zone.capacity;
    tr.classList.toggle("over", Boolean(over));
    for (const [text, cls] of [[zone.name, "name"], [String(n), "count"], [zone.capacity ?? "–", "capacity"]]) {
      const td = document.createElement("td");
      td.className = cls;
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  }));
}

async function loadLive() {
  const { people } = await getJSON("/api/venue/live");
  for (const p of people) {
    const t = Date.parse(p.last_seen);
    updatePerson({ id: p.person, name: p.name, role: p.role, floor: p.floor, x: p.x, y: p.y, zone: p.zone, t });
    const known = state.people.get(p.person);
    if (known && known.t === t && p.trail && p.trail.length) known.trail = p.trail.slice(-TRAIL);
  }
  requestRender();
}

async function loadPeopleList() {
  for (let page = 1; page <= 20; page += 1) {
    const { people } = await getJSON(`/api/venue/people?page=${page}&per_page=100`);
    for (const p of people) state.names.set(p.name, p.id);
    if (people.length < 100) break;
  }
  const list = $("people-list");
  list.replaceChildren(...[...state.names.keys()].sort().map((name) => {
    const option = document.createElement("option");
    option.value = name;
    return option;
  }));
}

// --------------------------------------------------------------------------- doors

function addDoorEvents(payload) {
  const entries = [
    ...(payload.decisions || []).map((d) => ({ ...d, ms: Date.parse(d.at), kind: d.granted ? "granted" : "refused" })),
    ...(payload.door_events || []).map((e) => ({ ...e, ms: Date.parse(e.at) })),
  ].sort((a, b) => a.ms - b.ms);
  for (const entry of entries) {
    state.doors.unshift(entry);
    flashDoor(entry);
  }
  state.doors.splice(DOOR_LOG);
  const list = $("door-log");
  list.replaceChildren(...state.doors.map((entry) => {
    const li = document.createElement("li");
    li.dataset.kind = entry.kind;
    li.dataset.reader = entry.reader;
    const door = state.plan && state.plan.byReader.get(entry.reader);
    const who = entry.person ? personName(entry.person) : "";
    const what = entry.kind === "granted" || entry.kind === "refused"
      ? `${S.reasons[entry.reason] || entry.reason}${who ? ` · ${who}` : ""}`
      : S.doorKinds[entry.kind] || entry.kind;
    const time = document.createElement("time");
    time.textContent = when(entry.ms);
    li.append(time, ` ${door && door.name ? door.name : entry.reader} — ${what}`);
    return li;
  }));
  $("doors-empty").hidden = state.doors.length > 0;
}

function flashDoor(entry) {
  const circle = state.drawing && state.drawing.doorEls.get(entry.reader);
  if (!circle) return;
  const bad = entry.kind === "refused" || entry.kind === "forced" || entry.kind === "held_open";
  circle.classList.remove("flash-ok", "flash-bad");
  void circle.getBBox(); // restart the animation
  circle.classList.add(bad ? "flash-bad" : "flash-ok");
}

function personName(id) {
  const p = state.people.get(id);
  if (p && p.name) return p.name;
  for (const [name, pid] of state.names) if (pid === id) return name;
  return S.unknown;
}

// --------------------------------------------------------------------------- alerts

function openAlertPeople() {
  const ids = new Set();
  for (const a of state.alerts.values()) if (!a.acknowledged_at) for (const p of a.people) ids.add(p.id);
  return ids;
}

function openAlertZones() {
  const ids = new Set();
  for (const a of state.alerts.values()) if (!a.acknowledged_at && a.zone && a.floor === state.floor) ids.add(a.zone);
  return ids;
}

function upsertAlert(alert) {
  const known = state.alerts.get(alert.id);
  if (known && known.acknowledged_at && !alert.acknowledged_at) return; // an older copy of it
  state.alerts.set(alert.id, { ...known, ...alert });
  const acknowledged = [...state.alerts.values()].filter((a) => a.acknowledged_at)
    .sort((a, b) => Date.parse(b.acknowledged_at) - Date.parse(a.acknowledged_at));
  for (const old of acknowledged.slice(ACKNOWLEDGED_KEPT)) {
    state.alerts.delete(old.id);
    const item = state.alertItems.get(old.id);
    if (item) item.remove();
    state.alertItems.delete(old.id);
  }
  renderAlert(state.alerts.get(alert.id));
}

function newer(a, b) {
  return Date.parse(a.at) - Date.parse(b.at) || a.id - b.id;
}

/** Create or update one alert's item; new items go in their place (newest first), others stay put,
 * so a note being typed is never disturbed by alerts arriving. */
function renderAlert(alert) {
  if (!alert) return;
  let li = state.alertItems.get(alert.id);
  const list = $("alert-list");
  if (!li) {
    li = document.createElement("li");
    li.className = "vmap-alert";
    li.dataset.alertId = String(alert.id);
    fillAlert(li, alert);
    const after = [...list.children].find((other) => newer(alert, state.alerts.get(Number(other.dataset.alertId))) > 0);
    list.insertBefore(li, after || null);
    state.alertItems.set(alert.id, li);
  } else if (li.dataset.state !== (alert.acknowledged_at ? "acknowledged" : "open")) {
    fillAlert(li, alert);
  }
  li.hidden = !shownByClass(alert);
  countAlerts();
  requestRender();
}

/** Whether the class filter (an alert class, or "" for all) lets the alert through. */
function shownByClass(alert) {
  const wanted = $("alert-class").value;
  return !wanted || alert.class === wanted;
}

function filterAlerts() {
  for (const [id, li] of state.alertItems) li.hidden = !shownByClass(state.alerts.get(id));
  countAlerts();
}

/** The badge counts every open alert; the empty note speaks of those the filter shows. */
function countAlerts() {
  const open = [...state.alerts.values()].filter((a) => !a.acknowledged_at);
  const badge = $("alert-open-count");
  badge.textContent = String(open.length);
  badge.dataset.count = String(open.length);
  const shown = open.filter(shownByClass).length;
  const empty = $("alerts-empty");
  empty.hidden = shown > 0;
  empty.textContent = $("alert-class").value ? S.noAlertsOfClass : S.noAlerts;
}

/** The alert's message in the page's language: its phrase with its parameters (roles named in
 * that language too); the stored English message for an alert without one. */
function said(alert) {
  const phrase = alert.phrase && S.phrases[alert.phrase];
  if (!phrase) return alert.message;
  const params = { ...alert.params };
  for (const key of ["role", "other_role"]) if (params[key]) params[key] = S.roles[params[key]] || params[key];
  return fmt(phrase, params);
}

function fillAlert(li, alert) {
  li.replaceChildren();
  li.dataset.state = alert.acknowledged_at ? "acknowledged" : "open";
  li.dataset.severity = alert.severity;
  li.dataset.rule = alert.rule;
  li.dataset.class = alert.class || "";
  const head = document.createElement("p");
  head.className = "vmap-alert-head";
  const severity = document.createElement("span");
  severity.className = "vmap-severity";
  severity.textContent = S.severities[alert.severity] || alert.severity;
  const klass = document.createElement("span");
  klass.className = "vmap-alert-class";
  klass.textContent = S.classes[alert.class] || alert.class || "";
  const rule = document.createElement("strong");
  rule.textContent = S.rules[alert.rule] || alert.rule;
  const time = document.createElement("time");
  time.dateTime = alert.at;
  time.textContent = when(Date.parse(alert.at));
  head.append(severity, " ", klass, " ", rule, " ", time);
  const message = document.createElement("p");
  message.className = "vmap-alert-message";
  message.textContent = said(alert);
  const who = document.createElement("p");
  who.className = "vmap-alert-who";
  if (alert.zone) who.append(`${S.zone}: ${zoneName(alert.zone)} `);
  for (const person of alert.people || []) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "vmap-person";
    button.textContent = person.name || S.unknown;
    button.title = S.replayPerson;
    button.addEventListener("click", () => past.pickForReplay(person.name, Date.parse(alert.at)));
    who.append(button, " ");
  }
  li.append(head, message, who);
  if (alert.acknowledged_at) {
    const done = document.createElement("p");
    done.className = "vmap-ack-done";
    done.textContent = fmt(S.acknowledged, { time: when(Date.parse(alert.acknowledged_at)), note: alert.note || "" });
    li.append(done);
  } else if (canAck) {
    li.append(ackForm(alert));
  }
}

function ackForm(alert) {
  const form = document.createElement("form");
  form.className = "vmap-ack";
  const note = document.createElement("textarea");
  note.name = "note";
  note.rows = 2;
  note.maxLength = 1000;
  note.placeholder = S.notePlaceholder;
  note.setAttribute("aria-label", S.note);
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = S.acknowledge;
  const error = document.createElement("p");
  error.className = "alert";
  error.hidden = true;
  form.append(note, button, error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!note.value.trim()) return showError(error, S.noteRequired);
    button.disabled = true;
    try {
      const { alert: done } = await postJSON(`/api/venue/alerts/${alert.id}/ack`, { note: note.value.trim() });
      upsertAlert(done);
    } catch (failure) {
      showError(error, failure.message);
      button.disabled = false;
    }
  });
  return form;
}

async function loadAlerts() {
  const { alerts } = await getJSON("/api/venue/alerts?open=1&per_page=100");
  for (const alert of alerts) upsertAlert(alert);
  $("alerts-empty").hidden = [...state.alerts.values()].some((a) => !a.acknowledged_at);
}

// --------------------------------------------------------------------------- the socket

function onEvent(event) {
  state.lastId = Math.max(state.lastId, event.id);
  const payload = event.payload || {};
  if (event.kind === "venue.positions") {
    for (const p of payload.people || []) {
      updatePerson({ id: p.person, name: p.name, role: p.role, floor: p.floor, x: p.x, y: p.y, zone: p.zone,
                     t: Date.parse(p.t) });
    }
    requestRender();
  } else if (event.kind === "venue.access") {
    addDoorEvents(payload);
  } else if (event.kind === "venue.alert" || event.kind === "venue.alert_acknowledged") {
    upsertAlert(payload);
  }
  root.dataset.lastEvent = String(state.lastId);
}

function onState(status, detail = {}) {
  const box = $("vmap-connection");
  box.dataset.state = status;
  box.textContent = status === "live" ? S.live : status === "retrying" ? fmt(S.retrying, detail)
    : status === "loggedOut" ? S.loggedOut : status === "refused" ? fmt(S.refused, detail) : S.connecting;
}

// --------------------------------------------------------------------------- start

async function start() {
  $("show-trails").addEventListener("change", (e) => root.classList.toggle("hide-trails", !e.target.checked));
  $("show-names").addEventListener("change", (e) => root.classList.toggle("show-names", e.target.checked));
  $("alert-class").addEventListener("change", filterAlerts);
  $("vmap-svg").addEventListener("click", (e) => {
    const dot = e.target.closest && e.target.closest(".vmap-dot");
    const person = dot && state.people.get(dot.dataset.person);
    if (person) past.pickForReplay(person.name, Date.now() - 15 * 60_000);
  });
  try {
    const { floors } = await getJSON("/api/venue/floors");
    state.floors = floors.map((f) => f.code);
    if (!floors.length) return showError($("vmap-error"), S.noFloors);
    const select = $("floor-select");
    select.replaceChildren(...floors.map((f) => new Option(`${f.name} (${f.code})`, f.code)));
    const wanted = root.dataset.floor;
    select.value = state.floors.includes(wanted) ? wanted : state.floors.includes("FZ-3F") ? "FZ-3F" : state.floors[0];
    select.addEventListener("change", () => loadFloor(select.value).catch((e) => showError($("vmap-error"), e.message)));
    await loadFloor(select.value);
  } catch (failure) {
    return showError($("vmap-error"), fmt(S.loadFailed, { reason: failure.message }));
  }
  // Follow first: the page's id marks where the reads below start, so nothing falls in between.
  const feed = followTopic({ topic: "venue", lastId: () => state.lastId, onEvent, onState });
  window.addEventListener("online", () => feed.poke());
  try {
    await Promise.all([loadLive(), loadAlerts(), loadPeopleList()]);
  } catch (failure) {
    showError($("vmap-error"), fmt(S.loadFailed, { reason: failure.message }));
  }
  setInterval(requestRender, 1000); // dims and uncounts people nobody has heard of for a while
  root.dataset.ready = "true";
}

const past = initHistory({ root, S, state, getJSON, when, fmt, showError, loadFloor });
start();
