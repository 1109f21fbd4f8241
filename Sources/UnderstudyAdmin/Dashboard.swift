/// The dashboard page (`GET /`): one self-contained HTML file, no external resources.
///
/// It polls the admin API of its own origin once a second (`/status`, `/metrics`,
/// `/discrepancies`, `/swaps`, `/predictions`, `/deploys`) and keeps about five minutes of
/// history in the browser. Time series are keyed on the supervisor's `uptimeSeconds`, so rates
/// are right even when the browser's timers are throttled or virtualized (headless screenshots),
/// and a restarted supervisor (uptime going backwards) starts a fresh history. Every piece of
/// data goes into the DOM through `textContent`/text nodes, never as markup.
enum Dashboard {
    static let html = #"""
<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Understudy</title>
<style>
:root{--bg:#f4f5f7;--card:#fff;--ink:#1c2230;--mute:#687080;--line:#e2e5ea;--ok:#1a7f37;--bad:#c62828;--warn:#b26a00;--acc:#2458d6}
*{box-sizing:border-box}
body{margin:0;font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;background:var(--bg);color:var(--ink)}
header{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12.5px;align-items:baseline;padding:8px 14px;background:#fff;border-bottom:1px solid var(--line)}
header h1{font-size:17px;margin:0 6px 0 0;letter-spacing:.01em}
.kv{white-space:nowrap}.kv span{color:var(--mute);margin-right:4px}.kv b{font-weight:600;font-variant-numeric:tabular-nums}
#conn{margin-left:auto;font-weight:600}
#probation{width:100%;padding:4px 8px;border-radius:4px;background:#fff6e0;border:1px solid #f0d9a0;display:none}
main{display:grid;grid-template-columns:repeat(12,minmax(0,1fr));gap:10px;padding:10px 14px}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:7px 10px 8px;min-width:0;overflow:hidden}
.card h2{font-size:11.5px;text-transform:uppercase;letter-spacing:.05em;color:var(--mute);margin:0 0 5px;font-weight:600;display:flex;gap:8px;justify-content:space-between}
.card h2 em{font-style:normal;text-transform:none;letter-spacing:0;font-weight:400}
.s12{grid-column:span 12}.s8{grid-column:span 8}.s6{grid-column:span 6}.s4{grid-column:span 4}
@media (max-width:1100px){.s8,.s6,.s4{grid-column:span 12}}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:2px 6px;border-bottom:1px solid var(--line);white-space:nowrap}
th{color:var(--mute);font-weight:500;font-size:11.5px}
td.n,th.n{text-align:right}
td.t{max-width:240px;overflow:hidden;text-overflow:ellipsis}
tr:last-child td{border-bottom:0}
.pill{display:inline-block;padding:0 7px;border-radius:9px;font-size:11px;font-weight:600;color:#fff;background:#5b6472}
.pill.primary{background:var(--acc)}.pill.candidate,.pill.probation{background:var(--warn)}.pill.dead,.pill.failed,.pill.rejected{background:var(--bad)}
.pill.passed,.pill.accepted{background:var(--ok)}.pill.running{background:var(--warn)}.pill.skipped{background:#9aa1ad}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.mute{color:var(--mute)}
canvas{display:block;width:100%}
canvas.ts{height:0;min-height:0;flex:1 1 100px}
.card.chart{display:flex;flex-direction:column}
.legend{font-size:11px;color:var(--mute);margin-top:3px;display:flex;flex-wrap:wrap;gap:1px 12px;min-height:15px}
.legend i{display:inline-block;width:10px;height:3px;vertical-align:middle;margin-right:4px;border-radius:1px}
.legend b{color:var(--ink);font-weight:600;font-variant-numeric:tabular-nums}
.brow{display:grid;grid-template-columns:86px 1fr 118px;align-items:center;gap:6px;margin:2px 0;font-variant-numeric:tabular-nums;white-space:nowrap}
.brow.hi{font-weight:700}
.track{position:relative;height:14px;background:#eef0f3;border-radius:3px}
.track div{position:absolute;left:0;top:0;bottom:0;border-radius:3px}
.srow{display:grid;grid-template-columns:310px 1fr 110px;white-space:nowrap;align-items:center;gap:8px;margin:2px 0;font-variant-numeric:tabular-nums}
.stack{display:flex;height:13px;border-radius:3px;overflow:hidden;background:#eef0f3}
.stack div{height:100%}
.note{color:var(--mute);font-size:12px;margin:4px 0}
.line{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.scroll{max-height:236px;overflow:auto}
#deploy table{table-layout:fixed}
#deploy td{padding:1px 6px}
#deploy td.t{max-width:none}
.small{font-size:11.5px}
</style></head>
<body>
<header>
  <h1>Understudy</h1>
  <div class="kv"><span>service</span><b id="h-service">–</b></div>
  <div class="kv"><span>version</span><b id="h-version">–</b></div>
  <div class="kv"><span>listen</span><b id="h-listen">–</b></div>
  <div class="kv"><span>fsync</span><b id="h-fsync">–</b></div>
  <div class="kv"><span>sequence</span><b id="h-seq">–</b> <span>durable</span><b id="h-durable">–</b></div>
  <div class="kv"><span>snapshot</span><b id="h-snap">–</b></div>
  <div class="kv"><span>intake</span><b id="h-intake">–</b></div>
  <div class="kv"><span>swaps</span><b id="h-swaps">–</b></div>
  <div class="kv"><span>discrepancies</span><b id="h-disc">–</b></div>
  <div class="kv"><span>worker restarts</span><b id="h-restarts">–</b></div>
  <div class="kv"><span>quarantined</span><b id="h-quar">–</b></div>
  <div class="kv"><span>uptime</span><b id="h-uptime">–</b></div>
  <div id="conn" class="mute">connecting…</div>
  <div id="probation"></div>
</header>
<main>
  <section class="card s8"><h2>Instances — roles and versions <em id="inst-note"></em></h2>
    <table><thead><tr><th>id</th><th>role</th><th>phase</th><th>version</th><th class="n">schema</th><th class="n">pid</th>
      <th class="n">applied seq</th><th class="n">lag rec</th><th class="n">lag ms</th><th class="n">compared</th><th class="n">differing</th><th class="n">disc. rate</th><th>binary</th></tr></thead>
      <tbody id="inst"></tbody></table></section>
  <section class="card s4"><h2>Latest deploy <em id="dep-note"></em></h2><div id="deploy"></div></section>

  <section class="card chart s4"><h2>Throughput <em>per second</em></h2><canvas class="ts" id="c-rps"></canvas><div class="legend" id="l-rps"></div></section>
  <section class="card chart s4"><h2>Latency <em>ms, per poll</em></h2><canvas class="ts" id="c-lat"></canvas><div class="legend" id="l-lat"></div></section>
  <section class="card chart s4"><h2>Discrepancy rate <em>per standby</em></h2><canvas class="ts" id="c-rate"></canvas><div class="legend" id="l-rate"></div></section>

  <section class="card chart s4"><h2>Shadow lag <em>records</em></h2><canvas class="ts" id="c-lagr"></canvas><div class="legend" id="l-lagr"></div></section>
  <section class="card chart s4"><h2>Shadow lag <em>ms</em></h2><canvas class="ts" id="c-lagm"></canvas><div class="legend" id="l-lagm"></div></section>
  <section class="card s4"><h2>Predictor accuracy <em>top-1: window ▮ / all-time ▯</em></h2><div id="pred"></div></section>

  <section class="card s12"><h2>Swaps — timeline and pause per step <em id="swap-note"></em></h2>
    <canvas id="c-swaps" style="height:52px"></canvas><div class="legend" id="l-steps"></div><div id="swaps"></div></section>

  <section class="card s12"><h2>Quarantined inputs <em id="quar-note"></em></h2>
    <div class="scroll"><table><thead><tr><th>time</th><th class="n">seq</th><th>command</th><th>instance</th><th>reason</th></tr></thead>
      <tbody id="quar"></tbody></table></div></section>

  <section class="card s12"><h2>Latest discrepancies <em id="disc-note"></em></h2>
    <div class="scroll"><table><thead><tr><th>time</th><th class="n">seq</th><th>instance</th><th>kind</th><th>command</th><th>request</th><th>primary</th><th>other</th><th>keys</th></tr></thead>
      <tbody id="discs"></tbody></table></div></section>
</main>
<script>
"use strict";
const WINDOW = 300;          // seconds of history kept and drawn
const POLL_MS = 1000;
const PALETTE = ["#2458d6", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#5c940d", "#e67700"];
const STEPS = ["pause", "drain", "catch_up", "verify", "patch", "flip", "resume"];
const STEP_COLORS = ["#9aa5b8", "#4c6ef5", "#15aabf", "#40c057", "#fab005", "#e8590c", "#ae3ec9"];
const S = { hist: [], prev: null, names: {}, failures: 0, last: null };

// ---------- the admin token ----------
// Every API call needs "Authorization: Bearer TOKEN". The token comes from the URL fragment (#token=…, which
// never reaches a server and is removed from the address bar at once) or a prompt, and is kept in sessionStorage.
const TOKEN_KEY = "understudy.adminToken";
function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash || "");
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]).trim());
  history.replaceState(null, "", location.pathname + location.search);
}
let asked = false;
function adminToken() {
  let t = sessionStorage.getItem(TOKEN_KEY) || "";
  if (!t && !asked) {
    asked = true;
    t = (window.prompt("Admin token (the file admin.token in the supervisor's data directory):") || "").trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
  }
  return t;
}
function tokenRejected() {
  // Asked again on the next load (no prompt every second).
  sessionStorage.removeItem(TOKEN_KEY);
  S.unauthorized = true;
}
takeTokenFromFragment();

// ---------- helpers ----------
const $ = (id) => document.getElementById(id);
function h(tag, props, ...kids) {
  const e = document.createElement(tag);
  if (props) for (const k in props) {
    if (k === "class") e.className = props[k];
    else if (k === "style") e.style.cssText = props[k];
    else e[k] = props[k];
  }
  for (const c of kids) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}
const arr = (x) => Array.isArray(x) ? x : [];
const num = (x, d = 0) => (typeof x === "number" && isFinite(x)) ? x : d;
function setText(id, v) { const e = $(id); if (e) e.textContent = v; }
function fmtInt(x) { return num(x).toLocaleString("en-US", { maximumFractionDigits: 0 }); }
function fmtNum(x, digits) {
  if (x === null || x === undefined || !isFinite(x)) return "—";
  const a = Math.abs(x);
  if (digits !== undefined) return x.toFixed(digits);
  if (a >= 1e6) return (x / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
  if (a >= 1e4) return (x / 1e3).toFixed(a >= 1e5 ? 0 : 1) + "k";
  if (a >= 100 || Number.isInteger(x)) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a === 0) return "0";
  return x.toPrecision(2);
}
const pct = (x) => (x === null || x === undefined || !isFinite(x)) ? "—" : (x * 100).toFixed(x > 0 && x < 0.001 ? 3 : x < 0.1 ? 2 : 1) + "%";
function fmtDur(s) {
  s = Math.max(0, Math.floor(num(s)));
  const d = Math.floor(s / 86400), hh = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60, ss = s % 60;
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${m}m` : m ? `${m}m ${ss}s` : `${ss}s`;
}
function fmtMicros(us) { us = num(us); return us >= 1e6 ? (us / 1e6).toFixed(2) + " s" : us >= 1000 ? (us / 1000).toFixed(2) + " ms" : us.toFixed(0) + " µs"; }
function clock(ms) { const d = new Date(num(ms)); return isNaN(d) ? "—" : d.toTimeString().slice(0, 8); }
function colorFor(id) { const n = Math.abs(Math.round(Number(id))); return PALETTE[(isFinite(n) ? n : 0) % PALETTE.length]; }
function clip(s, n) { s = String(s ?? ""); return s.length > n ? s.slice(0, n - 1) + "…" : s; }
function cell(text, cls, full) { return h("td", { class: cls || "", title: full ?? String(text ?? "") }, String(text ?? "")); }

// ---------- Prometheus histogram ----------
function parseHistogram(text, name) {
  const buckets = new Map(); let sum = 0, count = 0, found = false;
  for (const line of String(text || "").split("\n")) {
    if (!line || line[0] === "#" || !line.startsWith(name)) continue;
    const m = line.match(/^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
    if (!m) continue;
    const v = parseFloat(m[3]); if (!isFinite(v)) continue;
    if (m[1] === name + "_bucket") {
      const le = (m[2] || "").match(/le="([^"]*)"/); if (!le) continue;
      const bound = le[1] === "+Inf" ? Infinity : parseFloat(le[1]);
      buckets.set(bound, (buckets.get(bound) || 0) + v); found = true;
    } else if (m[1] === name + "_sum") { sum += v; found = true; }
    else if (m[1] === name + "_count") { count += v; found = true; }
  }
  if (!found) return null;
  return { buckets: [...buckets.entries()].sort((a, b) => a[0] - b[0]), sum, count };
}
function sumCounter(text, name) {
  let total = null;
  for (const line of String(text || "").split("\n")) {
    const m = line.match(/^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m && m[1] === name && isFinite(parseFloat(m[3]))) total = (total || 0) + parseFloat(m[3]);
  }
  return total;
}
// Approximate quantile from the bucket deltas between two scrapes (linear within a bucket).
function quantile(q, cur, prev) {
  const pm = new Map(prev.buckets);
  const d = cur.buckets.map(([le, c]) => [le, c - (pm.get(le) || 0)]);
  if (!d.length) return null;
  const total = d[d.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let lo = 0, below = 0;
  for (const [le, c] of d) {
    if (c >= rank) {
      if (!isFinite(le)) return lo;   // in the +Inf bucket: the highest finite bound is all we know
      return lo + (le - lo) * (c - below > 0 ? (rank - below) / (c - below) : 1);
    }
    if (isFinite(le)) { lo = le; below = c; }
  }
  return lo;
}

// ---------- sampling ----------
function sample(st, metrics) {
  const t = num(st.uptimeSeconds), seq = num(st.lastSequence);
  const hist = metrics ? parseHistogram(metrics, "understudy_request_latency_seconds") : null;
  const reqs = metrics ? sumCounter(metrics, "understudy_requests_total") : null;
  let p = S.prev;
  if (p && (t < p.t || seq < p.seq)) { S.hist = []; p = S.prev = null; }   // the supervisor restarted
  if (p && t - p.t < 0.5) return;   // too little server time passed (throttled or virtual timers)
  const pt = { t, rps: null, cps: null, mean: null, p99: null, lagR: {}, lagM: {}, rate: {} };
  if (p) {
    const dt = t - p.t;
    pt.rps = Math.max(0, (seq - p.seq) / dt);
    if (reqs !== null && p.reqs !== null && reqs >= p.reqs) pt.cps = (reqs - p.reqs) / dt;
    if (hist && p.hist && hist.count > p.hist.count) {
      const dc = hist.count - p.hist.count;
      pt.mean = (hist.sum - p.hist.sum) / dc * 1000;
      const q = quantile(0.99, hist, p.hist); pt.p99 = q === null ? null : q * 1000;
    }
  }
  for (const i of arr(st.instances)) {
    if (i.role === "primary") continue;
    const k = String(i.id);
    S.names[k] = `#${i.id} ${i.role} ${i.version}`;
    pt.lagR[k] = num(i.lagRecords); pt.lagM[k] = plausibleLag(i.lagMillis); pt.rate[k] = num(i.discrepancyRate);
  }
  S.hist.push(pt);
  while (S.hist.length && S.hist[0].t < t - WINDOW) S.hist.shift();
  S.prev = { t, seq, reqs: reqs !== null ? reqs : (p ? p.reqs : null), hist: hist || (p && p.hist) || null };
}

// A lag in ms beyond ~4 months is not a lag (e.g. an epoch timestamp): leave it out of the chart.
function plausibleLag(ms) { const v = num(ms, NaN); return isFinite(v) && v >= 0 && v < 1e10 ? v : null; }

// ---------- line charts ----------
function niceMax(v) {
  if (!(v > 0)) return 1;
  const e = Math.pow(10, Math.floor(Math.log10(v))), f = v / e;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * e;
}
function prepCanvas(cv) {
  const dpr = window.devicePixelRatio || 1, w = cv.clientWidth || 300, ht = cv.clientHeight || 120;
  if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(ht * dpr)) { cv.width = Math.round(w * dpr); cv.height = Math.round(ht * dpr); }
  const g = cv.getContext("2d"); g.setTransform(dpr, 0, 0, dpr, 0, 0); g.clearRect(0, 0, w, ht);
  g.font = "10px system-ui,sans-serif"; g.textBaseline = "middle";
  return [g, w, ht];
}
function lineChart(id, legendId, series, fmt, unit, floor) {
  const cv = $(id); if (!cv) return;
  const [g, w, ht] = prepCanvas(cv);
  const L = 46, R = 8, T = 6, B = 16, pw = w - L - R, ph = ht - T - B;
  const hs = S.hist;
  const t1 = hs.length ? hs[hs.length - 1].t : 0;
  const t0 = Math.min(hs.length ? hs[0].t : 0, t1 - 10);
  let max = 0;
  for (const s of series) for (const [, v] of s.pts) if (v !== null && v > max) max = v;
  max = niceMax(Math.max(max, floor || 0));
  const X = (t) => L + (t - t0) / (t1 - t0 || 1) * pw, Y = (v) => T + ph - v / max * ph;
  g.strokeStyle = "#e6e8ec"; g.fillStyle = "#687080"; g.lineWidth = 1; g.textAlign = "right";
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4, y = Math.round(Y(v)) + 0.5;
    g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
    g.fillText(fmt(v), L - 4, y);
  }
  g.textAlign = "center";
  const span = t1 - t0, step = span > 240 ? 60 : span > 120 ? 30 : span > 50 ? 10 : span > 20 ? 5 : 2;
  for (let a = 0; a <= span + 1e-9; a += step) {
    const x = X(t1 - a); if (x < L - 1) break;
    g.fillText(a === 0 ? "now" : `-${a >= 60 && a % 60 === 0 ? a / 60 + "m" : a + "s"}`, Math.min(Math.max(x, L + 8), L + pw - 8), ht - 6);
  }
  if (!series.length || !hs.length) { g.textAlign = "center"; g.fillText("no data yet", L + pw / 2, T + ph / 2); }
  for (const s of series) {
    g.strokeStyle = s.color; g.fillStyle = s.color; g.lineWidth = s.width || 1.6; g.setLineDash(s.dash || []);
    g.beginPath(); let pen = false, lone = [];
    s.pts.forEach(([t, v], i) => {
      if (v === null) { pen = false; return; }
      const x = X(t), y = Y(v);
      if (pen) g.lineTo(x, y); else { g.moveTo(x, y); const nx = s.pts[i + 1]; if (!nx || nx[1] === null) lone.push([x, y]); }
      pen = true;
    });
    g.stroke(); g.setLineDash([]);
    for (const [x, y] of lone) { g.beginPath(); g.arc(x, y, 2, 0, 7); g.fill(); }
  }
  const lg = $(legendId), shown = series.filter((s) => !(s.gone && s.gone())), gone = series.length - shown.length;
  if (lg) lg.replaceChildren(...shown.map((s) => {
    let last = null; for (let i = s.pts.length - 1; i >= 0; i--) if (s.pts[i][1] !== null) { last = s.pts[i][1]; break; }
    return h("span", null, h("i", { style: `background:${s.color}` }), s.name + " ",
      h("b", null, last === null ? "—" : fmt(last) + (unit || "")));
  }), gone ? h("span", null, `+${gone} instance${gone > 1 ? "s" : ""} gone`) : "");
}
function perInstance(field) {
  const ids = new Set(); for (const p of S.hist) for (const k in p[field]) ids.add(k);
  return [...ids].sort((a, b) => a - b).map((k) => ({
    name: S.names[k] || "#" + k, color: colorFor(k),
    pts: S.hist.map((p) => [p.t, k in p[field] ? p[field][k] : null]),
    gone: () => !S.hist.length || !(k in S.hist[S.hist.length - 1][field]),
  }));
}
function drawCharts() {
  const hs = S.hist;
  lineChart("c-rps", "l-rps", [
    { name: "journal records/s (Δ lastSequence)", color: PALETTE[0], width: 2, pts: hs.map((p) => [p.t, p.rps]) },
    { name: "client requests/s", color: PALETTE[2], dash: [4, 3], pts: hs.map((p) => [p.t, p.cps]) },
  ], fmtNum);
  lineChart("c-lat", "l-lat", [
    { name: "mean", color: PALETTE[0], pts: hs.map((p) => [p.t, p.mean]) },
    { name: "p99 (approx.)", color: PALETTE[1], pts: hs.map((p) => [p.t, p.p99]) },
  ], fmtNum, " ms");
  lineChart("c-rate", "l-rate", perInstance("rate"), pct, "", 0.01);
  lineChart("c-lagr", "l-lagr", perInstance("lagR"), fmtNum);
  lineChart("c-lagm", "l-lagm", perInstance("lagM"), fmtNum, " ms");
}

