import { post, showError } from "./commitment.js";

for (const form of document.querySelectorAll(".answer-form")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await post(`/api/clarifications/${form.dataset.id}/answer`, { answer: form.answer.value });
      location.reload();
    } catch (error) {
      showError(error.message);
    }
  });
}
