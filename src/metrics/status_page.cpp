// The admin listener's status page: one self-contained document (no external asset), whose
// script polls /status.json every second and draws requests per second as an inline SVG.
#include "metrics/admin.hpp"

namespace hipache::metrics {

namespace {

constexpr std::string_view kPage = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hipache status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
h2 { font-size: 1em; margin: 1.2em 0 .4em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; }
td, th { padding: .15em .8em .15em 0; text-align: right; }
th:first-child, td:first-child { text-align: left; }
#chart { background: #fff; border: 1px solid #ccc; }
.grid { display: flex; flex-wrap: wrap; gap: 2em; }
.muted { color: #777; }
.bad { color: #b00; }
</style>
</head>
<body>
<h1>hipache</h1>
<div class="muted">requests <span id="requests-total">-</span> &middot; now
<span id="rps">-</span>/s &middot; updated <span id="updated">never</span>
<span id="error" class="bad"></span></div>
<h2>Requests per second</h2>
<svg id="chart" width="720" height="160" viewBox="0 0 720 160" role="img"
 aria-label="requests per second"><polyline id="rps-line" fill="none" stroke="#2a6" stroke-width="2"
 points=""/><text id="rps-max" x="4" y="14" font-size="11" fill="#777"></text></svg>
<div class="grid">
<div><h2>Workers</h2><table><thead><tr><th>pid</th><th>RSS MB</th><th>requests</th>
<th>connections</th></tr></thead><tbody id="workers"></tbody></table>
<div class="muted">restarts <span id="restarts">0</span>,
recycles <span id="recycles">0</span></div>
</div>
<div><h2>Status codes</h2><table><tbody id="codes"></tbody></table></div>
<div><h2>Busiest frontends</h2><table><thead><tr><th>frontend</th><th>requests</th><th>5xx</th>
</tr></thead><tbody id="frontends"></tbody></table></div>
<div><h2>Dead backends</h2><table><tbody id="dead"></tbody></table></div>
<div><h2>Route cache</h2><table><tbody id="cache"></tbody></table></div>
<div><h2>Redis</h2><table><tbody id="redis"></tbody></table></div>
</div>
<script>
"use strict";
const history = [];  // [seconds, requests total]
const keep = 300;
function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}
function fill(id, rows, cls) {
  const body = document.getElementById(id);
  body.replaceChildren();
  for (const values of rows) {
    const row = document.createElement("tr");
    if (cls) row.className = cls;
    for (const v of values) cell(row, v);
    body.appendChild(row);
  }
}
function draw() {
  const rates = [];
  for (let i = 1; i < history.length; i++) {
    const dt = history[i][0] - history[i - 1][0];
    rates.push(dt > 0 ? (history[i][1] - history[i - 1][1]) / dt : 0);
  }
  const max = Math.max(1, ...rates);
  const points = rates.map((r, i) =>
    (720 - (rates.length - 1 - i) * 720 / keep).toFixed(1) + "," +
    (155 - r * 135 / max).toFixed(1));
  document.getElementById("rps-line").setAttribute("points", points.join(" "));
  document.getElementById("rps-max").textContent = "max " + max.toFixed(1) + "/s";
  const last = rates.length ? rates[rates.length - 1].toFixed(1) : "-";
  document.getElementById("rps").textContent = last;
}
function show(s) {
  history.push([performance.now() / 1000, s.requests]);
  if (history.length > keep + 1) history.shift();
  document.getElementById("requests-total").textContent = s.requests;
  document.getElementById("updated").textContent = new Date(s.time * 1000).toISOString();
  document.getElementById("restarts").textContent = s.workerRestarts;
  document.getElementById("recycles").textContent = s.workerRecycles;
  fill("workers", s.workers.map(w =>
    [w.pid, (w.rssBytes / 1048576).toFixed(1), w.requests, w.connections]), "worker-row");
  fill("codes", Object.entries(s.codes).map(([c, n]) => [c, n]));
  fill("frontends", s.frontends.map(f => [f.name, f.requests, f.serverErrors]));
  fill("dead", s.deadBackends.flatMap(d => d.backends.map(b => [d.frontend, b])));
  const c = s.routeCache;
  fill("cache", [["hits", c.hits], ["misses", c.misses], ["invalidations", c.invalidations],
                 ["entries", c.entries], ["bytes", c.bytes]]);
  fill("redis", [["workers connected", s.redis.connectedWorkers + " / " + s.redis.workers],
                 ["reconnects", s.redis.reconnects], ["dead marks", s.deadMarks],
                 ["retries", s.retries]]);
  draw();
}
async function poll() {
  try {
    const response = await fetch("status.json", {cache: "no-store"});
    if (!response.ok) throw new Error("status.json: " + response.status);
    show(await response.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = String(e);
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
)html";

}  // namespace

std::string_view status_page_html() {
  return kPage;
}

}  // namespace hipache::metrics