// ---------- panels ----------
function renderStatus(st) {
  const insts = arr(st.instances);
  const primary = insts.find((i) => i.role === "primary");
  setText("h-service", st.service || "–");
  setText("h-version", primary ? `${primary.version} (#${primary.id})` : (st.version || "–"));
  setText("h-listen", st.listen || "–");
  setText("h-fsync", st.fsync || "–");
  setText("h-seq", fmtInt(st.lastSequence));
  setText("h-durable", fmtInt(st.durableSequence));
  setText("h-snap", fmtInt(st.snapshotSequence) + (st.snapshotInProgress ? " (taking…)" : ""));
  const intake = $("h-intake");
  intake.textContent = st.intakePaused ? `paused, ${fmtInt(st.heldRequests)} held` : "open";
  intake.className = st.intakePaused ? "warn" : "ok";
  setText("h-swaps", fmtInt(st.swaps));
  setText("h-disc", fmtInt(st.discrepancies));
  setText("h-restarts", fmtInt(st.workerRestarts) + (arr(st.givenUpRoles).length ? ` — GIVEN UP: ${arr(st.givenUpRoles).join(", ")}` : ""));
  const quar = arr(st.quarantined);
  const hq = $("h-quar"); hq.textContent = fmtInt(quar.length); hq.className = quar.length ? "warn" : "ok";
  setText("quar-note", `never applied again; request deadline ${fmtInt(st.requestDeadlineMillis)} ms`);
  $("quar").replaceChildren(...(quar.length ? quar.slice().reverse().map((q) => h("tr", null,
    cell(q.time), cell(fmtInt(q.sequence), "n"), cell(q.command), cell(`#${q.instance}`), cell(clip(q.reason, 120), "t bad", q.reason)))
    : [h("tr", null, h("td", { colSpan: 5, class: "mute" }, "No input has been quarantined."))]));
  setText("h-uptime", fmtDur(st.uptimeSeconds));
  const pb = $("probation"), p = st.probation;
  if (p && typeof p === "object") {
    pb.style.display = "block";
    pb.textContent = `Probation: #${p.newPrimary} is primary; #${p.previousPrimary} (${p.previousVersion}) stands by for rollback — ` +
      `${num(p.secondsLeft).toFixed(0)} s left, ${fmtInt(p.requests)} requests, ${fmtInt(p.errors)} errors`;
  } else pb.style.display = "none";
  $("inst").replaceChildren(...insts.map((i) => {
    const rate = num(i.discrepancyRate);
    return h("tr", null,
      h("td", null, h("b", { style: `color:${colorFor(i.id)}` }, "#" + i.id)),
      h("td", null, h("span", { class: "pill " + String(i.role) }, String(i.role))),
      cell(i.phase, i.phase === "live" ? "ok" : i.phase === "dead" ? "bad" : "warn"),
      cell(`${i.service} ${i.version}`),
      cell(i.schemaVersion, "n"), cell(i.pid, "n"), cell(fmtInt(i.appliedSequence), "n"),
      cell(fmtInt(i.lagRecords), "n" + (i.role === "primary" ? " mute" : "")),
      plausibleLag(i.lagMillis) === null ? cell("?", "n bad", `implausible lagMillis: ${i.lagMillis}`) : cell(fmtInt(i.lagMillis), "n" + (i.role === "primary" ? " mute" : "")),
      cell(fmtInt(i.comparedReplies), "n"), cell(fmtInt(i.differingReplies), "n" + (num(i.differingReplies) ? " bad" : "")),
      cell(i.role === "primary" ? "—" : pct(rate), "n" + (rate > 0 ? " bad" : "")),
      cell(clip(String(i.binary || "").split("/").pop(), 28), "t mute", String(i.binary || "")));
  }));
  if (!insts.length) $("inst").replaceChildren(h("tr", null, h("td", { colSpan: 13, class: "mute" }, "no instances")));
  setText("inst-note", `${st.dataDirectory || ""}`);
}

