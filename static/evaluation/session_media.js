// The session's room tiles and their media (docs: DESIGN.md "Remote evaluation sessions").
//
// A room's terminal (an expert seated in the room, or its staff) publishes its camera to the
// server's hub and views every other room; a supervisor only views. Each tile is one room:
// its own connection (publish or view), signalled over the session's websocket through
// `signal(message)`, and its state read from RTCPeerConnection.getStats() every second
// (frames decoded, or encoded for this room's camera), because a connected peer does not mean
// pictures arrive. A connection that fails, closes or stays disconnected is made again with
// backoff once the socket is live; the hub keeps the room's place, so the others carry on.
// One connection the hub ended itself (DTLS close) is not: another terminal of the room now
// sends its camera (the hub keeps one publisher a room), or another page of the same user
// views the room; retrying would take it back and start a ping-pong. The tile offers a button
// instead, and a reconnected socket (a restarted server) makes everything again.

import { publishCamera, watch } from "../tenderhall/media.js";
import { el } from "../trading/hall_render.js";
import { fill, when } from "../trading/hall_format.js";
import { ENDED } from "./session_render.js";

const TICK_MS = 1000;
const DISCONNECTED_GRACE_MS = 5000;
const RETRY_MS = [1000, 2000, 5000, 10000, 30000];

