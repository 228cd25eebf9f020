// The supervisors' map, looking back: a person's trajectory replayed with a time slider, and a
// heatmap of a period. Periods are typed in the centre's time zone, like every time the page
// shows; a period nobody edited ends at the moment it is used.

import * as draw from "./map_render.js";

const REPLAY_SECONDS = 15; // a replay played back takes this long, whatever its period

/**
 * Wire the replay and heatmap panels. `ctx`: {root, S, state, getJSON, when, fmt, showError,
 * loadFloor}; the map's state gives the floor, the drawing's layers and the names to search.
 * Returns {drawReplay (after the floor is redrawn), pickForReplay (name, around ms)}.
 */
export function initHistory({ root, S, state, getJSON, when, fmt, showError, loadFloor }) {
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------- periods, in the centre's zone

  const wall = new Intl.DateTimeFormat("en-CA", {
    timeZone: root.dataset.zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23",
  });

  function zoneOffset(ms) {
    const parts = Object.fromEntries(wall.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
    return Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second) - Math.floor(ms / 1000) * 1000;
  }

  function zoneInput(ms) {
    return new Date(ms + zoneOffset(ms)).toISOString().slice(0, 19);
  }

  function fromZoneInput(text) {
    const naive = Date.parse(`${text.length === 16 ? `${text}:00` : text}Z`);
    const guess = naive - zoneOffset(naive);
    return naive - zoneOffset(guess);
  }

  function setPeriod(form, fromMs, toMs) {
    form.elements.from.value = zoneInput(fromMs);
    form.elements.to.value = zoneInput(toMs);
    delete form.dataset.edited;
  }

  /** The form's period as query parameters; a period nobody edited ends now, however long the page has been open. */
  function period(form, minutes) {
    if (!form.dataset.edited) setPeriod(form, Date.now() - minutes * 60_000, Date.now());
    const from = new Date(fromZoneInput(form.elements.from.value));
    const to = new Date(fromZoneInput(form.elements.to.value));
    return `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
  }

  // --------------------------------------------------------------------------- replay

  function pickForReplay(name, aroundMs) {
    const form = $("replay-form");
    form.elements.person.value = name || "";
    setPeriod(form, aroundMs - 5 * 60_000, Date.now());
    form.dataset.edited = "true";
    form.scrollIntoView({ block: "nearest" });
    form.elements.person.focus();
  }

  async function loadReplay(event) {
    event.preventDefault();
    const form = event.target;
    const error = $("replay-error");
    showError(error, "");
    const name = form.elements.person.value.trim();
    const id = state.names.get(name) || [...state.people.values()].find((p) => p.name === name)?.id;
    if (!id) return showError(error, S.noSuchPerson);
    try {
      const data = await getJSON(`/api/venue/people/${id}/trajectory?${period(form, 15)}`);
      const points = data.points.map((p) => ({ x: p.x, y: p.y, floor: p.floor, ms: Date.parse(p.t) }))
        .sort((a, b) => a.ms - b.ms);
      if (!points.length) return showError(error, S.noPoints);
      const role = state.people.get(id)?.role;
      state.replay = { id, name, points, colour: draw.ROLE_COLOURS[role] || "#c92a2a" };
      $("replay-info").textContent = fmt(S.replayInfo, {
        name, count: points.length, from: when(points[0].ms), to: when(points.at(-1).ms),
      }) + (data.downsampled ? ` ${S.downsampled}` : "");
      $("replay-controls").hidden = false;
      $("replay-slider").value = "0";
      if (points[0].floor !== state.floor && state.floors.includes(points[0].floor)) {
        $("floor-select").value = points[0].floor;
        await loadFloor(points[0].floor);
      }
      drawReplay();
    } catch (failure) {
      showError(error, failure.message);
    }
  }

  function drawReplay() {
    const replay = state.replay;
    if (!replay || !state.drawing) return;
    const { points } = replay;
    const onFloor = points.filter((p) => p.floor === state.floor);
    const ms = points[0].ms + (points.at(-1).ms - points[0].ms) * (Number($("replay-slider").value) / 1000);
    const at = draw.positionAt(onFloor, ms);
    const marker = at && draw.drawReplay(state.drawing.layers.replay, onFloor, at, replay.colour);
    if (marker) marker.dataset.replayT = new Date(ms).toISOString();
    const time = $("replay-time");
    time.textContent = when(ms);
    time.dateTime = new Date(ms).toISOString();
  }

  function togglePlay() {
    const button = $("replay-play");
    if (state.playing) {
      clearInterval(state.playing);
      state.playing = null;
      button.textContent = S.play;
      return;
    }
    const slider = $("replay-slider");
    if (Number(slider.value) >= 1000) slider.value = "0";
    button.textContent = S.pause;
    state.playing = setInterval(() => {
      slider.value = String(Math.min(1000, Number(slider.value) + 1000 / (REPLAY_SECONDS * 10)));
      drawReplay();
      if (Number(slider.value) >= 1000) togglePlay();
    }, 100);
  }

  function clearReplay() {
    if (state.playing) togglePlay();
    state.replay = null;
    $("replay-controls").hidden = true;
    if (state.drawing) state.drawing.layers.replay.replaceChildren();
  }

  // --------------------------------------------------------------------------- heatmap

  async function loadHeatmap(event) {
    event.preventDefault();
    const form = event.target;
    const error = $("heatmap-error");
    showError(error, "");
    try {
      const cell = Number(form.elements.cell.value) || 1;
      const data = await getJSON(`/api/venue/heatmap?floor=${encodeURIComponent(state.floor)}&${period(form, 60)}&cell=${cell}`);
      const max = draw.drawHeat(state.drawing.layers.heat, data.cells, data.cell);
      const info = $("heatmap-info");
      const total = data.cells.reduce((sum, c) => sum + c.count, 0);
      info.textContent = data.cells.length ? fmt(S.heatInfo, {
        count: total, cells: data.cells.length, max, from: when(Date.parse(data.from)), to: when(Date.parse(data.to)),
      }) : S.noHeat;
      info.hidden = false;
      $("heatmap-clear").hidden = false;
      root.dataset.heatCells = String(data.cells.length);
    } catch (failure) {
      showError(error, failure.message);
    }
  }

  function clearHeatmap() {
    if (state.drawing) state.drawing.layers.heat.replaceChildren();
    $("heatmap-info").hidden = true;
    $("heatmap-clear").hidden = true;
    delete root.dataset.heatCells;
  }

  const now = Date.now();
  setPeriod($("replay-form"), now - 15 * 60_000, now);
  setPeriod($("heatmap-form"), now - 60 * 60_000, now);
  for (const form of [$("replay-form"), $("heatmap-form")]) {
    for (const input of [form.elements.from, form.elements.to]) {
      input.addEventListener("change", () => { form.dataset.edited = "true"; });
    }
  }
  $("replay-form").addEventListener("submit", loadReplay);
  $("replay-slider").addEventListener("input", drawReplay);
  $("replay-play").addEventListener("click", togglePlay);
  $("replay-clear").addEventListener("click", clearReplay);
  $("heatmap-form").addEventListener("submit", loadHeatmap);
  $("heatmap-clear").addEventListener("click", clearHeatmap);
  return { drawReplay, pickForReplay };
}
