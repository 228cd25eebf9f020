// Live video with the platform's media hub (tenderhall/media_hub.py): publish this browser's
// camera, or watch a room receive-only. Signalling is one offer/answer exchange: the browser
// offers after ICE gathering completes (no trickle on a LAN), the server answers {sdp, type}.
// By default the offer is one JSON POST to a URL; a page with its own channel (the evaluation
// session's websocket) passes `signal(offer) -> answer` instead.

const GATHER_TIMEOUT_MS = 10000;

// Errors keep the server's machine code: `error.code` ("codec_unsupported", "room_full", ...).
export class MediaError extends Error {
  constructor(message, code) {
    super(message);
    this.name = "MediaError";
    this.code = code;
  }
}

function newConnection(iceServers) {
  // max-bundle: one transport for audio and video, as the hub answers (aiortc #1414).
  return new RTCPeerConnection({ iceServers: iceServers || [], bundlePolicy: "max-bundle" });
}

// The hub forwards VP8 and Opus without transcoding: offer those first (or only) where the
// browser lets us choose, so the server never has to refuse the offer.
function preferCodec(transceiver, kind, mimeType) {
  if (typeof transceiver.setCodecPreferences !== "function" || !RTCRtpReceiver.getCapabilities) return;
  const codecs = RTCRtpReceiver.getCapabilities(kind)?.codecs || [];
  const wanted = codecs.filter((c) => c.mimeType.toLowerCase() === mimeType);
  if (!wanted.length) return;
  const rtx = codecs.filter((c) => c.mimeType.toLowerCase() === `${kind}/rtx`);
  transceiver.setCodecPreferences([...wanted, ...rtx]);
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", check);
      reject(new MediaError("ICE gathering did not complete", "ice_gathering_timeout"));
    }, GATHER_TIMEOUT_MS);
    function check() {
      if (pc.iceGatheringState !== "complete") return;
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// The default signal: POST the offer to `url`, the JSON response is the answer.
function postOffer(url, csrfToken) {
  return async (offer) => {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken },
      body: JSON.stringify(offer),
    });
    let body = null;
    try { body = await response.json(); } catch { /* not JSON: reported below with the status */ }
    if (!response.ok) {
      const error = body && body.error;
      throw new MediaError(error?.message || `HTTP ${response.status}`, error?.code || `http_${response.status}`);
    }
    return body;
  };
}

async function exchange(pc, signal) {
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc);
  const offer = pc.localDescription;
  const body = await signal({ sdp: offer.sdp, type: offer.type });
  if (!body || body.type !== "answer" || typeof body.sdp !== "string") {
    throw new MediaError("the server did not answer with an SDP answer", "bad_answer");
  }
  await pc.setRemoteDescription({ type: "answer", sdp: body.sdp });
}

// Publish the camera and microphone (640x480, at most 20 fps) to `url`; `video` (optional)
// shows the local preview, muted. `signal` (optional) replaces the POST to `url` (then
// url and csrfToken are unused): an async function of the offer that returns the answer
// and throws MediaError to refuse. Returns {pc, stream, stop()}; throws MediaError.
export async function publishCamera(url, csrfToken, { video = null, iceServers = [], signal = null } = {}) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 20, max: 20 } },
    audio: true,
  });
  const pc = newConnection(iceServers);
  const stop = () => {
    for (const track of stream.getTracks()) track.stop();
    pc.close();
    if (video && video.srcObject === stream) video.srcObject = null;
  };
  try {
    for (const track of stream.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      preferCodec(transceiver, track.kind, track.kind === "video" ? "video/vp8" : "audio/opus");
    }
    if (video) {
      video.muted = true; // never play one's own microphone back
      video.srcObject = stream;
    }
    await exchange(pc, signal || postOffer(url, csrfToken));
  } catch (error) {
    stop();
    throw error;
  }
  return { pc, stream, stop };
}

// Watch a room: receive-only audio and video from `url` (or through `signal`, as for
// publishCamera), shown in `videoElement`. Returns {pc, stop()}; throws MediaError.
export async function watch(url, csrfToken, videoElement, { iceServers = [], signal = null } = {}) {
  const pc = newConnection(iceServers);
  const stream = new MediaStream();
  const stop = () => {
    pc.close();
    if (videoElement.srcObject === stream) videoElement.srcObject = null;
  };
  try {
    preferCodec(pc.addTransceiver("video", { direction: "recvonly" }), "video", "video/vp8");
    preferCodec(pc.addTransceiver("audio", { direction: "recvonly" }), "audio", "audio/opus");
    pc.addEventListener("track", (event) => {
      stream.addTrack(event.track);
      if (videoElement.srcObject !== stream) videoElement.srcObject = stream;
    });
    await exchange(pc, signal || postOffer(url, csrfToken));
  } catch (error) {
    stop();
    throw error;
  }
  // Autoplay with sound may need a user gesture; the page's controls then start it.
  videoElement.play().catch(() => {});
  return { pc, stop };
}
