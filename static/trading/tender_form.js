// The agent's tender pages: the new-tender form (sent as JSON to /api/tenders), publication
// and changes (clarification, deadline extension) of a published tender.

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const headers = { "Content-Type": "application/json", "X-CSRF-Token": csrf };
const errorBox = document.getElementById("form-error");

function fail(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

async function send(url, body) {
  const response = await fetch(url, { method: "POST", headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    fail(data.error ? `${data.error.message} (${data.error.code})` : `HTTP ${response.status}`);
    return null;
  }
  return data;
}

function localToIso(value) {
  // <input type="datetime-local"> is in the browser's zone; send an explicit offset.
  return value ? new Date(value).toISOString() : "";
}

function extraFields(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const [name, label, type] = line.split("|").map((part) => part.trim());
    return { name, label: label || name, type: type || "text", required: true };
  });
}

const form = document.getElementById("tender-form");
if (form) {
  document.getElementById("add-lot").addEventListener("click", () => {
    const rows = form.querySelectorAll(".lot-row");
    const copy = rows[rows.length - 1].cloneNode(true);
    for (const input of copy.querySelectorAll("input")) input.value = "";
    copy.querySelector("[name=lot_code]").value = `L${rows.length + 1}`;
    rows[rows.length - 1].after(copy);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const f = new FormData(form);
    const lots = [...form.querySelectorAll(".lot-row")].map((row) => ({
      code: row.querySelector("[name=lot_code]").value.trim(),
      name: row.querySelector("[name=lot_name]").value.trim(),
      budget: row.querySelector("[name=lot_budget]").value.trim(),
    }));
    const rule = f.get("decryption_rule");
    const custodians = rule === "void" ? [] : f.getAll("custodians");
    const defaults = [
      { name: "price", label: "投标报价（元）", type: "money", required: true },
      { name: "duration_days", label: "工期（日历天）", type: "integer", required: true },
      { name: "quality", label: "质量承诺", type: "text", required: true },
    ];
    const body = {
      name: f.get("name"), code: f.get("code"), tenderer: f.get("tenderer"), budget: f.get("budget").trim(),
      control_price: f.get("control_price").trim() || null, evaluation_method: f.get("evaluation_method"),
      lots, deadline: localToIso(f.get("deadline")), decryption_minutes: Number(f.get("decryption_minutes")),
      decryption_rule: rule, custodians, threshold: rule === "void" ? 0 : Number(f.get("threshold")),
      min_bidders: Number(f.get("min_bidders")), hall_opens_minutes: Number(f.get("hall_opens_minutes")),
      confirm_minutes: Number(f.get("confirm_minutes")), show_bid_count: f.get("show_bid_count") === "on",
      summary_fields: [...defaults, ...extraFields(f.get("extra_fields") || "")],
    };
    const data = await send("/api/tenders", body);
    if (data) location.href = `/tenders/${data.tender.id}`;
  });
}

const tender = document.getElementById("tender");
const publish = document.getElementById("publish");
if (publish) {
  publish.addEventListener("click", async () => {
    if (await send(`/api/tenders/${tender.dataset.tenderId}/publish`)) location.reload();
  });
}
const changeForm = document.getElementById("change-form");
if (changeForm) {
  changeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = new FormData(changeForm);
    const kind = f.get("kind");
    const body = kind === "clarification" ? { kind, text: f.get("text") } : { kind, deadline: localToIso(f.get("deadline")) };
    if (await send(`/api/tenders/${tender.dataset.tenderId}/changes`, body)) location.reload();
  });
}