function renderDeploys(list) {
  const box = $("deploy"), ds = arr(list);
  if (!ds.length) { box.replaceChildren(h("div", { class: "note" }, "No deploys yet. Start one with: understudy deploy PATH-TO-NEW-BINARY")); setText("dep-note", ""); return; }
  const d = ds.reduce((a, b) => (num(b.id) > num(a.id) ? b : a));
  setText("dep-note", `${ds.length} in total`);
  const kids = [
    h("div", { style: "margin-bottom:4px" }, h("b", null, `#${d.id} ${d.service || ""} ${d.version || ""} `),
      h("span", { class: "pill " + String(d.state) }, String(d.state)),
      h("span", { class: "mute small" }, `  ${fmtInt(d.comparedRequests)} replies compared` + (d.noSwap ? ", validate only" : ""))),
    h("table", null, h("colgroup", null, h("col", { style: "width:84px" }), h("col", { style: "width:66px" }), h("col", { style: "width:72px" }), h("col")),
      h("tbody", null, ...arr(d.stages).map((s) => h("tr", null,
      cell(s.name), h("td", null, h("span", { class: "pill " + String(s.status) }, String(s.status))),
      cell(fmtInt(s.millis) + " ms", "n"), cell(s.detail, "t mute"))))),
  ];
  const reasons = arr(d.reasons), flagged = arr(d.flagged);
  if (reasons.length) kids.push(h("div", { class: "note line", title: reasons.join("\n") }, "Why: " + clip(reasons.join("; "), 300)));
  if (flagged.length) kids.push(h("div", { class: "note bad line" }, "Flagged: " + flagged.map((f) => `${f.command} ${f.candidateDiffered}/${f.candidateCompared} (noise ${f.noiseDiffered}/${f.noiseCompared})`).join(", ")));
  if (d.swap && d.swap.pauseMicros !== undefined) kids.push(h("div", { class: "note" }, `Swap #${d.swap.id}: pause ${fmtMicros(d.swap.pauseMicros)}`));
  box.replaceChildren(...kids);
}

