import { makeSecret, post, showError, showSecret } from "./commitment.js";
import { followTopic } from "../trading/hall_live.js";

// Answers, replacements and extensions arrive as events: the page re-reads itself on one of ours.
const live = document.getElementById("draw-live");
if (live) {
  const mine = new Set(live.dataset.draws.split(" ").filter(Boolean));
  let last = Number(live.dataset.after);
  let reloading = null;
  followTopic({
    topic: live.dataset.topic,
    lastId: () => last,
    onEvent: (event) => {
      last = Math.max(last, event.id);
      const payload = event.payload || {};
      if (String(event.kind || "").startsWith("draw.") && mine.has(payload.draw) && !reloading) {
        reloading = setTimeout(() => location.reload(), 300);
      }
    },
    onState: () => {},
  });
}

async function act(url, body) {
  try {
    await post(url, body);
    location.reload();
  } catch (error) {
    showError(error.message);
  }
}

for (const form of document.querySelectorAll(".run-form")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(`/api/draws/${form.dataset.draw}/run`, { secret: form.secret.value.trim() });
  });
}
for (const button of document.querySelectorAll(".cancel-draw")) {
  button.addEventListener("click", () => act(`/api/draws/${button.dataset.draw}/cancel`));
}
const unseal = document.getElementById("unseal-form");
if (unseal) {
  unseal.addEventListener("submit", (event) => {
    event.preventDefault();
    act(`/api/draws/${unseal.dataset.draw}/unseal`);
  });
}
const extend = document.getElementById("extend-form");
if (extend) {
  extend.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { secret, commitment } = await makeSecret();
    try {
      await post(`/api/draws/${extend.dataset.draw}/extend`, { commitment, backups: Number(extend.backups.value) });
      extend.hidden = true;
      showSecret(secret, extend.dataset.draw);
      document.getElementById("secret-box").insertAdjacentHTML("beforeend", `<p><a href="">↻</a></p>`);
    } catch (error) {
      showError(error.message);
    }
  });
}
