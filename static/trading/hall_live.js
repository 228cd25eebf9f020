// Live updates for the opening hall: the event socket with resumption, and a debounced refresher.
//
// Events only say that something changed; the page then re-reads the whole snapshot, so a
// missed, doubled or reordered event can never leave it showing a state the opening was
// never in. The socket resumes after the last event id seen (tenderhall/event_routes.py
// sends every event after `after` exactly once), and reconnects with exponential backoff.

const CLOSE_BAD_REQUEST = 4400;
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_FORBIDDEN = 4403;
const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30000;

/**
 * Keep one socket on `topic` open until stop() is called. `lastId()` gives the event id to
 * resume after; `onEvent(event)` is called for each event; `onState(state, detail)` with
 * "connecting" | "live" | "retrying" ({seconds}) | "loggedOut" | "refused" ({reason}).
 * Bad-request, forbidden and logged-out closes are final: retrying cannot help.
 */
export function followTopic({ topic, lastId, onEvent, onState }) {
  let socket = null;
  let stopped = false;
  let backoff = BACKOFF_START_MS;
  let timer = null;

  function open() {
    if (stopped) return;
    onState("connecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/ws/events?topic=${encodeURIComponent(topic)}&after=${lastId()}`;
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      backoff = BACKOFF_START_MS;
      onState("live");
    });
    socket.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return; // not ours to interpret; the next snapshot is the truth anyway
      }
      onEvent(event);
    });
    socket.addEventListener("close", (closed) => {
      socket = null;
      if (stopped) return;
      if (closed.code === CLOSE_UNAUTHENTICATED) return onState("loggedOut");
      if (closed.code === CLOSE_FORBIDDEN || closed.code === CLOSE_BAD_REQUEST) {
        return onState("refused", { reason: closed.reason || String(closed.code) });
      }
      // 4409 (fell behind), a restart, a network drop: resume after the last id we saw.
      const wait = backoff;
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      onState("retrying", { seconds: Math.round(wait / 1000) });
      timer = setTimeout(open, wait);
    });
  }

  open();
  return {
    /** Reconnect now (e.g. the browser came back online), keeping the resume point. */
    poke() {
      if (stopped || socket) return;
      clearTimeout(timer);
      backoff = BACKOFF_START_MS;
      open();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (socket) socket.close(1000, "page closed");
    },
  };
}

/**
 * A refresher: request() asks for `load()` to run within `delayMs`; requests that arrive
 * meanwhile are folded into that one run, and a request made while a run is in flight
 * causes exactly one more run after it, so the last change is never missed.
 */
export function debouncedRefresher(load, delayMs = 150) {
  let timer = null;
  let running = false;
  let again = false;

  async function run() {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await load();
    } finally {
      running = false;
      if (again) {
        again = false;
        request(0);
      }
    }
  }

  function request(delay = delayMs) {
    if (timer !== null) return;
    timer = setTimeout(run, delay);
  }

  return { request, now: () => { clearTimeout(timer); timer = null; return run(); } };
}
