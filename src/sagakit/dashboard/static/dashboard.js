// sagakit dashboard: keeps the status counts live by polling the panel's data-src
// (/api/counts on the saga list, /api/workflow-counts on the workflow list).
"use strict";
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
      const response = await fetch(source, {
        headers: { Accept: "application/json" },
        cache: "no-store",
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
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
