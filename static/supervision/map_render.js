// Drawing the supervisors' map as SVG: the plan (zones coloured by kind, names, doors), people as
// dots coloured by role with short trails, occupancy per zone, a heatmap and a replayed path.
//
// Coordinates are the plan's local metres with y to the north; SVG's y runs down, so every y is
// drawn negated (as the floor plans page does). Nothing here fetches or keeps state: map.js does.

const NS = "http://www.w3.org/2000/svg";
export const ROLE_COLOURS = {
  expert: "#1864ab", bidder: "#d9480f", agent: "#e67700", supervisor: "#2b8a3e", staff: "#6741d9", visitor: "#495057",
};
const LABEL_MIN_AREA = 12; // m²: smaller zones (vestibules) are named on hover only
const DOT_RADIUS = 0.45;   // metres

/** An SVG element with attributes, appended to `parent` when given. */
export function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

function ringArea(ring) {
  let a = 0;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) a += ring[j][0] * ring[i][1] - ring[i][0] * ring[j][1];
  return a / 2;
}

function centroid(ring) {
  const a = ringArea(ring);
  if (!a) return ring[0];
  let cx = 0;
  let cy = 0;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const f = ring[j][0] * ring[i][1] - ring[i][0] * ring[j][1];
    cx += (ring[j][0] + ring[i][0]) * f;
    cy += (ring[j][1] + ring[i][1]) * f;
  }
  return [cx / (6 * a), cy / (6 * a)];
}

/** The plan's GeoJSON as zones and doors, with its bounds. */
export function readPlan(plan) {
  const zones = [];
  const doors = [];
  for (const [i, f] of (plan.features || []).entries()) {
    const p = f.properties || {};
    const g = f.geometry || {};
    if (g.type === "Polygon" && (p.feature_type || "unit") === "unit") {
      const ring = g.coordinates[0].map(([x, y]) => [x, y]);
      if (ring.length > 1 && ring[0][0] === ring.at(-1)[0] && ring[0][1] === ring.at(-1)[1]) ring.pop();
      const id = String(f.id ?? p.id ?? p.zone_id ?? `zone-${i}`);
      zones.push({ id, kind: p.kind || "corridor", name: p.name || id, capacity: p.capacity ?? null,
                   closed: Boolean(p.closed_area), ring, area: Math.abs(ringArea(ring)), centre: centroid(ring) });
    } else if (g.type === "Point" && p.feature_type === "door") {
      doors.push({ id: String(f.id ?? p.door_id ?? `door-${i}`), reader: p.reader_id || null, x: g.coordinates[0],
                   y: g.coordinates[1], inside: p.inside_zone, outside: p.outside_zone ?? null, name: p.name || "" });
    }
  }
  const xs = zones.flatMap((z) => z.ring.map((q) => q[0]));
  const ys = zones.flatMap((z) => z.ring.map((q) => q[1]));
  const bounds = xs.length ? [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] : [0, 0, 10, 10];
  return { zones, doors, bounds };
}

/**
 * Draw the plan into `svg` (emptied first). Returns the layers people, trails, heat and replay
 * are drawn into, and each zone's and door's elements by id and reader.
 */
export function drawPlan(svg, plan, { colours, kinds, doorLabel }) {
  svg.replaceChildren();
  const [x0, y0, x1, y1] = plan.bounds;
  const pad = 1.5;
  svg.setAttribute("viewBox", `${x0 - pad} ${-y1 - pad} ${x1 - x0 + 2 * pad} ${y1 - y0 + 2 * pad}`);
  const layer = (name) => el("g", { class: `vmap-${name}` }, svg);
  const layers = { zones: layer("zones"), heat: layer("heat"), labels: layer("labels"), doors: layer("doors"),
                   trails: layer("trails"), replay: layer("replay"), dots: layer("dots") };
  const zoneEls = new Map();
  for (const z of [...plan.zones].sort((a, b) => b.area - a.area)) {
    const poly = el("polygon", {
      points: z.ring.map(([x, y]) => `${x},${-y}`).join(" "), fill: colours[z.kind] || "#eeeeee",
      class: `vmap-zone${z.closed ? " closed" : ""}`, "data-zone": z.id, "data-kind": z.kind,
    }, layers.zones);
    el("title", {}, poly).textContent = `${z.name} · ${kinds[z.kind] || z.kind}${z.capacity ? ` · ${z.capacity}` : ""}`;
    const [cx, cy] = z.centre;
    const big = z.area >= LABEL_MIN_AREA;
    const font = Math.max(0.55, Math.min(1.1, Math.sqrt(z.area) / 7));
    let name = null;
    if (big) {
      name = el("text", { x: cx, y: -cy - font * 0.3, "font-size": font, class: "vmap-zone-name",
                          "text-anchor": "middle" }, layers.labels);
      name.textContent = z.name;
    }
    const count = el("text", { x: cx, y: -cy + (big ? font * 1.1 : 0.3), "font-size": font * 0.9,
                               class: "vmap-zone-count", "text-anchor": "middle", "data-zone": z.id }, layers.labels);
    zoneEls.set(z.id, { poly, name, count, zone: z });
  }
  const doorEls = new Map();
  for (const d of plan.doors) {
    const circle = el("circle", { cx: d.x, cy: -d.y, r: 0.35, class: "vmap-door", "data-door": d.id,
                                  "data-reader": d.reader || "" }, layers.doors);
    el("title", {}, circle).textContent = `${doorLabel} ${d.name || d.id}${d.reader ? ` (${d.reader})` : ""}`;
    if (d.reader) doorEls.set(d.reader, circle);
  }
  return { layers, zoneEls, doorEls };
}