function renderPredictions(p) {
  const box = $("pred");
  const r = p && p.report;
  const preds = arr(r && r.predictors);
  if (!p || !preds.length) { box.replaceChildren(h("div", { class: "note" }, p ? `No scores yet (${fmtInt(p.observed)} observations).` : "No prediction data.")); return; }
  const rows = preds.map((x) => {
    const eng = x.name === "engine", c = eng ? "#2458d6" : "#7a8494";
    const wt = Math.max(0, Math.min(1, num(x.windowTop1))), at = Math.max(0, Math.min(1, num(x.top1)));
    return h("div", { class: "brow" + (eng ? " hi" : ""), title: `${x.name}: top-1 ${pct(x.top1)}, top-5 ${pct(x.top5)}, window top-1 ${pct(x.windowTop1)}, window top-5 ${pct(x.windowTop5)}, ${fmtInt(x.scored)} scored` },
      h("span", { style: eng ? "color:#2458d6" : "" }, clip(x.name, 14)),
      h("div", { class: "track" },
        h("div", { style: `width:${(at * 100).toFixed(1)}%;background:transparent;border:1.5px solid ${c};opacity:.7` }),
        h("div", { style: `width:${(wt * 100).toFixed(1)}%;background:${c};top:3px;bottom:3px` })),
      h("span", { class: "small" }, `${pct(x.windowTop1)} / ${pct(x.top1)}`));
  });
  const info = [
    `${fmtInt(r.observations)} observations`,
    r.microsecondsPerObservation !== undefined ? `${fmtNum(num(r.microsecondsPerObservation))} µs each` : null,
    r.internedKeys !== undefined ? `${fmtInt(r.internedKeys)} keys` + (num(r.keyGenerations) ? ` (key generation ${fmtInt(r.keyGenerations)})` : "") : null,
    `publishing ${p.publishedSource || r.publishedSource || "—"}`,
    `forecast ${fmtNum(num(p.forecastRequests))} req, ${fmtNum(num(p.forecastWriteChurn))} writes`,
    p.surprise !== undefined && p.surprise !== null ? `surprise ${fmtNum(num(p.surprise))}` : null,
    num(p.dropped) ? `${fmtInt(p.dropped)} dropped` : null,
  ].filter(Boolean).join(" · ");
  const keys = arr(p.predictedKeys).slice(0, 6).map((k) => clip(k, 18));
  box.replaceChildren(...rows, h("div", { class: "note small" }, info),
    keys.length ? h("div", { class: "note small", title: arr(p.predictedKeys).join(", ") }, "next keys: " + keys.join(", ")) : "");
}

