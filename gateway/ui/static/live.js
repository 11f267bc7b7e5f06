// Live parts of the dashboard: run tables refresh from their JSON feed when the run-watch stream
// (/ui/runs/watch, Server-Sent Events) reports a change, and a run page reloads when its run
// changes state; without the stream both poll. Plain DOM, no library; text set with textContent.
"use strict";

const POLL_MS = 2000;

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  row.appendChild(td);
}

function when(rfc3339) {
  if (!rfc3339) return "-";
  return new Date(rfc3339).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function runRow(run) {
  const row = document.createElement("tr");
  row.dataset.runId = run.runId;
  const link = document.createElement("a");
  link.href = run.href;
  link.textContent = run.runId;
  const badge = document.createElement("span");
  badge.className = "state state-" + run.state.toLowerCase();
  badge.textContent = run.state;
  cell(row, link);
  cell(row, badge);
  cell(row, String(run.attempt));
  cell(row, when(run.scheduledFor));
  cell(row, when(run.finishedAt));
  cell(row, run.error || "");
  return row;
}

function emptyRow() {
  const row = document.createElement("tr");
  row.className = "empty";
  const td = document.createElement("td");
  td.colSpan = 6;
  td.textContent = "No runs yet.";
  row.appendChild(td);
  return row;
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error("HTTP " + response.status);
  return response.json();
}

// Calls `update` whenever the run-watch stream at `url` reports a change (and once on each
// (re)connection, for what changed meanwhile); the browser resumes a dropped stream itself
// (Last-Event-ID). Where the stream is unavailable (no EventSource, the stream refused or
// closed for good), falls back to calling `update` every POLL_MS. `onRun` sees each run.
function follow(url, update, status, onRun) {
  let busy = false;
  let again = false;
  async function poke() {
    if (busy) { again = true; return; }
    busy = true;
    try { await update(); } finally {
      busy = false;
      if (again) { again = false; poke(); }
    }
  }
  function poll() {
    status("polling every " + POLL_MS / 1000 + " s");
    const tick = async () => {
      if (!document.hidden) await poke();
      setTimeout(tick, POLL_MS);
    };
    setTimeout(tick, POLL_MS);
  }
  if (!url || typeof EventSource === "undefined") { poll(); return; }
  const source = new EventSource(url);
  source.addEventListener("open", () => { status("streaming"); poke(); });
  source.addEventListener("run", (event) => {
    if (onRun && onRun(JSON.parse(event.data))) return;
    poke();
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) { source.close(); poll(); }
    else status("reconnecting");
  });
}

function watchTable(table) {
  const status = table.querySelector(".live");
  let mode = "";
  const show = (text) => { mode = text; };
  async function refresh() {
    try {
      const body = await getJson(table.dataset.feed);
      const rows = body.runs.length ? body.runs.map(runRow) : [emptyRow()];
      table.tBodies[0].replaceChildren(...rows);
      status.textContent = "(live, " + mode + ", updated " + new Date().toLocaleTimeString() + ")";
    } catch (error) {
      status.textContent = "(not updating: " + error.message + ")";
    }
  }
  follow(table.dataset.events, refresh, show);
}

function watchRun(element) {
  async function check() {
    try {
      const body = await getJson(element.dataset.watch);
      if (body.state !== element.dataset.state) window.location.reload();
    } catch (error) {
      // keep the page as it is; try again
    }
  }
  // A change of this run reloads the page; other runs of the schedule are ignored.
  const onRun = (run) => {
    if (run.runId !== element.dataset.runId) return true;
    if (run.state !== element.dataset.state) window.location.reload();
    return true;
  };
  follow(element.dataset.events, check, () => {}, onRun);
}

document.querySelectorAll("table[data-feed]").forEach(watchTable);
document.querySelectorAll("[data-watch]").forEach(watchRun);
