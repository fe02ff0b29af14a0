// runstream admin UI: dialogs, select-all, and live updates over server-sent events.
// Everything works without this script (plain links and forms); it only makes pages livelier.
(function () {
  "use strict";

  // ------------------------------------------------------------------ dialogs
  let opener = null;
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (e.detail.target && e.detail.target.id === "dialog-body") opener = e.detail.elt;
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target && e.detail.target.id === "dialog-body") {
      const dialog = document.getElementById("dialog");
      if (!dialog.open) dialog.showModal();
      const first = dialog.querySelector("input:not([type=hidden]), button, a[href]");
      if (first) first.focus();
    }
  });
  document.addEventListener("click", function (e) {
    const close = e.target.closest("[data-close-dialog]");
    const dialog = document.getElementById("dialog");
    if (close && dialog && dialog.contains(close)) {
      e.preventDefault();
      dialog.close();
    }
  });
  document.addEventListener("close", function (e) {
    if (e.target.id === "dialog") {
      document.getElementById("dialog-body").innerHTML = "";
      if (opener && document.contains(opener)) opener.focus();
    }
  }, true);

  // ------------------------------------------------------------------ select all
  document.addEventListener("change", function (e) {
    if (!e.target.matches("[data-select-all]")) return;
    const form = e.target.form;
    form.querySelectorAll("input[type=checkbox][name=run]").forEach(function (box) {
      box.checked = e.target.checked;
    });
  });

  // ------------------------------------------------------------------ live updates
  // Measured by the benchmark: batches and changes seen, and how long the oldest change
  // of each batch had waited when the page showed it (ms).
  const stats = (window.runstreamLive = { batches: 0, changes: 0, lagMs: 0, maxLagMs: 0, lags: [] });
  let source = null;
  let sourceUrl = "";

  function fmt(n) { return Number(n).toLocaleString("en-US"); }

  function updateRow(row, c) {
    if (c.gone) { row.classList.add("gone"); return; }
    const state = row.querySelector("[data-field=state]");
    if (state && state.textContent !== c.state) {
      state.textContent = c.state;
      state.className = "state state-" + c.state;
    }
    const bar = row.querySelector("[data-field=progress]");
    if (bar && c.items_total) { bar.max = c.items_total; bar.value = c.items_processed || 0; }
    const items = row.querySelector("[data-field=items]");
    if (items) {
      items.textContent = fmt(c.items_processed || 0) +
        (c.items_total !== undefined && c.items_total !== null ? " / " + fmt(c.items_total) : "");
    }
    const left = row.querySelector("[data-field=effects_left]");
    if (left) left.textContent = String(c.effects_left || 0);
  }

  let refreshTimer = null;
  function busyInside(el) {
    // Never swap away a form someone is filling in.
    return el.querySelector("details[open]") || el.contains(document.activeElement) &&
      document.activeElement.matches("input, textarea, select");
  }
  function refreshRun(runId) {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      const live = document.getElementById("live");
      if (!live) return;
      if (busyInside(live)) { refreshRun(runId); return; }
      htmx.ajax("GET", "/ui/runs/" + runId + "/live", { target: "#live", select: "#live", swap: "outerHTML" });
      followLog(runId);
    }, 300);
  }

  // A refresh asked for before someone opened a form can answer after: keep the form, and
  // refresh again once it is closed or sent.
  document.addEventListener("htmx:beforeSwap", function (e) {
    const live = document.getElementById("live");
    if (!live || e.detail.target !== live || !busyInside(live)) return;
    e.detail.shouldSwap = false;
    const config = document.getElementById("live-config");
    if (config && config.dataset.run) refreshRun(config.dataset.run);
  });

  let logBusy = false;
  function followLog(runId) {
    const log = document.getElementById("log");
    if (!log || logBusy) return;
    logBusy = true;
    const after = log.dataset.after || "";
    fetch("/ui/runs/" + runId + "/logs?after=" + encodeURIComponent(after), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        if (!html.trim()) return;
        const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.insertAdjacentHTML("beforeend", html);
        const last = log.lastElementChild;
        if (last) log.dataset.after = last.dataset.id;
        const empty = document.getElementById("log-empty");
        if (empty) empty.remove();
        if (atBottom) log.scrollTop = log.scrollHeight;
      })
      .finally(function () { logBusy = false; });
  }

  function onBatch(e) {
    const batch = JSON.parse(e.data);
    stats.batches += 1;
    stats.changes += batch.runs.length;
    let oldest = Infinity;
    const config = document.getElementById("live-config");
    const runId = config && config.dataset.run;
    let unseen = 0;
    batch.runs.forEach(function (c) {
      if (c.updated_at) oldest = Math.min(oldest, c.updated_at);
      if (runId) {
        // Deleted (after its revert, perhaps): the run's address now says so.
        if (c.id === runId && c.gone) window.location.assign("/ui/runs/" + runId);
        else if (c.id === runId) refreshRun(runId);
        return;
      }
      const row = document.querySelector('tr[data-run-id="' + c.id + '"]');
      if (row) updateRow(row, c); else unseen += 1;
    });
    if (oldest !== Infinity) {
      // How stale the batch's oldest change was when the page showed it.
      stats.lagMs = Math.max(0, Date.now() - oldest * 1000);
      stats.maxLagMs = Math.max(stats.maxLagMs, stats.lagMs);
      if (stats.lags.length < 10000) stats.lags.push(stats.lagMs);
    }
    const note = document.getElementById("live-note");
    if (note && unseen) {
      note.dataset.unseen = String((Number(note.dataset.unseen) || 0) + unseen);
      note.textContent = "Other runs changed since this page was loaded: apply the filters again to see them.";
    }
  }

  function setupLive() {
    const config = document.getElementById("live-config");
    const url = config ? config.dataset.live : "";
    if (url === sourceUrl) return;
    if (source) source.close();
    source = null;
    sourceUrl = url;
    if (!url || !window.EventSource) return;
    source = new EventSource(url);
    source.addEventListener("runs", onBatch);
    source.addEventListener("gap", function () {
      // The feed lost updates this page never got (it was away too long): say so.
      const note = document.getElementById("live-note");
      if (note) note.textContent = "Some live updates were missed: reload the page to be sure.";
      const config = document.getElementById("live-config");
      if (config && config.dataset.run) refreshRun(config.dataset.run);
    });
  }

  // A boosted navigation swaps the page in place: move focus to the new content, as a
  // page load would, so keyboard and screen-reader users start at the top of it.
  document.addEventListener("htmx:afterSettle", function (e) {
    if (e.detail.boosted && e.detail.target === document.body) {
      const main = document.getElementById("main");
      if (main) main.focus({ preventScroll: true });
    }
  });
  document.addEventListener("DOMContentLoaded", setupLive);
  document.addEventListener("htmx:afterSettle", setupLive);
})();
