// Drives a confirmed bulk action one batch per request and shows its progress. Without this
// script the form posts once and the server does every batch before it answers.
"use strict";
(function () {
  const form = document.getElementById("hz-bulk-form");
  const box = document.getElementById("hz-bulk-progress");
  if (!form || !box || !window.fetch) return;
  const bar = box.querySelector("progress");
  const text = box.querySelector(".hz-progress-text");
  const total = Number(form.dataset.total) || 0;
  const done = form.dataset.done;
  // Not form.action: the form's input named "action" shadows that property.
  const url = form.getAttribute("action") || window.location.href;

  function show(seen, changed) {
    bar.max = Math.max(total, seen);
    bar.value = seen;
    text.textContent = seen.toLocaleString() + " of " + total.toLocaleString() + " looked at, " +
      changed.toLocaleString() + " " + done;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    form.querySelector("input[type=submit]").disabled = true;
    box.hidden = false;
    let after = "", seen = 0, changed = 0;
    show(0, 0);
    for (;;) {
      const body = new FormData(form);
      body.set("_step", "1");
      body.set("_after", after);
      body.set("_changed", String(changed));
      let reply;
      try {
        const response = await fetch(url, {
          method: "POST", body: body, credentials: "same-origin",
          headers: {"X-Requested-With": "XMLHttpRequest"},
        });
        if (!response.ok) throw new Error("HTTP " + response.status);
        reply = await response.json();
      } catch (error) {
        text.textContent = "Stopped after " + changed.toLocaleString() + " " + done + ": " + error.message +
          ". Reload the list and run the action again for the rest.";
        box.classList.add("hz-progress--failed");
        return;
      }
      if (reply.done) break;
      seen += reply.seen;
      changed += reply.changed;
      after = reply.after;
      show(seen, changed);
    }
    box.classList.add("hz-progress--done");
    text.textContent = changed.toLocaleString() + " task" + (changed === 1 ? "" : "s") + " " + done + ".";
    window.location.href = form.dataset.next || url;
  });
})();
