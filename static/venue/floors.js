// The floors page (admins): load a floor's plan into its editor, read a plan from a file, and
// send it (POST a new floor, PUT a new version). A refused plan shows the server's message and
// outlines the feature it names on the drawing.
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const TRANSFORM = ["scale", "rotation_deg", "dx", "dy"];

async function send(method, url, body) {
  const response = await fetch(url, {
    method, headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    throw Object.assign(new Error(error.message || `HTTP ${response.status}`), { detail: error.detail || {} });
  }
  return data;
}

function showError(form, error) {
  const box = form.querySelector("[data-error]");
  const { code, feature } = error.detail || {};
  box.textContent = error.message + (code ? ` [${code}]` : "");
  box.hidden = false;
  const drawing = form.closest("section")?.querySelector("svg");
  if (drawing && feature) {
    for (const shape of drawing.querySelectorAll("[data-flagged]")) {
      shape.removeAttribute("data-flagged");
      shape.setAttribute("stroke", shape.dataset.stroke || "");
    }
    const shape = [...drawing.querySelectorAll("[data-feature]")].find((s) => s.dataset.feature === feature);
    if (shape) {
      shape.dataset.stroke = shape.getAttribute("stroke") || "";
      shape.setAttribute("data-flagged", "");
      shape.setAttribute("stroke", "#d00000");
      shape.scrollIntoView({ block: "center" });
    }
  }
}

function body(form) {
  let plan;
  try {
    plan = JSON.parse(form.plan.value);
  } catch (error) {
    throw new Error(`The plan is not valid JSON: ${error.message}`);
  }
  const transform = Object.fromEntries(TRANSFORM.map((key) => [key, Number(form[key].value || 0)]));
  const data = { plan, transform };
  if (form.version) data.version = Number(form.version.value);
  if (form.venue_id) {
    Object.assign(data, { venue_id: form.venue_id.value, code: form.code.value, name: form.name.value,
                          level: Number(form.level.value) });
  }
  return data;
}

for (const form of document.querySelectorAll("form[data-url]")) {
  form.plan_file.addEventListener("change", async () => {
    const file = form.plan_file.files[0];
    if (file) form.plan.value = await file.text();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelector("[data-error]").hidden = true;
    try {
      await send(form.dataset.method, form.dataset.url, body(form));
      location.reload();
    } catch (error) {
      showError(form, error);
    }
  });
}

// An editor's plan is fetched when it is first opened (plans can be large).
for (const details of document.querySelectorAll("details.plan-editor")) {
  details.addEventListener("toggle", async () => {
    const form = details.querySelector("form");
    if (!details.open || form.dataset.loaded) return;
    try {
      const response = await fetch(form.dataset.url);
      const { floor } = await response.json();
      form.plan.value = JSON.stringify(floor.plan, null, 1);
      for (const key of TRANSFORM) if (floor.transform && key in floor.transform) form[key].value = floor.transform[key];
      form.version.value = floor.version;
      form.dataset.loaded = "yes";
    } catch (error) {
      showError(form, error);
    }
  });
}
