// Small progressive enhancements; every page works without them (CSP forbids inline script).
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field instanceof HTMLSelectElement && field.dataset.autosubmit !== undefined && field.form) {
    field.form.submit();
  }
});

// A "Copy" button on command blocks (<pre data-copy>): the text is there to select without JavaScript.
document.addEventListener("DOMContentLoaded", () => {
  for (const block of document.querySelectorAll("pre[data-copy]")) {
    if (!navigator.clipboard) break;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(block.innerText.replace(/\nCopy$/, "").trim());
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
    block.appendChild(button);
  }
});

// "Copy" buttons for values shown shortened (digests): rendered hidden, shown where the clipboard works, and
// again in content htmx swaps in.
function showCopyButtons(root) {
  if (!navigator.clipboard) return;
  for (const button of root.querySelectorAll("button[data-copy-value][hidden]")) button.hidden = false;
}
document.addEventListener("DOMContentLoaded", () => showCopyButtons(document));
document.addEventListener("htmx:afterSettle", (event) => showCopyButtons(event.target));
document.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("button[data-copy-value]") : null;
  if (!button) return;
  await navigator.clipboard.writeText(button.dataset.copyValue);
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
});

// A chosen image is previewed before the form is sent (<input type="file" data-preview="img id">): read as a
// data: URL, which the CSP's img-src allows.
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.dataset.preview) return;
  const preview = document.getElementById(input.dataset.preview);
  const file = input.files && input.files[0];
  if (!preview || !file || !file.type.startsWith("image/")) return;
  const reader = new FileReader();
  reader.addEventListener("load", () => {
    preview.src = String(reader.result);
    preview.alt = "Preview of the chosen logo";
    preview.hidden = false;
  });
  reader.readAsDataURL(file);
});

// Live character counters (<input data-count="140"> with <span data-counter-for="its id">); the server checks
// the same limit on save, so the page works without this.
document.addEventListener("input", (event) => {
  const field = event.target;
  if (!(field instanceof HTMLInputElement) || !field.dataset.count) return;
  const counter = document.querySelector(`[data-counter-for="${field.id}"]`);
  if (!counter) return;
  const max = Number(field.dataset.count);
  counter.textContent = `${field.value.length}/${max}`;
  counter.classList.toggle("over", field.value.length > max);
});