function renderSwaps(list) {
  const sw = arr(list).slice().sort((a, b) => num(a.startedAtMillis) - num(b.startedAtMillis));
  const ok = sw.filter((s) => s.outcome && s.outcome.succeeded).length;
  setText("swap-note", sw.length ? `${sw.length} swaps, ${ok} succeeded, ${sw.length - ok} aborted` : "");
  // Timeline.
  const cv = $("c-swaps"); const [g, w, ht] = prepCanvas(cv);
  const L = 10, R = 10, pw = w - L - R, axisY = ht - 16;
  const now = Date.now();
  let t0 = sw.length ? num(sw[0].startedAtMillis) : now - WINDOW * 1000;
  let t1 = Math.max(now, sw.length ? num(sw[sw.length - 1].startedAtMillis) : now);
  if (t1 - t0 < 60000) t0 = t1 - 60000;
  const pad = (t1 - t0) * 0.03; t0 -= pad; t1 += pad;
  const X = (t) => L + (t - t0) / (t1 - t0) * pw;
  g.strokeStyle = "#c9ced6"; g.beginPath(); g.moveTo(L, axisY + 0.5); g.lineTo(L + pw, axisY + 0.5); g.stroke();
  g.fillStyle = "#687080"; g.textAlign = "left"; g.fillText(clock(t0), L, ht - 5);
  g.textAlign = "right"; g.fillText(clock(t1) + (now <= t1 ? " (now)" : ""), L + pw, ht - 5);
  if (!sw.length) { g.textAlign = "center"; g.fillText("no swaps yet — understudy swap / deploy", L + pw / 2, axisY - 14); }
  let lastX = -1e9, row = 0;
  sw.slice(-40).forEach((s) => {
    const x = X(num(s.startedAtMillis)), good = s.outcome && s.outcome.succeeded;
    row = x - lastX < 70 ? (row + 1) % 2 : 0; lastX = x;
    g.strokeStyle = good ? "#1a7f37" : "#c62828"; g.fillStyle = g.strokeStyle;
    g.beginPath(); g.moveTo(x, axisY); g.lineTo(x, 14 + row * 13); g.stroke();
    g.beginPath(); g.arc(x, axisY, 3.5, 0, 7); g.fill();
    g.textAlign = x > w - 70 ? "right" : "left"; g.fillStyle = "#1c2230";
    g.fillText(`#${s.id} ${(num(s.pauseMicros) / 1000).toFixed(1)}ms${good ? "" : " ✗"}`, x + (g.textAlign === "left" ? 3 : -3), 8 + row * 13);
  });
  $("l-steps").replaceChildren(...STEPS.map((n, i) => h("span", null, h("i", { style: `background:${STEP_COLORS[i]};height:8px` }), n)),
    h("span", null, "(bar: time per step; right: intake pause)"));
  // Stacked bars, newest first.
  const recent = sw.slice(-6).reverse();
  const total = (s) => STEPS.reduce((a, n) => a + num(s.stepMicros && s.stepMicros[n]), 0);
  const scale = Math.max(1, ...recent.map(total));
  $("swaps").replaceChildren(...recent.map((s) => {
    const o = s.outcome || {}, good = !!o.succeeded;
    const label = `#${s.id} ${s.reason}${s.automatic ? " (auto)" : ""}  #${s.fromInstance} ${s.fromVersion} → #${s.toInstance} ${s.toVersion}`;
    const why = good ? `${fmtInt(o.residualKeys)} keys patched${o.digestsCompared ? ", digests compared" : ""}` : `aborted: ${o.abortReason || "?"}`;
    const parts = STEPS.map((n, i) => {
      const us = num(s.stepMicros && s.stepMicros[n]);
      return us > 0 ? h("div", { style: `width:${(us / scale * 100).toFixed(2)}%;background:${STEP_COLORS[i]}`, title: `${n}: ${fmtMicros(us)}` }) : null;
    });
    return h("div", { class: "srow", title: `${label}\n${clock(s.startedAtMillis)} at seq ${s.sequence}\n${why}\n` + STEPS.map((n) => `${n} ${fmtMicros(num(s.stepMicros && s.stepMicros[n]))}`).join(", ") },
      h("span", { class: "small line" }, h("b", { class: good ? "ok" : "bad" }, good ? "✓ " : "✗ "), clip(label, 60)),
      h("div", { class: "stack" }, ...parts),
      h("span", { class: "small", style: "text-align:right" }, "pause ", h("b", null, fmtMicros(s.pauseMicros))));
  }));
}

