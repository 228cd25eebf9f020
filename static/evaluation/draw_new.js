import { makeSecret, post, showError, showSecret } from "./commitment.js";

const form = document.getElementById("draw-form");

function showPurpose() {
  const purpose = form.purpose.value;
  for (const el of form.querySelectorAll("[data-for]")) el.hidden = el.dataset.for !== purpose;
}
form.purpose.addEventListener("change", showPurpose);
showPurpose();

document.getElementById("add-group").addEventListener("click", () => {
  const rows = form.querySelectorAll(".group-row:not(.group-head)");
  const copy = rows[rows.length - 1].cloneNode(true);
  for (const input of copy.querySelectorAll("input")) if (input.name !== "count" && input.name !== "backups") input.value = "";
  rows[rows.length - 1].after(copy);
});

function localTime(value) {
  return value ? new Date(value).toISOString() : null;  // datetime-local is the browser's zone
}

function list(text) {
  return text.split(/[,，\s]+/).map((s) => s.trim()).filter(Boolean);
}

function groups() {
  return Array.from(form.querySelectorAll(".group-row:not(.group-head)"), (row) => ({
    specialty: row.querySelector('[name="specialty"]').value.trim(),
    count: Number(row.querySelector('[name="count"]').value),
    backups: Number(row.querySelector('[name="backups"]').value),
    quotas: list(row.querySelector('[name="quotas"]').value).map((q) => {
      const [region, count] = q.split(":");
      return { region, count: Number(count) };
    }),
    exclude_regions: list(row.querySelector('[name="exclude_regions"]').value),
  }));
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const { secret, commitment } = await makeSecret();
  const purpose = form.purpose.value;
  const body = {
    purpose, title: form.title.value, commitment, spec: { groups: groups() },
    needed_at: localTime(form.needed_at.value), draw_after: localTime(form.draw_after.value),
    reply_minutes: Number(form.reply_minutes.value),
  };
  if (purpose === "evaluation") body.tender_id = form.tender_id.value.trim();
  if (purpose === "inspection") body.tender_ids = Array.from(form.tender_ids.selectedOptions, (o) => o.value);
  if (purpose === "intermediary") {
    body.purchaser_name = form.purchaser_name.value;
    body.project = form.project.value;
    if (form.purchaser_code.value.trim()) body.purchaser_code = form.purchaser_code.value.trim();
  }
  try {
    const { draw } = await post("/api/draws", body);
    form.hidden = true;
    showSecret(secret, draw.id);
  } catch (error) {
    showError(error.message);
  }
});
