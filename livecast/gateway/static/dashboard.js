// The node dashboard (served at /dashboard). Polls /dashboard/stats (the same
// registry /metrics renders) every POLL_MS; rates are differences between two
// polls divided by the time between them; charts are drawn on <canvas>.
// Strings from the server (room ids and names) are set with textContent only.

const POLL_MS = 1000;
const HISTORY = 120;  // points kept per series (two minutes at one per second)
const PRIORITIES = ["High", "Normal", "Low", "Lowest"];
const COLORS = { High: "#f43f5e", Normal: "#60a5fa", Low: "#34d399", Lowest: "#a78bfa" };
const BREAKER = { 0: ["closed", "ok"], 1: ["open", "bad"], 2: ["half-open", "warn"] };

const $ = (id) => document.getElementById(id);
const history = { delivered: {}, dropped: {}, tick: [] };
for (const p of PRIORITIES) { history.delivered[p] = []; history.dropped[p] = []; }
let previous = null;

// ------------------------------------------------------------------ numbers
function rate(now, before, dt) {
  const d = now - before;
  return d >= 0 && dt > 0 ? d / dt : 0;  // a counter that went back: the node restarted
}

function fmt(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en");
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

function push(list, value) {
  list.push(value);
  if (list.length > HISTORY) list.shift();
}

function sum(obj) {
  return Object.values(obj || {}).reduce((a, b) => a + b, 0);
}

/** Mean and p95 (a bucket's upper bound) of the tick histogram between two polls, in ms. */
function tickStats(cur, prev) {
  const count = cur.count - prev.count;
  if (count <= 0) return { mean: null, p95: null };
  const mean = (1000 * (cur.sum - prev.sum)) / count;
  const before = new Map(prev.buckets.map(([le, v]) => [le, v]));
  let p95 = null;
  for (const [le, v] of cur.buckets) {
    if (v - (before.get(le) || 0) >= 0.95 * count) {
      p95 = le === "+Inf" ? Infinity : 1000 * Number(le);
      break;
    }
  }
  return { mean, p95 };
}

// ------------------------------------------------------------------ update
function update(s) {
  $("v-connections").textContent = fmt(s.connections, 0);
  $("v-rooms").textContent = fmt(s.rooms, 0);
  $("v-members").textContent = fmt(s.members, 0);
  renderRooms(s.roomList, s.rooms);
  if (previous) updateRates(s, previous, s.time - previous.time);
  renderWebhooks(s.webhooks, previous && previous.webhooks, previous ? s.time - previous.time : 0);
  previous = s;
}

function updateRates(s, p, dt) {
  const rows = [];
  for (const pr of PRIORITIES) {
    const del = rate(s.delivered[pr], p.delivered[pr], dt);
    const drop = rate(s.dropped[pr], p.dropped[pr], dt);
    push(history.delivered[pr], del);
    push(history.dropped[pr], drop);
    rows.push([pr, del, drop]);
  }
  const delivered = rate(sum(s.delivered), sum(p.delivered), dt);
  const dropped = rate(sum(s.dropped), sum(p.dropped), dt);
  const chart = $("rate-chart");
  chart.dataset.delivered = delivered.toFixed(2);
  chart.dataset.dropped = dropped.toFixed(2);
  $("v-delivered").textContent = fmt(delivered);
  $("v-dropped").textContent = fmt(dropped);
  $("v-rejected").textContent = fmt(rate(s.rejected, p.rejected, dt));
  $("v-shed").textContent = `${fmt(s.shed, 0)} (${fmt(rate(s.shed, p.shed, dt))}/s)`;
  const tick = tickStats(s.tick, p.tick);
  push(history.tick, tick.mean ?? 0);
  $("v-tick").textContent = tick.mean === null ? "idle" : `${fmt(tick.mean, 2)} ms`;
  $("v-tick-p95").textContent = tick.p95 === null ? "" : `p95 ≤ ${tick.p95 === Infinity ? "1000+" : fmt(tick.p95, 2)} ms`;
  renderLegend(rows);
  drawRates();
  drawChart($("tick-canvas"), [{ values: history.tick, color: "#fbbf24" }], "ms");
}

function renderLegend(rows) {
  const body = $("rate-legend");
  body.replaceChildren(...rows.map(([pr, del, drop]) => {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    const swatch = document.createElement("span");
    swatch.className = `swatch ${pr.toLowerCase()}`;
    name.append(swatch, pr);
    tr.append(name, cell(fmt(del)), cell(fmt(drop)));
    return tr;
  }));
}

function cell(text, className = "num") {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  return td;
}

function renderRooms(list, total) {
  const body = $("rooms-body");
  const top = Math.max(1, ...list.map((r) => r.online));
  body.replaceChildren(...list.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.room = r.groupId;
    const barCell = cell("", "barcol");
    const bar = document.createElement("meter");
    bar.min = 0;
    bar.max = top;
    bar.value = r.online;
    barCell.append(bar);
    tr.append(cell(r.groupId, "id"), cell(r.name, "name"), cell(fmt(r.online, 0)), barCell);
    return tr;
  }));
  $("rooms-note").textContent = total > list.length ? `(busiest ${list.length} of ${fmt(total, 0)})` : "";
}

function renderWebhooks(w, prev, dt) {
  $("webhooks-none").hidden = !!w;
  $("webhooks-kv").hidden = !w;
  if (!w) return;
  for (const key of ["sent", "failed", "timeout", "dropped"]) {
    const r = prev ? ` (${fmt(rate(w[key], prev[key], dt))}/s)` : "";
    $(`w-${key}`).textContent = `${fmt(w[key], 0)}${r}`;
  }
  const [label, tone] = BREAKER[w.breaker] || ["unknown", "warn"];
  const badge = $("w-breaker");
  badge.textContent = label;
  badge.className = `badge ${tone}`;
}

// ------------------------------------------------------------------ charts
function drawRates() {
  const series = [];
  for (const p of PRIORITIES) {
    series.push({ values: history.delivered[p], color: COLORS[p] });
    series.push({ values: history.dropped[p], color: COLORS[p], dash: [5, 4] });
  }
  drawChart($("rate-canvas"), series, "/s");
}

function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(200, canvas.clientWidth);
  const height = Math.max(100, canvas.clientHeight);
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { ctx, width, height };
}

function niceMax(x) {
  if (x <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= x);
}

function axisLabel(v, step) {
  return v.toFixed(step >= 1 ? 0 : Math.ceil(-Math.log10(step)));
}

function drawChart(canvas, series, unit) {
  const { ctx, width, height } = fitCanvas(canvas);
  const pad = { left: 44, right: 8, top: 8, bottom: 8 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const top = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + h - (h * i) / 4;
    ctx.strokeStyle = "#2a2f3a";
    ctx.setLineDash([]);
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(width - pad.right, y);
    ctx.stroke();
    ctx.fillStyle = "#9aa3b2";
    ctx.fillText(`${axisLabel((top * i) / 4, top / 4)}${i === 4 ? unit : ""}`, pad.left - 6, y);
  }
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    s.values.forEach((v, i) => {
      const x = pad.left + (w * (i + HISTORY - s.values.length)) / (HISTORY - 1);
      const y = pad.top + h - (h * v) / top;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

// ------------------------------------------------------------------ polling
function setStatus(state, label) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = label;
}

async function poll() {
  try {
    const resp = await fetch("/dashboard/stats", { cache: "no-store" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    update(await resp.json());
    setStatus("ok", `updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    setStatus("error", `no data: ${err.message}`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