function renderDiscrepancies(d) {
  const recent = arr(d && d.recent).slice().sort((a, b) => num(b.sequence) - num(a.sequence) || num(b.timeMillis) - num(a.timeMillis));
  setText("disc-note", d ? `${fmtInt(d.total)} in total, latest ${recent.length}` : "");
  if (!recent.length) { $("discs").replaceChildren(h("tr", null, h("td", { colSpan: 9, class: "mute" }, "No discrepancies recorded."))); return; }
  $("discs").replaceChildren(...recent.map((x) => h("tr", null,
    cell(clock(x.timeMillis)), cell(fmtInt(x.sequence), "n"), cell(`#${x.instance} ${x.role} ${x.version}`),
    cell(x.kind, x.kind === "reply" ? "warn" : "bad"), cell(x.command),
    cell(clip(x.request, 60), "t", x.request), cell(clip(x.primary, 40), "t", x.primary), cell(clip(x.other, 40), "t", x.other),
    cell(clip(arr(x.keys).join(" "), 40), "t mute", arr(x.keys).join(" ")))));
}

// ---------- polling ----------
async function get(path, text) {
  const ctl = new AbortController(); const timer = setTimeout(() => ctl.abort(), 4000);
  try {
    const r = await fetch(path, { cache: "no-store", signal: ctl.signal,
      headers: { "Authorization": "Bearer " + adminToken() } });
    if (r.status === 401) { tokenRejected(); throw new Error(`${path}: HTTP 401 (admin token missing or wrong)`); }
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return text ? await r.text() : await r.json();
  } finally { clearTimeout(timer); }
}
function safely(name, f) { try { f(); } catch (e) { console.error(name, e); } }
async function poll() {
  try {
    const [st, met, dis, sw, pr, dep] = await Promise.allSettled([get("status"), get("metrics", true),
      get("discrepancies?limit=20"), get("swaps"), get("predictions"), get("deploys")]);
    const conn = $("conn");
    if (st.status === "fulfilled" && st.value && typeof st.value === "object") {
      S.failures = 0; S.last = new Date(); S.unauthorized = false;
      safely("sample", () => sample(st.value, met.status === "fulfilled" ? met.value : null));
      safely("status", () => renderStatus(st.value));
      conn.textContent = "● live " + S.last.toTimeString().slice(0, 8); conn.className = "ok";
    } else {
      S.failures++;
      conn.textContent = S.unauthorized
        ? "● admin token missing or wrong: reload the page to enter it (or open …/#token=TOKEN)"
        : `● unreachable (${S.failures})` + (S.last ? `, last data ${S.last.toTimeString().slice(0, 8)}` : "");
      conn.className = "bad";
    }
    if (dis.status === "fulfilled") safely("discrepancies", () => renderDiscrepancies(dis.value));
    if (sw.status === "fulfilled") safely("swaps", () => renderSwaps(sw.value));
    if (pr.status === "fulfilled") safely("predictions", () => renderPredictions(pr.value));
    if (dep.status === "fulfilled") safely("deploys", () => renderDeploys(dep.value));
    safely("charts", drawCharts);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}
window.addEventListener("resize", () => safely("charts", drawCharts));
poll();
</script>
</body></html>
"""#
}
