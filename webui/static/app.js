// Cairn Web UI: the only script. It asks before destructive actions and
// keeps a Pod's log tail fresh. Everything works without it.
"use strict";
document.addEventListener("submit", (e) => {
  const button = e.submitter;
  if (button && /^(Delete|Restart|Cordon)$/.test(button.textContent) &&
      !window.confirm(button.textContent + "?")) {
    e.preventDefault();
  }
});
const tail = document.getElementById("log-tail");
if (tail) {
  const refresh = async () => {
    try {
      const r = await fetch(tail.dataset.src, { credentials: "same-origin" });
      const text = await r.text();
      const atEnd = tail.scrollTop + tail.clientHeight >= tail.scrollHeight - 4;
      tail.textContent = text;
      if (atEnd) tail.scrollTop = tail.scrollHeight;
    } catch (_) { /* keep the last text */ }
  };
  tail.scrollTop = tail.scrollHeight;
  setInterval(refresh, 3000);
}
