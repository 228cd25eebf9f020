// The 代理码 page (agents and admins): issue a code and show its QR once, list a tender's codes,
// and check a scanned code at the entrance. Everything from the server is put in the page as
// text (textContent) or, for the QR, as an <img> from a data URI: an SVG shown as an image runs
// no script, so even a tampered answer cannot act in this page.
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const TEXTS = JSON.parse(document.getElementById("agent-code-texts").textContent);

async function call(url, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  };
  const response = await fetch(url, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    throw new Error(error.message || `HTTP ${response.status}`);
  }
  return data;
}

function svgDataUri(svg) {
  let binary = "";
  for (const b of new TextEncoder().encode(svg)) binary += String.fromCharCode(b);
  return "data:image/svg+xml;base64," + btoa(binary);
}

function holder(answer) {
  return `${answer.person.name} · ${answer.tender.code} ${answer.tender.name} · ${answer.valid_on}`;
}

// Each form shows its own refusal; a failed request leaves what was shown before untouched.
function handle(form, work) {
  const box = form.querySelector("[data-error]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    box.hidden = true;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await work(form);
    } catch (error) {
      box.textContent = error.message;
      box.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}

async function showCodes(tenderId) {
  const listForm = document.getElementById("list-form");
  if (!listForm) return;
  listForm.tender_id.value = tenderId;
  const { codes } = await call(`/api/venue/agent-codes?tender_id=${encodeURIComponent(tenderId)}`);
  const table = document.getElementById("codes");
  const rows = codes.map((c) => {
    const row = document.createElement("tr");
    for (const value of [c.person.name, c.valid_on, new Date(c.created_at).toLocaleString(), String(c.accepted_scans)]) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    row.lastChild.className = "num";
    return row;
  });
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = codes.length === 0;
  document.getElementById("no-codes").hidden = codes.length !== 0;
}

const issueForm = document.getElementById("issue-form");
if (issueForm) {
  handle(issueForm, async (form) => {
    const box = document.getElementById("issued");
    box.hidden = true;  // the previous code is not shown again
    const issued = await call("/api/venue/agent-codes", {
      tender_id: form.tender_id.value, person_id: form.person_id.value, valid_on: form.valid_on.value,
    });
    document.getElementById("issued-qr").src = svgDataUri(issued.qr_svg);
    document.getElementById("issued-code").textContent = issued.qr_payload;
    document.getElementById("issued-for").textContent = holder(issued);
    box.hidden = false;
    await showCodes(issued.tender.id).catch(() => {});
  });
}

const listForm = document.getElementById("list-form");
if (listForm) handle(listForm, (form) => showCodes(form.tender_id.value));

handle(document.getElementById("scan-form"), async (form) => {
  const body = { code: form.code.value };
  if (form.tender_id.value) body.tender_id = form.tender_id.value;
  const answer = await call("/api/venue/agent-codes/scan", body);
  const result = document.getElementById("scan-result");
  result.className = answer.accepted ? "notice" : "alert";
  result.querySelector("[data-verdict]").textContent = TEXTS[answer.reason] || answer.reason;
  result.querySelector("[data-holder]").textContent = answer.person ? holder(answer) : "";
  result.hidden = false;
  form.code.value = "";  // ready for the next person's scan
  form.code.focus();
});
