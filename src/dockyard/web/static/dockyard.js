// Small progressive enhancements; every page works without them (CSP forbids inline script).
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field instanceof HTMLSelectElement && field.dataset.autosubmit !== undefined && field.form) {
    field.form.submit();
  }
});
