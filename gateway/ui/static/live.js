// Live parts of the dashboard: run tables refresh from their JSON feed, and a run page reloads
// when its run changes state. Plain DOM, no library; text is set with textContent only.
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

function watchTable(table) {
  const status = table.querySelector(".live");
  async function refresh() {
    if (!document.hidden) {
      try {
        const body = await getJson(table.dataset.feed);
        const rows = body.runs.length ? body.runs.map(runRow) : [emptyRow()];
        table.tBodies[0].replaceChildren(...rows);
        status.textContent = "(live, updated " + new Date().toLocaleTimeString() + ")";
      } catch (error) {
        status.textContent = "(not updating: " + error.message + ")";
      }
    }
    setTimeout(refresh, POLL_MS);
  }
  setTimeout(refresh, POLL_MS);
}

function watchRun(element) {
  async function check() {
    try {
      const body = await getJson(element.dataset.watch);
      if (body.state !== element.dataset.state) {
        window.location.reload();
        return;
      }
    } catch (error) {
      // keep the page as it is; try again
    }
    setTimeout(check, POLL_MS);
  }
  setTimeout(check, POLL_MS);
}

document.querySelectorAll("table[data-feed]").forEach(watchTable);
document.querySelectorAll("[data-watch]").forEach(watchRun);
