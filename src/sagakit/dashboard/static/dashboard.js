// sagakit dashboard: keeps the status counts live by polling the panel's data-src
// (/api/counts on the saga list, /api/workflow-counts on the workflow list), and
// on a saga's page follows its status and who drives it.
"use strict";

async function sagakitJson(source) {
  const response = await fetch(source, {
    headers: { Accept: "application/json" },
    cache: "no-store",
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error("HTTP " + response.status);
  return response.json();
}

(function () {
  const panel = document.getElementById("counts");
  if (!panel) return;
  const source = panel.dataset.src;
  const interval = Number(panel.dataset.interval) || 5000;
  const stamp = document.getElementById("counts-stamp");
  const reload = document.getElementById("counts-reload");
  const initial = {};
  for (const cell of panel.querySelectorAll("[data-status]")) {
    initial[cell.dataset.status] = cell.textContent.trim();
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      const data = await sagakitJson(source);
      for (const cell of panel.querySelectorAll("[data-status]")) {
        const status = cell.dataset.status;
        const n = data.counts[status] || 0;
        cell.textContent = String(n);
        if (reload && cell.textContent !== initial[status]) reload.hidden = false;
      }
      panel.classList.remove("stale");
      panel.dataset.refreshed = String(Date.now());
      if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      panel.classList.add("stale");
      if (stamp) stamp.textContent = "refresh failed";
    }
  }

  refresh();
  setInterval(refresh, interval);
})();

// The saga page: a worker taking a handed-over saga shows without a reload.
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const interval = Number(live.dataset.interval) || 3000;
  const status = document.getElementById("status");
  const driver = document.getElementById("driver");
  const reload = document.getElementById("live-reload");

  async function refresh() {
    if (document.hidden) return;
    try {
      const data = await sagakitJson(live.dataset.src);
      if (driver && data.driver) {
        driver.textContent =
          data.driver.state === "ended" ? "" : "driven by: " + data.driver.text;
      }
      const moved = data.status !== live.dataset.status ||
        (data.driver && data.driver.state !== live.dataset.driver);
      if (moved && reload) reload.hidden = false;
      if (status && data.status !== live.dataset.status) {
        status.textContent = data.status;
        status.className = "status " + data.status;
      }
      live.dataset.refreshed = String(Date.now());
    } catch (error) {
      // the next poll tries again
    }
  }

  setInterval(refresh, interval);
})();
