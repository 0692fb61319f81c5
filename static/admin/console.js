// Behaviour every console page shares (no inline scripts: the pages' content security policy).
// A select marked data-autosubmit sends its form when changed (the campaign pickers).
document.addEventListener("change", (event) => {
  if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
});
