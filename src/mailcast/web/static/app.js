// The dashboard's few scripts: times in the viewer's zone, the zone of a schedule form, and the
// editor's live preview (a sandboxed frame: the HTML runs no script there).
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!isNaN(at)) { el.title = el.textContent; el.textContent = at.toLocaleString(); }
  }
  for (const field of document.querySelectorAll("[data-timezone-offset]")) {
    field.value = String(-new Date().getTimezoneOffset());
  }
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = "copied";
    });
  }
  for (const area of document.querySelectorAll("textarea[data-live-preview]")) {
    const frame = document.getElementById(area.dataset.livePreview);
    const show = () => { frame.srcdoc = area.value; };
    area.addEventListener("input", show);
    show();
  }
});
document.addEventListener("htmx:afterSwap", () => {
  for (const el of document.querySelectorAll("#counters time[datetime]")) {
    el.textContent = new Date(el.getAttribute("datetime")).toLocaleString();
  }
});
