// The import page: send the chosen CSV file as the request body (the app takes no multipart
// uploads) and show the server-rendered report below the form.
const form = document.getElementById("import-form");
const report = document.getElementById("import-report");
const token = document.querySelector('meta[name="csrf-token"]').content;

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = form.elements.file.files[0];
  if (!file) return;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const mode = form.elements.good_rows.checked ? "good_rows" : "all";
    const response = await fetch(`${form.dataset.action}?mode=${mode}`, {
      method: "POST",
      headers: { "Content-Type": "text/csv", "X-CSRF-Token": token },
      body: file,
    });
    report.innerHTML = await response.text();
  } catch (error) {
    report.textContent = String(error);
  } finally {
    button.disabled = false;
  }
});
