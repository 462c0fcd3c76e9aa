// The operator's status page: one self-contained HTML document (no build step, no external assets). It polls
// /api/status every 2 s, listens to /api/events, and draws per pool a latency chart and a req/s + errors chart as
// inline SVG from the history the control process keeps (the last 15 minutes), so a page opened now has its
// charts at once. Drain/undrain buttons post to the admin API (same origin: the session cookie goes along).

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-proxy status</title>
<link rel="icon" href="data:,">
<style>
  :root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --mute: #57606a; --line: #d0d7de; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
  header { background: #24292f; color: #fff; padding: 10px 20px; display: flex; gap: 24px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header .meta { color: #d0d7de; font-size: 12px; }
  main { padding: 16px 20px; display: grid; gap: 16px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; min-width: 0; overflow-x: auto; }
  section[hidden] { display: none; }
  section h2 { font-size: 15px; margin: 0 0 8px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); font-variant-numeric: tabular-nums; }
  th { color: var(--mute); font-weight: 600; font-size: 12px; }
  .dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 6px; vertical-align: middle; }
  .up { background: var(--ok); } .down { background: var(--bad); } .drain { background: var(--warn); } .unknown { background: #8c959f; }
  .state-up { color: var(--ok); } .state-down { color: var(--bad); font-weight: 600; } .state-drain { color: var(--warn); } .state-unknown { color: var(--mute); }
  td.names { overflow-wrap: anywhere; }
  button.member-action { font: inherit; font-size: 12px; padding: 1px 8px; border: 1px solid var(--line); border-radius: 4px; background: #f6f8fa; cursor: pointer; }
  button.member-action:hover { background: #eaeef2; }
  .charts { display: grid; grid-template-columns: 2fr 1fr; gap: 12px; }
  .pools { display: grid; gap: 16px; }
  .chart { display: block; width: 100%; height: auto; margin-top: 8px; }
  .muted { color: var(--mute); }
  #events { max-height: 240px; overflow: auto; font-family: ui-monospace, monospace; font-size: 12px; }
  #events div { padding: 2px 0; border-bottom: 1px dotted var(--line); }
  .grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 16px; }
  #error { color: var(--bad); }
  #sec-scale { grid-column: 1 / -1; }
  .scale-pool .chart { max-width: 600px; }
</style>
</head>
<body>
<header><h1>edge-proxy</h1><span class="meta" id="meta">loading…</span><span id="error"></span></header>
<main>
  <section><h2>Pools</h2><div class="pools" id="pools"></div></section>
  <div class="grid2">
    <section><h2>Listeners</h2><table id="listeners"></table></section>
    <section><h2>Routes</h2><table id="routes"></table></section>
  </div>
  <div class="grid2">
    <section id="sec-tunnels"><h2>Tunnels</h2><div class="muted" data-empty>no tunnels configured</div></section>
    <section id="sec-certificates"><h2>Certificates</h2><div class="muted" data-empty>no TLS listeners</div></section>
    <section id="sec-ha" hidden><h2>HA</h2></section>
    <section id="sec-scale" hidden><h2>Scaling</h2></section>
  </div>
  <section id="sec-shadow" hidden><h2>Shadow traffic</h2></section>
  <section><h2>Recent events</h2><div id="events"></div></section>
</main>
<script>
"use strict";
const HISTORY_S = 900;             // chart window: the last fifteen minutes (what the control process keeps)
const history = new Map();         // pool -> [{t, p50, p95, rps}], only when the API sends no history
const lastCount = new Map();       // backend key -> {t, requests}
const esc = s => String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (n, d = 1) => n === undefined || n === null || Number.isNaN(n) ? "–" : Number(n).toFixed(d);

// Without a health check a member is known only by its traffic: none yet is "unknown", and every try failing
// (a tcp:// backend with nothing listening) is "failing", never a green "healthy".
const STATE_CLASS = { healthy: "up", unhealthy: "down", unreachable: "down", failing: "down", draining: "drain", unknown: "unknown" };

function backendState(b, pool, last) {
  if (b.state !== undefined && STATE_CLASS[b.state] !== undefined) {
    // An unchecked member that did fine once but fails every try now (the last sample) is failing too.
    if (b.state === "healthy" && pool && pool.checked === false && last && last.error_rate >= 1) return ["down", "failing"];
    return [STATE_CLASS[b.state], b.state];
  }
  if (b.draining) return ["drain", "draining"];
  if (!b.healthy) return ["down", "unhealthy"];
  if (!b.available) return ["down", "unreachable"];
  if (pool && pool.checked === false) {
    if (b.requests === 0) return ["unknown", "unknown"];
    if (b.failures >= b.requests || (last && last.error_rate >= 1)) return ["down", "failing"];
  }
  return ["up", "healthy"];
}

// A member's last 15 minutes in a table cell: req/s (green) and p95 (orange), each scaled to its own maximum.
function spark(points) {
  const w = 120, h = 22;
  if (points.length < 2) return "";
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  const x = t => (w * (t - t0) / Math.max(1, t1 - t0));
  const maxR = Math.max(...points.map(p => p.rps || 0)), maxL = Math.max(...points.map(p => p.p95 || 0));
  let svg = '<svg class="spark" width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + ' ' + h + '"><title>last ' + ago(t1 - t0) + ': up to ' + fmt(maxR) + ' req/s, p95 up to ' + fmt(maxL, 2) + ' ms</title>';
  for (const [k, max, color] of [["rps", maxR, "#1a7f37"], ["p95", maxL, "#bc4c00"]]) {
    if (!(max > 0)) continue;
    for (const pts of runs(points, k, x, v => 1 + (h - 2) * (1 - v / max), t0)) svg += '<polyline data-series="' + k + '" fill="none" stroke="' + color + '" stroke-width="1.2" points="' + pts + '"/>';
  }
  return svg + '</svg>';
}

// Failed tries over tries across the history (the tries of each sample weigh in), or "–" without traffic.
function errRate(points) {
  let tries = 0, failed = 0;
  for (const p of points) { tries += p.rps; failed += p.rps * p.error_rate; }
  return tries > 0 ? fmt(100 * failed / tries) + "%" : "–";
}

// The history's series as chart points ({t, rps, error_rate, p50, p95, p99}); null latencies stay gaps.
function pointsOf(series) {
  if (!series) return [];
  return series.t.map((t, i) => ({ t, rps: series.rps[i], error_rate: series.error_rate[i], p50: series.p50[i], p95: series.p95[i], p99: series.p99[i] }));
}

function rate(key, requests, now) {
  const prev = lastCount.get(key);
  lastCount.set(key, { t: now, requests });
  if (prev === undefined || now <= prev.t) return undefined;
  return Math.max(0, (requests - prev.requests) / ((now - prev.t) / 1000));
}

// Rounds a chart's top up to 1, 2 or 5 x 10^k so the grid labels are readable.
function niceMax(v) {
  const k = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * k) return m * k;
  return 10 * k;
}

// A certificate's names: the first three, then how many more (all of them in the cell's title).
function namesOf(names) {
  const more = names.length - 3;
  return esc(names.slice(0, 3).join(", ")) + (more > 0 ? ' <span class="muted">+' + more + ' more</span>' : "");
}

function bytes(n) {
  if (n === undefined || n === null) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + " " + u[i];
}

function ago(ms) {
  const s = Math.round(ms / 1000);
  return s < 60 ? s + "s" : Math.floor(s / 60) + "m" + (s % 60 ? " " + (s % 60) + "s" : "");
}

const SERIES = [["p50", "#0969da", ""], ["p95", "#bc4c00", ""], ["p99", "#8250df", "4 3"]];

const RATE_SERIES = [["rps", "#1a7f37", ""], ["errors", "#cf222e", ""]];

// Polyline points per run of defined values: a gap in the data is a gap in the line; a lone point is a short stroke.
function runs(points, k, x, y, t0) {
  const out = [];
  let cur = [];
  const flush = () => {
    if (cur.length === 1) cur.push([cur[0][0] + 3, cur[0][1]]);
    if (cur.length) out.push(cur.map(([a, b]) => a.toFixed(1) + "," + b.toFixed(1)).join(" "));
    cur = [];
  };
  for (const p of points) {
    if (p.t < t0) continue;
    if (p[k] === undefined || p[k] === null) { flush(); continue; }
    cur.push([x(p.t), y(p[k])]);
  }
  flush();
  return out;
}

function chart(points, opts = {}) {
  const series = opts.series || SERIES, unit = opts.unit || " ms", title = opts.title || "upstream time to first byte";
  const w = opts.w || 1000, h = 150, left = 48, right = 10, top = 18, bottom = 22;
  const open = '<svg class="chart' + (opts.cls ? " " + opts.cls : "") + '" viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="' + esc(title) + ' chart">';
  if (points.length < 2) return open + '<text x="' + left + '" y="' + (top + 24) + '" font-size="13" fill="#57606a">' + (opts.empty || "collecting latency samples…") + '</text></svg>';
  // The x axis spans what has been collected, up to the last five minutes, so a fresh page is not one sliver.
  const t1 = points[points.length - 1].t, t0 = Math.max(points[0].t, t1 - HISTORY_S * 1000);
  const max = niceMax(Math.max(1, ...points.map(p => Math.max(...series.map(([k]) => p[k] || 0)))));
  const x = t => left + (w - left - right) * (t - t0) / Math.max(1, t1 - t0);
  const y = v => top + (h - top - bottom) * (1 - Math.min(v, max) / max);
  let svg = open;
  for (const f of [0, 0.5, 1]) {
    const yy = y(max * f).toFixed(1);
    svg += '<line x1="' + left + '" y1="' + yy + '" x2="' + (w - right) + '" y2="' + yy + '" stroke="#d0d7de"' + (f === 0 ? '' : ' stroke-dasharray="2 4"') + '/>' +
      '<text x="' + (left - 6) + '" y="' + (Number(yy) + 4) + '" font-size="11" text-anchor="end" fill="#57606a">' + fmt(max * f, max < 10 ? 1 : 0) + unit + '</text>';
  }
  svg += '<text x="' + left + '" y="' + (h - 4) + '" font-size="11" fill="#57606a">−' + ago(t1 - t0) + '</text>' +
    '<text x="' + (w - right) + '" y="' + (h - 4) + '" font-size="11" text-anchor="end" fill="#57606a">now</text>';
  for (const [k, color, dash] of series) {
    for (const pts of runs(points, k, x, y, t0)) svg += '<polyline data-series="' + k + '" fill="none" stroke="' + color + '" stroke-width="1.8"' + (dash ? ' stroke-dasharray="' + dash + '"' : '') + ' points="' + pts + '"/>';
  }
  let lx = w - right - 50 * series.length - 10;
  svg += '<text x="' + (lx - 8) + '" y="11" font-size="11" text-anchor="end" fill="#57606a">' + esc(title) + '</text>';
  for (const [k, color] of series) {
    svg += '<rect x="' + lx + '" y="4" width="10" height="3" fill="' + color + '"/><text x="' + (lx + 14) + '" y="11" font-size="11" fill="' + color + '">' + k + '</text>';
    lx += 50;
  }
  return svg + '</svg>';
}

const SCALE_MARK = { "scale.up": "#1a7f37", "scale.down": "#0969da", "scale.capped": "#cf222e", "scale.saturated": "#9a6700" };

// One pool's scaler: backends now and desired, the target (learned or set), spend against the cap, and the
// observed metric over time with the target dashed and each scale event marked (colour by kind).
function scalePanel(p) {
  const target = p.target > 0 ? fmt(p.target, 1) + " ms" + (p.targetLearned === true ? " (learned)" : p.targetLearned === false ? " (learning…)" : "") : "learning…";
  const cap = p.maxCostPerHour !== undefined && p.maxCostPerHour !== null ? " of cap " + fmt(p.maxCostPerHour, 2) : "";
  let svg = "";
  const ev = p.events || [];
  if (ev.length >= 2) {
    const w = 600, h = 140, left = 44, right = 8, top = 10, bottom = 18;
    const ts = ev.map(e => Date.parse(e.time)), t0 = ts[0], t1 = ts[ts.length - 1];
    const max = niceMax(Math.max(1, p.target, ...ev.map(e => e.observed)));
    const x = t => left + (w - left - right) * (t - t0) / Math.max(1, t1 - t0);
    const y = v => top + (h - top - bottom) * (1 - Math.min(v, max) / max);
    svg = '<svg class="chart" viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="scaling chart for ' + esc(p.pool) + '">' +
      '<text x="' + (left - 4) + '" y="' + (top + 8) + '" font-size="10" text-anchor="end" fill="#57606a">' + fmt(max, 0) + ' ms</text>' +
      '<polyline fill="none" stroke="#bc4c00" stroke-width="1.6" points="' + ev.map((e, i) => x(ts[i]).toFixed(1) + "," + y(e.observed).toFixed(1)).join(" ") + '"/>';
    if (p.target > 0) svg += '<line x1="' + left + '" x2="' + (w - right) + '" y1="' + y(p.target).toFixed(1) + '" y2="' + y(p.target).toFixed(1) + '" stroke="#57606a" stroke-dasharray="5 4"/>';
    ev.forEach((e, i) => {
      if (e.kind === "scale.hold") return;
      svg += '<circle class="scale-mark" data-kind="' + esc(e.kind) + '" cx="' + x(ts[i]).toFixed(1) + '" cy="' + y(e.observed).toFixed(1) + '" r="4" fill="' + (SCALE_MARK[e.kind] || "#57606a") + '"><title>' + esc(e.kind + " " + e.from + " → " + e.to + ": " + e.reason) + '</title></circle>';
    });
    svg += '</svg>';
  }
  const last = ev.filter(e => e.kind !== "scale.hold").slice(-5).reverse().map(e => '<div><span style="color:' + (SCALE_MARK[e.kind] || "") + '">' + esc(e.kind) + '</span> ' + e.from + ' → ' + e.to + ' <span class="muted">' + esc(e.reason) + '</span></div>').join("");
  return '<div class="scale-pool" data-scale-pool="' + esc(p.pool) + '"><h3>' + esc(p.pool) + ' <span class="muted">' + esc(p.provider) + ' · ' + esc(p.metric) + '</span></h3>' +
    '<div><b data-current>' + p.current + '</b> backends, desired <b data-desired>' + p.desired + '</b> <span class="muted">(min ' + p.min + ', max ' + p.max + ')</span>' + (p.saturated ? ' <span class="state-drain">saturated</span>' : '') + '</div>' +
    '<div>target <span data-target>' + esc(target) + '</span> <span class="muted">ceiling ' + fmt(p.targetCeiling, 0) + ' ms</span>' + (p.learnedFrom ? '<div class="muted">' + esc(p.learnedFrom) + '</div>' : '') + '</div>' +
    '<div>cost <span data-cost>' + fmt(p.costPerHour, 2) + cap + '</span> per hour</div>' + svg + last + '</div>';
}

function renderPools(st, now) {
  const hist = new Map(((st.history && st.history.pools) || []).map(h => [h.name, h]));
  const html = st.pools.map(p => {
    let poolRps = 0, up = 0, p50s = [], p95s = [], p99s = [];
    const ph = hist.get(p.name);
    const memberHist = new Map(((ph && ph.members) || []).map(m => [m.url, pointsOf(m.series)]));
    const rows = p.backends.map(b => {
      const mh = memberHist.get(b.url) || [];
      const last = mh[mh.length - 1];
      const [cls, label] = backendState(b, p, last);
      // req/s: the history's last sample (the control process's), else measured here between polls.
      const r = last !== undefined ? last.rps : rate(p.name + " " + b.url, b.requests, now);
      if (r !== undefined) poolRps += r;
      const lat = b.latency || {};
      if (lat.p50 !== undefined) p50s.push(lat.p50);
      if (lat.p95 !== undefined) p95s.push(lat.p95);
      if (lat.p99 !== undefined) p99s.push(lat.p99);
      if (cls === "up") up++;
      const src = b.source || "config";
      // Drain applies to the config's members (the admin API's drain endpoints); others leave by DELETE.
      const action = src !== "config" ? "" : '<button class="member-action" data-action="' + (b.draining ? "undrain" : "drain") + '" data-member-pool="' + esc(p.name) + '" data-url="' + esc(b.url) + '">' + (b.draining ? "undrain" : "drain") + '</button>';
      return '<tr data-backend="' + esc(b.url) + '" data-state="' + cls + '" data-source="' + esc(src) + '"><td><span class="dot ' + cls + '"></span>' + esc(b.url) + '</td>' +
        '<td class="state-' + cls + '">' + label + '</td><td class="source">' + esc(src) + '</td><td>' + b.weight + '</td><td>' + fmt(r) + '</td><td>' + b.inflight + '</td>' +
        '<td>' + (lat.count ? fmt(lat.p50, 2) : "–") + '</td><td>' + (lat.count ? fmt(lat.p95, 2) : "–") + '</td><td>' + (lat.count ? fmt(lat.p99, 2) : "–") + '</td>' +
        '<td>' + b.requests + '</td><td>' + b.failures + '</td><td class="errors">' + errRate(mh) + '</td><td>' + spark(mh) + '</td><td>' + action + '</td></tr>';
    }).join("");
    let h;
    if (ph !== undefined) {
      h = pointsOf(ph.series);
      const lastP = h[h.length - 1];
      if (lastP !== undefined) poolRps = lastP.rps;
    } else {
      // An API without history (an older edge): collect what this page sees.
      h = history.get(p.name) || [];
      const avg = a => a.length ? a.reduce((x, y) => x + y, 0) / a.length : undefined;
      h.push({ t: now, p50: avg(p50s), p95: avg(p95s), p99: p99s.length ? Math.max(...p99s) : undefined, rps: poolRps });
      while (h.length && h[0].t < now - HISTORY_S * 1000) h.shift();
      history.set(p.name, h);
    }
    const rates = h.map(x => ({ t: x.t, rps: x.rps, errors: x.error_rate === undefined ? undefined : x.rps * x.error_rate }));
    const shards = p.shards ? '<div class="muted">shards: ' + p.shards.map(s => esc(s.name) + " (" + s.backends.length + ")").join(", ") + '</div>' : "";
    return '<div class="pool" data-pool="' + esc(p.name) + '"><h3>' + esc(p.name) + ' <span class="' + (up === p.backends.length ? "state-up" : up === 0 ? "state-down" : "state-drain") + '">' + up + '/' + p.backends.length + ' up</span> <span class="muted">' + esc(p.balance) + ' · ' + fmt(poolRps) + ' req/s</span></h3>' + shards +
      '<table><tr><th>backend</th><th>state</th><th>source</th><th>weight</th><th>req/s</th><th>in flight</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>requests</th><th>failures</th><th title="failed tries over the history shown">errors</th><th></th></tr>' + rows + '</table>' +
      '<div class="charts">' + chart(h) + chart(rates, { series: RATE_SERIES, unit: "/s", title: "req/s and failed tries", cls: "rate", w: 500, empty: "no samples yet" }) + '</div></div>';
  }).join("");
  document.getElementById("pools").innerHTML = html || '<div class="muted">no pools</div>';
}

function renderTables(st) {
  document.getElementById("listeners").innerHTML = '<tr><th>name</th><th>protocol</th><th>address</th><th>open conns</th><th>in</th><th>out</th></tr>' +
    st.listeners.map(l => '<tr data-listener="' + esc(l.name) + '"><td>' + esc(l.name) + '</td><td>' + esc(l.protocol) + '</td><td>' + esc(l.address) + '</td>' +
      '<td data-connections>' + (l.connections ?? "–") + '</td><td>' + bytes(l.bytes_in) + '</td><td>' + bytes(l.bytes_out) + '</td></tr>').join("");
  document.getElementById("routes").innerHTML = '<tr><th>route</th><th>match</th><th>action</th><th>requests</th><th>5xx</th><th>in</th><th>out</th></tr>' +
    st.routes.map(r => '<tr data-route="' + esc(r.name) + '"><td>' + esc(r.name) + '</td><td>' + esc(Object.entries(r.match).map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(" ") || "(any)") + '</td><td>' + esc(r.action) + '</td>' +
      '<td data-requests>' + (r.requests ?? "–") + '</td><td data-errors class="' + (r.errors > 0 ? "state-down" : "") + '">' + (r.errors ?? "–") + '</td><td>' + bytes(r.bytes_in) + '</td><td>' + bytes(r.bytes_out) + '</td></tr>').join("");
  const section = (key, html) => {
    const sec = document.getElementById("sec-" + key);
    sec.innerHTML = '<h2>' + sec.querySelector("h2").textContent + '</h2>' + html;
    sec.hidden = false;
  };
  // Shadow, HA and scaling panels show only when configured.
  const shown = { shadow: st.shadow !== undefined, ha: st.ha !== undefined && st.ha.role !== "standalone", scale: Array.isArray(st.scaling) && st.scaling.length > 0 };
  for (const [key, on] of Object.entries(shown)) if (!on) document.getElementById("sec-" + key).hidden = true;
  if (Array.isArray(st.certificates) && st.certificates.length > 0) {
    section("certificates", '<table><tr><th>listener</th><th>names</th><th>expires</th><th>days left</th></tr>' + st.certificates.map(c =>
      '<tr><td>' + esc(c.listener || "") + '</td><td class="names" title="' + esc((c.names || []).join(" ")) + '">' + namesOf(c.names || []) + '</td><td>' + esc(String(c.not_after || c.notAfter || "").slice(0, 10)) + '</td>' +
      '<td class="' + ((c.days_left ?? c.daysLeft) < 14 ? "state-down" : "state-up") + '">' + esc(String(c.days_left ?? c.daysLeft ?? "")) + '</td></tr>').join("") + '</table>');
  }
  if (st.tunnels !== undefined) {
    const ss = st.tunnels.sessions || [];
    section("tunnels", '<div class="muted">endpoint ' + esc(st.tunnels.listen) + ' · ' + ss.length + ' session(s)</div>' + (ss.length === 0 ? "" :
      '<table><tr><th>client</th><th>names</th><th>streams</th><th>in / out</th><th>stalls</th></tr>' + ss.map(x =>
        '<tr><td>' + esc(x.sub) + '</td><td>' + esc((x.names || []).map(n => n.name || n).join(", ")) + '</td><td>' + x.streams_open + ' / ' + x.streams_total + '</td>' +
        '<td>' + fmt(x.bytes_in / 1048576) + ' / ' + fmt(x.bytes_out / 1048576) + ' MB</td><td>' + x.window_stalls + '</td></tr>').join("") + '</table>'));
  }
  if (shown.ha) section("ha", st.ha.node_id !== undefined ? haPanel(st.ha) : '<pre>' + esc(JSON.stringify(st.ha, null, 2)) + '</pre>');
  if (st.shadow !== undefined) section("shadow", renderShadow(st.shadow));
  if (Array.isArray(st.scaling) && st.scaling.length > 0) section("scale", st.scaling.map(scalePanel).join(""));
}

// Per pool: what was mirrored, dropped and skipped; per endpoint: compared, differing rate, the fields that differ
// (noise left out) and the latency of both sides.
function renderShadow(sh) {
  const ms = p => p ? fmt(p.p50, 2) + " / " + fmt(p.p99, 2) : "–";
  return (sh.pools || []).map(p => {
    const skipped = Object.entries(p.skipped || {}).filter(([k]) => k !== "sampled_out").map(([k, v]) => k + " " + v).join(", ");
    const rows = (p.endpoints || []).slice().sort((a, b) => b.differing_rate - a.differing_rate).map(e => {
      const fields = (e.fields || []).filter(f => !f.noise).slice(0, 3).map(f => esc(f.field) + " " + fmt(f.rate * 100) + "%").join(", ");
      return '<tr data-endpoint="' + esc(e.endpoint) + '"><td>' + esc(e.endpoint) + '</td><td>' + e.compared + '</td>' +
        '<td class="' + (e.differing > 0 ? "state-down" : "state-up") + '">' + fmt(e.differing_rate * 100) + '%</td><td>' + (fields || '<span class="muted">–</span>') + '</td>' +
        '<td>' + ms(e.primary_ms) + '</td><td>' + ms(e.shadow_ms) + '</td></tr>';
    }).join("");
    return '<div class="shadow-pool" data-pool="' + esc(p.pool) + '"><div><b>' + esc(p.pool) + '</b> → ' + esc(p.shadow_pool) + ' <span class="muted">sample ' + p.sample +
      (p.secondary ? " · secondary" : "") + ' · mirrored ' + p.mirrored + ' · dropped ' + p.dropped + ' · errors ' + p.errors + ' · in flight ' + p.inflight + '/' + p.max_inflight +
      (skipped ? " · skipped " + esc(skipped) : "") + '</span></div>' +
      (rows ? '<table><tr><th>endpoint</th><th>compared</th><th>differing</th><th>fields</th><th>primary p50/p99 ms</th><th>shadow p50/p99 ms</th></tr>' + rows + '</table>' : '<div class="muted">nothing compared yet</div>') + '</div>';
  }).join("") || '<div class="muted">no mirroring configured</div>';
}

// The HA panel: this node's role, the floating IP's holder, every peer and the transitions with their reasons.
function haPanel(ha) {
  const tone = r => r === "active" ? "state-up" : r === "passive" ? "" : r === "dead" || r === "fault" ? "state-down" : "state-drain";
  const mismatch = (ha.config_mismatch || []).length > 0 ? '<div class="state-down">config hash differs on ' + esc(ha.config_mismatch.join(", ")) + '</div>' : "";
  const spares = ha.replenish ? ' · spares ' + ha.replenish.spares + '/' + ha.replenish.min_spares + ' (replenish ' + esc(ha.replenish.state) + ')' : "";
  return '<div data-ha-role="' + esc(ha.role) + '"><b>' + esc(ha.node_id) + '</b> <span class="' + tone(ha.role) + '">' + esc(ha.role) + '</span>' +
    ' <span class="muted">priority ' + ha.priority + (ha.preempt ? ", preempt" : "") + ' · ' + esc(ha.floating_ip || ha.ip_mode) + ' held by ' + esc(ha.holder || "nobody") + spares + ' · ' + esc(ha.reason) + '</span></div>' + mismatch +
    '<table><tr><th>peer</th><th>role</th><th>priority</th><th>last advert</th><th>config</th></tr>' +
    (ha.peers || []).map(p => '<tr data-peer="' + esc(p.node_id) + '"><td>' + esc(p.node_id) + ' <span class="muted">' + esc(p.address) + '</span></td><td class="' + tone(p.role) + '">' + esc(p.role) + '</td><td>' + p.priority + '</td>' +
      '<td>' + fmt(p.last_advert_ms_ago / 1000, 1) + ' s ago</td><td class="' + (p.config_mismatch ? "state-down" : "") + '">' + esc(p.config_hash) + '</td></tr>').join("") + '</table>' +
    '<div class="muted">transitions</div>' + (ha.transitions || []).slice(0, 10).map(t => '<div>' + esc(t.time.replace("T", " ").slice(0, 19)) + ' ' + esc(t.from) + ' → ' + esc(t.to) + ': ' + esc(t.reason) + '</div>').join("");
}

const EVENT_TONE = { unhealthy: "state-down", ejected: "state-down", "reload-failed": "state-down", "worker-exit": "state-down", "upgrade-failed": "state-down",
  healthy: "state-up", restored: "state-up", drain: "state-drain", "ejection-held": "state-drain",
  "ha-active": "state-up", "ha-passive": "state-drain", "ha-fault": "state-down", "ha-ip-failed": "state-down", "ha-replenish-failed": "state-down" };

function addEvent(e) {
  const box = document.getElementById("events");
  const div = document.createElement("div");
  div.textContent = e.time.replace("T", " ").slice(0, 19) + "  " + e.type + "  " + e.message;
  div.className = EVENT_TONE[e.type] || "";
  box.prepend(div);
  while (box.childElementCount > 200) box.lastElementChild.remove();
}

async function poll() {
  try {
    const res = await fetch("api/status", { cache: "no-store" });
    if (!res.ok) throw new Error("status " + res.status);
    const st = await res.json();
    const now = Date.now();
    document.getElementById("meta").textContent = "config " + st.config + " · generation " + st.generation + " · workers " + st.workers + " · updated " + new Date(now).toLocaleTimeString();
    document.getElementById("error").textContent = "";
    renderPools(st, now);
    // The tab's title says when something is down, for an operator who keeps the page open in the background.
    const down = st.pools.reduce((n, p) => n + p.backends.filter(b => backendState(b, p)[0] === "down").length, 0);
    document.title = (down ? "(" + down + " down) " : "") + "edge-proxy status";
    renderTables(st);
  } catch (err) {
    document.getElementById("error").textContent = "cannot reach the admin API: " + err.message;
  }
}

// Drain / undrain: the page's own POST (same origin, with the session cookie); the answer lands in the events.
document.getElementById("pools").addEventListener("click", async ev => {
  const btn = ev.target.closest("button.member-action");
  if (!btn) return;
  btn.disabled = true;
  try {
    const res = await fetch("api/pools/" + encodeURIComponent(btn.dataset.memberPool) + "/backends/" + encodeURIComponent(btn.dataset.url) + "/" + btn.dataset.action, { method: "POST" });
    const body = await res.json().catch(() => ({}));
    document.getElementById("error").textContent = res.ok ? "" : (btn.dataset.action + " failed: " + (body.error || res.status));
  } catch (err) {
    document.getElementById("error").textContent = btn.dataset.action + " failed: " + err.message;
  }
  poll();
});

poll();
setInterval(poll, 2000);
const es = new EventSource("api/events");
es.onmessage = m => { try { addEvent(JSON.parse(m.data)); poll(); } catch {} };
</script>
</body>
</html>
`
