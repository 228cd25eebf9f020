import { post, showError } from "./commitment.js";

const form = document.getElementById("session-form");

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

if (form) {
  const startFromDraw = () => {
    const needed = form.lot.selectedOptions[0]?.dataset.needed;
    if (needed && !form.scheduled_start.value) form.scheduled_start.value = toLocalInput(needed);
  };
  form.lot.addEventListener("change", () => { form.scheduled_start.value = ""; startFromDraw(); });
  startFromDraw();

  document.getElementById("add-room").addEventListener("click", () => {
    const rows = form.querySelectorAll(".room-row");
    rows[rows.length - 1].after(rows[rows.length - 1].cloneNode(true));
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const [tenderId, lotCode] = form.lot.value.split("|");
    const body = {
      tender_id: tenderId, lot_code: lotCode,
      scheduled_start: new Date(form.scheduled_start.value).toISOString(),  // the browser's zone
      rooms: Array.from(form.querySelectorAll(".room-row"), (row) => ({
        room_id: row.querySelector('[name="room_id"]').value, staff_id: row.querySelector('[name="staff_id"]').value,
      })),
      supervisors: Array.from(form.supervisors.selectedOptions, (o) => o.value),
      start_delay_max_minutes: Number(form.start_delay_max_minutes.value),
      rejoin_window_minutes: Number(form.rejoin_window_minutes.value),
    };
    if (form.scheme.value.trim()) {
      try {
        body.scheme = JSON.parse(form.scheme.value);
      } catch {
        showError("The scoring scheme is not valid JSON.");
        return;
      }
    }
    try {
      const created = await post("/api/sessions", body);
      location.href = `/sessions/${created.id}`;
    } catch (error) {
      showError(error.message);
    }
  });
}