export class RoomMedia {
  /**
   * `container` holds the tiles; `signal({type: "publish"|"view", room?, offer})` resolves to the
   * hub's answer or throws with the server's message; `onSoundBlocked()` is called when the
   * browser refused to play a room's sound without a gesture (the tile then plays muted).
   */
  constructor({ container, S, zone, iceServers, signal, onSoundBlocked }) {
    Object.assign(this, { container, S, zone, iceServers, signal, onSoundBlocked });
    this.tiles = new Map();
    this.snap = null;
    this.live = false;
    this.ticking = false;
    container.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-take-over]");
      const tile = button && this.tiles.get(button.dataset.takeOver);
      if (!tile) return;
      tile.yielded = false;
      tile.retryAt = 0;
      this.ensure();
    });
    setInterval(() => this.tick(), TICK_MS);
  }

  /** Show the snapshot's rooms and start or stop connections to match it; `live`: the socket is open. */
  update(snap, live) {
    this.snap = snap;
    this.live = live;
    for (const room of snap.rooms) {
      if (!this.tiles.has(room.id)) this.tiles.set(room.id, this.newTile(room));
    }
    for (const [id, tile] of this.tiles) {
      if (!snap.rooms.some((r) => r.id === id)) {
        this.drop(tile);
        tile.figure.remove();
        this.tiles.delete(id);
      }
    }
    this.ensure();
  }

  /** The socket is back: whatever is not connected is made again now, without waiting for backoff. */
  reconnected() {
    this.live = true;
    for (const tile of this.tiles.values()) {
      if (tile.link && tile.link.pc.connectionState !== "connected") this.drop(tile);
      tile.retryAt = 0;
      tile.yielded = false;
    }
    this.ensure();
  }

  setLive(live) {
    this.live = live;
    this.ensure();
  }

  /** Let every room's sound play (after the user's click, which browsers require). */
  soundOn() {
    for (const tile of this.tiles.values()) {
      if (tile.link?.kind !== "view") continue;
      tile.video.muted = false;
      tile.video.play().catch(() => {});
    }
  }

  // -- tiles

  newTile(room) {
    const video = el("video", { autoplay: true, playsinline: true });
    const status = el("span", { class: "tile-status" });
    const takeOver = el("button", { type: "button", class: "link", "data-take-over": room.id, hidden: true });
    const figure = el("figure", { class: "session-tile", "data-room": room.id, "data-state": "none", "data-frames": "0" },
      video, el("figcaption", {}, el("strong", { class: "tile-name" }), " ", el("span", { class: "hall-tag tile-venue" }),
        " ", status, " ", takeOver));
    this.container.append(figure);
    return { id: room.id, figure, video, status, takeOver, link: null, starting: false, failures: 0, retryAt: 0,
             error: null, yielded: false, frames: 0, flowing: false, disconnectedAt: null };
  }

  room(id) {
    return this.snap?.rooms.find((r) => r.id === id);
  }

  /** What this page does with `room`: "publish" (its own room, as a terminal), "view", or null. */
  wanted(room) {
    const { me, step } = this.snap;
    if (!room || ENDED.includes(step) || room.left_out) return null;
    if (me.kind === "expert" && !me.member) return null; // not on the committee (yet): no media
    if (room.id === me.room) return me.media_role === "send_receive" ? "publish" : null;
    return "view";
  }

  stateOf(tile, want) {
    if (!want) return ENDED.includes(this.snap.step) ? "ended" : "none";
    if (tile.link) {
      const connection = tile.link.pc.connectionState;
      if (connection !== "connected") return "connecting";
      return tile.flowing ? "live" : "waiting";
    }
    if (tile.starting) return "connecting";
    if (tile.yielded) return "yielded";
    return tile.error ? "failed" : "connecting";
  }

  paint(tile) {
    const room = this.room(tile.id);
    if (!room) return;
    const { S } = this;
    const want = this.wanted(room);
    const state = this.stateOf(tile, want);
    const started = !["scheduled", "sign_in"].includes(this.snap.step);
    tile.figure.dataset.state = state;
    tile.figure.dataset.link = want || "";
    tile.figure.dataset.down = String(Boolean(room.down_since));
    tile.figure.dataset.frames = String(tile.frames);
    tile.figure.classList.toggle("mine", want === "publish");
    tile.figure.querySelector(".tile-name").textContent = `${room.venue} · ${room.name}`;
    tile.figure.querySelector(".tile-venue").textContent = room.main ? S.tile.main : S.tile.sub;
    const notes = [];
    if (room.left_out) notes.push(S.tile.leftOut);
    else if (room.down_since) notes.push(fill(S.tile.down, { time: when(room.down_since, this.zone) }));
    else if (!started) notes.push(room.ready ? S.tile.ready : S.tile.notReady);
    if (want === "publish") notes.push(S.tile.local);
    if (state === "failed") notes.push(fill(S.tile.failed, { reason: tile.error }));
    else if (state === "yielded") notes.push(want === "publish" ? S.tile.yieldedPublish : S.tile.yieldedView);
    else if (S.tile[state]) notes.push(S.tile[state]);
    tile.status.textContent = notes.join(" · ");
    tile.takeOver.hidden = state !== "yielded";
    tile.takeOver.textContent = want === "publish" ? S.tile.sendHere : S.tile.showHere;
  }

  // -- connections

  ensure() {
    if (!this.snap) return;
    for (const tile of this.tiles.values()) {
      const want = this.wanted(this.room(tile.id));
      if (tile.link && tile.link.kind !== want) this.drop(tile);
      if (want && !tile.link && !tile.starting && !tile.yielded && this.live && Date.now() >= tile.retryAt) {
        this.start(tile, want);
      }
      this.paint(tile);
    }
  }

  async start(tile, kind) {
    tile.starting = true;
    tile.error = null;
    const signal = (offer) => this.signal(kind === "publish" ? { type: "publish", offer } : { type: "view", room: tile.id, offer });
    const options = { iceServers: this.iceServers, signal };
    try {
      const handle = kind === "publish"
        ? await publishCamera(null, null, { ...options, video: tile.video })
        : await watch(null, null, tile.video, options);
      if (this.wanted(this.room(tile.id)) !== kind) {
        handle.stop(); // the session moved on (or ended) while this was being set up
        return;
      }
      tile.link = { kind, ...handle };
      tile.failures = 0;
      if (kind === "view") this.autoplay(tile.video);
    } catch (error) {
      this.backoff(tile, error?.message || String(error));
    } finally {
      tile.starting = false;
      this.paint(tile);
    }
  }

  autoplay(video) {
    video.muted = false;
    video.play().catch(() => {
      // No sound without a user gesture in this browser: play muted, offer the button.
      video.muted = true;
      video.play().catch(() => {});
      this.onSoundBlocked();
    });
  }

  backoff(tile, error) {
    tile.error = error;
    tile.failures += 1;
    tile.retryAt = Date.now() + RETRY_MS[Math.min(tile.failures, RETRY_MS.length) - 1];
  }

  drop(tile) {
    if (!tile.link) return;
    tile.link.stop();
    tile.link = null;
    tile.frames = 0;
    tile.flowing = false;
    tile.disconnectedAt = null;
  }

  async tick() {
    if (this.ticking) return; // a slow getStats(): the next look waits for this one
    this.ticking = true;
    try {
      await this.look(Date.now());
    } finally {
      this.ticking = false;
    }
    this.ensure();
  }

  async look(now) {
    for (const tile of this.tiles.values()) {
      const link = tile.link;
      if (!link) continue;
      if (endedByHub(link.pc)) {
        this.drop(tile);
        tile.yielded = true;
        continue;
      }
      const connection = link.pc.connectionState;
      tile.disconnectedAt = connection === "disconnected" ? tile.disconnectedAt ?? now : null;
      if (["failed", "closed"].includes(connection) || now - (tile.disconnectedAt ?? now) > DISCONNECTED_GRACE_MS) {
        this.drop(tile);
        this.backoff(tile, connection);
        continue;
      }
      const frames = await videoFrames(link.pc, link.kind === "publish" ? "outbound-rtp" : "inbound-rtp");
      if (tile.link !== link) continue;
      tile.flowing = frames > tile.frames;
      tile.frames = frames;
    }
  }
}

/** The hub closed this connection (DTLS close_notify): Chromium reports the transport "closed" at once. */
function endedByHub(pc) {
  return pc.getTransceivers().some((t) => t.sender.transport?.state === "closed" || t.receiver.transport?.state === "closed");
}

/** Frames encoded (outbound-rtp) or decoded (inbound-rtp) so far on the connection's video. */
async function videoFrames(pc, type) {
  let frames = 0;
  try {
    for (const stat of (await pc.getStats()).values()) {
      if (stat.type === type && stat.kind === "video") frames += (type === "outbound-rtp" ? stat.framesEncoded : stat.framesDecoded) || 0;
    }
  } catch {
    // a connection closing under us: no frames this time
  }
  return frames;
}
