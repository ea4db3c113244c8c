// Refresh the dashboard in place: fetch the server-rendered fragment and swap it in.
// No full reload, no library. Pauses while the tab is hidden; says so when it cannot refresh.
"use strict";
(function () {
  const root = document.getElementById("hz-dashboard");
  const live = document.getElementById("hz-live");
  if (!root) {
    return;
  }
  const url = root.dataset.url;
  const every = Number(root.dataset.refreshMs) || 5000;
  let timer = null;
  let busy = false;

  function setState(state, text) {
    if (!live) {
      return;
    }
    live.dataset.state = state;
    live.querySelector(".hz-live-text").textContent = text;
  }

  async function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      const response = await fetch(url, {
        credentials: "same-origin",
        headers: {"X-Requested-With": "XMLHttpRequest"},
        cache: "no-store",
      });
      // A redirect (to the login page) or an error page is not a fragment: keep what is shown.
      if (!response.ok || response.headers.get("X-Horsies-Fragment") !== "1") {
        setState("stale", response.status === 403 || response.redirected
          ? "Signed out: reload the page" : "Not refreshing (HTTP " + response.status + ")");
        return;
      }
      root.innerHTML = await response.text();
      root.dispatchEvent(new CustomEvent("horsies:refreshed"));
      setState("live", "Live · every " + Math.round(every / 1000) + " s");
    } catch (error) {
      setState("stale", "Offline: retrying");
    } finally {
      busy = false;
    }
  }

  function start() {
    if (timer === null) {
      timer = window.setInterval(refresh, every);
    }
  }

  function stop() {
    if (timer !== null) {
      window.clearInterval(timer);
      timer = null;
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      stop();
      setState("paused", "Paused while hidden");
    } else {
      refresh();
      start();
    }
  });
  start();
})();
