import { post, showError } from "./commitment.js";

const form = document.getElementById("venue-form");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const rooms = [];
  for (const [i, line] of form.rooms.value.split("\n").map((l) => l.trim()).filter(Boolean).entries()) {
    const match = line.match(/^(.+?)[,，\s]+(\d+)$/);
    if (!match) {
      showError(`Room line ${i + 1}: write the name, a comma and the number of seats.`);
      return;
    }
    rooms.push({ name: match[1].trim(), seats: Number(match[2]) });
  }
  try {
    await post("/api/venues", {
      name: form.name.value, region_code: form.region_code.value, address: form.address.value, rooms,
    });
    location.reload();
  } catch (error) {
    showError(error.message);
  }
});
