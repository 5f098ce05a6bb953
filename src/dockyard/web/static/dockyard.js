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