/** Show each zone's head count (and capacity); a zone over its capacity is marked. */
export function drawOccupancy(zoneEls, counts) {
  for (const [id, { poly, count, zone }] of zoneEls) {
    const n = counts.get(id) || 0;
    count.textContent = n ? (zone.capacity ? `${n}/${zone.capacity}` : String(n)) : "";
    const over = Boolean(zone.capacity) && n > zone.capacity;
    poly.classList.toggle("over", over);
    count.classList.toggle("over", over);
  }
}

/** Create or move a person's dot; `title` is its hover text. */
export function placeDot(layer, dots, person, title) {
  let dot = dots.get(person.id);
  if (!dot) {
    dot = el("g", { class: "vmap-dot", "data-person": person.id, tabindex: 0 }, layer);
    el("circle", { r: DOT_RADIUS, fill: ROLE_COLOURS[person.role] || "#343a40" }, dot);
    el("title", {}, dot);
    const name = el("text", { x: 0.7, y: 0.3, "font-size": 0.8, class: "vmap-dot-name" }, dot);
    name.textContent = person.name || "";
    dots.set(person.id, dot);
  }
  dot.dataset.role = person.role || "";
  dot.dataset.x = person.x.toFixed(2);
  dot.dataset.y = person.y.toFixed(2);
  dot.dataset.zone = person.zone || "";
  dot.style.transform = `translate(${person.x}px, ${-person.y}px)`;
  dot.querySelector("title").textContent = title;
  return dot;
}

/** A person's short trail as a fading polyline. */
export function drawTrail(layer, trails, person) {
  let line = trails.get(person.id);
  if (!line) {
    line = el("polyline", { class: "vmap-trail", stroke: ROLE_COLOURS[person.role] || "#343a40",
                            "data-person": person.id }, layer);
    trails.set(person.id, line);
  }
  line.setAttribute("points", person.trail.map(([x, y]) => `${x},${-y}`).join(" "));
}

/** Heat cells ({x, y, count}: each square's lower-left corner) shaded by count. */
export function drawHeat(layer, cells, cell) {
  layer.replaceChildren();
  const max = Math.max(1, ...cells.map((c) => c.count));
  for (const c of cells) {
    const level = Math.sqrt(c.count / max); // square root: a few busy cells do not wash out the rest
    const rect = el("rect", { x: c.x, y: -(c.y + cell), width: cell, height: cell, class: "vmap-heat-cell",
                              fill: heatColour(level), "fill-opacity": (0.25 + 0.6 * level).toFixed(2) }, layer);
    el("title", {}, rect).textContent = String(c.count);
  }
  return max;
}

function heatColour(level) {
  // yellow → orange → dark red
  const stops = [[255, 237, 160], [253, 141, 60], [189, 0, 38]];
  const i = level < 0.5 ? 0 : 1;
  const t = level < 0.5 ? level * 2 : (level - 0.5) * 2;
  const [a, b] = [stops[i], stops[i + 1]];
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * t)).join(",")})`;
}

/** A replayed trajectory: the whole path faint, the walked part strong, a marker at `upTo`. */
export function drawReplay(layer, points, upTo, colour) {
  layer.replaceChildren();
  if (!points.length) return null;
  const line = (pts, cls) => el("polyline", { points: pts.map((p) => `${p.x},${-p.y}`).join(" "), class: cls,
                                              stroke: colour }, layer);
  line(points, "vmap-replay-path");
  const walked = points.filter((p) => p.ms <= upTo.ms);
  if (walked.length) line([...walked, upTo], "vmap-replay-walked");
  const marker = el("circle", { cx: upTo.x, cy: -upTo.y, r: 0.6, class: "vmap-replay-marker", fill: colour,
                                "data-replay-x": upTo.x.toFixed(2), "data-replay-y": upTo.y.toFixed(2) }, layer);
  return marker;
}

/** The position at `ms` along time-ordered points (interpolated between fixes). */
export function positionAt(points, ms) {
  if (!points.length) return null;
  if (ms <= points[0].ms) return { ...points[0], ms };
  for (let i = 1; i < points.length; i += 1) {
    const a = points[i - 1];
    const b = points[i];
    if (ms <= b.ms) {
      const k = b.ms === a.ms ? 1 : (ms - a.ms) / (b.ms - a.ms);
      return { x: a.x + (b.x - a.x) * k, y: a.y + (b.y - a.y) * k, ms, floor: b.floor };
    }
  }
  return { ...points.at(-1), ms };
}
