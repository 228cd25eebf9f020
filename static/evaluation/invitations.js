import { post, showError } from "./commitment.js";

for (const form of document.querySelectorAll(".reply-form")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = event.submitter ? event.submitter.value : "accept";
    try {
      await post(`/api/draws/${form.dataset.draw}/seats/${form.dataset.position}/reply`,
                 { answer, reason: form.reason.value || null });
      location.reload();
    } catch (error) {
      showError(error.message);
    }
  });
}
