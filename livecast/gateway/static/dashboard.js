// The node dashboard (served at /dashboard). Polls /dashboard/stats (the same
// registry /metrics renders) every POLL_MS; rates are differences between two
// polls divided by the time between them; charts are drawn on <canvas>.
// Strings from the server (room ids and names) are set with textContent only.
// When a poll fails, the page turns stale: every tile keeps its last value,
// greyed (body[data-stale=true]), and the status says since when.

const POLL_MS = 1000;
const HISTORY = 120;  // points kept per series (two minutes at one per second)
const PRIORITIES = ["High", "Normal", "Low", "Lowest"];
const COLORS = { High: "#f43f5e", Normal: "#60a5fa", Low: "#34d399", Lowest: "#a78bfa" };
const BREAKER = { 0: ["closed", "ok"], 1: ["open", "bad"], 2: ["half-open", "warn"] };

const $ = (id) => document.getElementById(id);
const WINDOW_MS = HISTORY * POLL_MS;  // the charts' time axis: the last two minutes
const TIME_TICK_MS = 30000;           // a time label every 30 s
const LATENCY_WINDOW_S = 60;          // webhook p50/p99 over the last minute
const history = { time: [], delivered: {}, dropped: {}, tick: [] };
const hookSnapshots = [];             // [{time, latency}] of the last LATENCY_WINDOW_S
const roomsBefore = new Map();        // groupId -> {time, delivered, dropped}
let lastGood = null;                  // Date of the last answered poll
let failingSince = null;              // Date of the first failed poll in a row
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
  renderRooms(s.roomList, s.rooms, s.time);
  renderCluster(s.nodes, s.clusterError);
  if (previous) updateRates(s, previous, s.time - previous.time);
  renderWebhooks(s.webhooks, previous && previous.webhooks, previous ? s.time - previous.time : 0);
  renderAdmission(s.admission, previous && previous.admission, previous ? s.time - previous.time : 0);
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
  push(history.time, s.time * 1000);
  const tick = tickStats(s.tick, p.tick);
  push(history.tick, tick.mean ?? 0);
  $("v-tick").textContent = tick.mean === null ? "idle" : `${fmt(tick.mean, 2)} ms`;
  $("v-tick-p95").textContent = tick.p95 === null ? "" : `p95 ≤ ${tick.p95 === Infinity ? "1000+" : fmt(tick.p95, 2)} ms`;
  renderLegend(rows);
  drawRates();
  drawChart($("tick-canvas"), [{ values: history.tick, color: "#fbbf24" }], "ms", history.time);
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

function roomRates(r, now) {
  const before = roomsBefore.get(r.groupId);
  roomsBefore.set(r.groupId, { time: now, delivered: r.delivered, dropped: r.dropped,
                              deliveredBy: r.deliveredBy });
  if (!before) return null;
  const dt = now - before.time;
  const dropped = {}, deliveredBy = {};
  for (const p of PRIORITIES) {
    dropped[p] = rate(r.dropped[p], before.dropped[p], dt);
    deliveredBy[p] = rate(r.deliveredBy[p], before.deliveredBy[p], dt);
  }
  return { delivered: rate(r.delivered, before.delivered, dt), dropped, deliveredBy };
}

function renderRooms(list, total, now) {
  const body = $("rooms-body");
  const seen = new Set(list.map((r) => r.groupId));
  for (const id of [...roomsBefore.keys()]) if (!seen.has(id)) roomsBefore.delete(id);
  body.replaceChildren(...list.map((r) => {
    const rates = roomRates(r, now);
    const tr = document.createElement("tr");
    tr.dataset.room = r.groupId;
    const delivered = cell(rates ? fmt(rates.delivered) : "…");
    delivered.dataset.by = "delivered";
    delivered.title = PRIORITIES.map((p) => `${p} ${rates ? fmt(rates.deliveredBy[p]) : "…"}/s`)
      .join(" · ");
    tr.append(cell(r.groupId, "id"), cell(r.name, "name"), cell(fmt(r.online, 0)), delivered);
    for (const p of PRIORITIES) {
      const v = rates ? rates.dropped[p] : null;
      const td = cell(v === null ? "…" : fmt(v), v > 0 ? "num drop-hot" : "num");
      td.title = `${fmt(r.dropped[p], 0)} ${p} dropped since the room started`;
      tr.append(td);
    }
    const queue = cell(fmt(r.pending, 0));
    queue.title = PRIORITIES.map((p) => `${p} ${r.pendingBy[p]}`).join(" · ");
    tr.append(queue, cell(fmt(r.likes, 0)), cell(r.owner, "owner"));
    return tr;
  }));
  $("rooms-note").textContent = total > list.length ? `(busiest ${list.length} of ${fmt(total, 0)})` : "";
}

/** The cluster's processes (from their heartbeats); hidden on a single process. */
function renderCluster(nodes, error) {
  const card = $("cluster");
  card.hidden = nodes === null || nodes === undefined;
  if (card.hidden) return;
  $("cluster-error").hidden = !error;
  $("cluster-error").textContent = error || "";
  $("cluster-note").textContent = `(${nodes.length} process${nodes.length === 1 ? "" : "es"})`;
  $("cluster-body").replaceChildren(...nodes.map((n) => {
    const tr = document.createElement("tr");
    tr.dataset.node = n.node;
    if (n.here) tr.className = "here";
    const name = cell(n.node, "id");
    if (n.here) {
      const tag = document.createElement("span");
      tag.className = "badge ok";
      tag.textContent = "this process";
      name.append(" ", tag);
    }
    const more = n.owned > n.owns.length ? ` … (${fmt(n.owned, 0)})` : "";
    const owns = cell(n.owns.join(", ") + more, "owns");
    owns.title = owns.textContent;
    tr.append(name, cell(fmt(n.members, 0)), cell(fmt(n.rooms, 0)), cell(fmt(n.owned, 0)), owns);
    return tr;
  }));
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
  renderLatency(w.latency || {});
}

/** Admission control's refusals: totals, with the rate since the last poll. */
function renderAdmission(a, prev, dt) {
  if (!a) return;
  const withRate = (cur, before) => `${fmt(cur, 0)}${before === undefined ? "" : ` (${fmt(rate(cur, before, dt))}/s)`}`;
  const scopes = (cur, before) => {
    const total = withRate(cur.ip + cur.global, before ? before.ip + before.global : undefined);
    return `${total} · per IP ${fmt(cur.ip, 0)} · node ${fmt(cur.global, 0)}`;
  };
  $("a-connect").textContent = scopes(a.connectRefused, prev && prev.connectRefused);
  $("a-login").textContent = scopes(a.loginRefused, prev && prev.loginRefused);
  $("a-auth-failures").textContent = withRate(a.authFailures, prev ? prev.authFailures : undefined);
  $("a-auth-locked").textContent = withRate(a.authLocked, prev ? prev.authLocked : undefined);
}

/** The q-quantile (a bucket's upper bound, in ms) of cumulative buckets `cur`
 *  minus `prev` (null: since the start); null when no call was made between. */
function quantile(cur, prev, q) {
  const before = new Map(((prev && prev.buckets) || []).map(([le, v]) => [le, v]));
  const count = cur.count - ((prev && prev.count) || 0);
  if (count <= 0) return null;
  for (const [le, v] of cur.buckets) {
    if (v - (before.get(le) || 0) >= q * count) return le === "+Inf" ? Infinity : 1000 * Number(le);
  }
  return Infinity;
}

function ms(x) {
  if (x === null) return "–";
  if (x === Infinity) return "> 5 s";
  return x >= 1000 ? `≤ ${fmt(x / 1000, 1)} s` : `≤ ${fmt(x, 0)} ms`;
}

function renderLatency(latency) {
  const now = Date.now() / 1000;
  hookSnapshots.push({ time: now, latency });
  while (hookSnapshots.length > 1 && now - hookSnapshots[0].time > LATENCY_WINDOW_S) hookSnapshots.shift();
  const old = hookSnapshots[0].latency;
  const commands = Object.keys(latency).filter((c) => latency[c].count > 0).sort();
  $("webhooks-latency").hidden = commands.length === 0;
  $("webhooks-latency-note").hidden = commands.length === 0;
  $("webhooks-latency-body").replaceChildren(...commands.map((c) => {
    const prev = old === latency ? null : old[c];
    const tr = document.createElement("tr");
    tr.dataset.command = c;
    const calls = latency[c].count - ((prev && prev.count) || 0);
    tr.append(cell(c, "id"), cell(fmt(calls, 0)), cell(ms(quantile(latency[c], prev, 0.5))),
              cell(ms(quantile(latency[c], prev, 0.99))));
    return tr;
  }));
}

// ------------------------------------------------------------------ charts
function drawRates() {
  const series = [];
  for (const p of PRIORITIES) {
    series.push({ values: history.delivered[p], color: COLORS[p] });
    series.push({ values: history.dropped[p], color: COLORS[p], dash: [5, 4] });
  }
  drawChart($("rate-canvas"), series, "/s", history.time);
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

/** Round y ticks: a step of 1, 2 or 5 × 10^k giving 3 to 5 intervals up to `max`. */
function niceTicks(max) {
  if (!(max > 0)) return { step: 0.2, top: 1 };
  const raw = max / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((v) => v >= raw);
  return { step, top: step * Math.ceil(max / step) };
}

function axisLabel(v, step) {
  const digits = step >= 1 ? 0 : Math.ceil(-Math.log10(step) - 1e-9);
  return v.toFixed(digits);
}

function clock(t) {
  return new Date(t).toLocaleTimeString("en-GB", { hour12: false });
}

function drawChart(canvas, series, unit, times) {
  const { ctx, width, height } = fitCanvas(canvas);
  const pad = { left: 48, right: 10, top: 8, bottom: 22 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const { step, top } = niceTicks(Math.max(0, ...series.flatMap((s) => s.values)));
  const end = times.length ? times[times.length - 1] : Date.now();
  const x = (t) => pad.left + w * (1 - (end - t) / WINDOW_MS);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.setLineDash([]);
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let v = 0; v <= top + step / 2; v += step) {
    const y = pad.top + h - (h * v) / top;
    ctx.strokeStyle = "#2a2f3a";
    ctx.beginPath(); ctx.moveTo(pad.left, y); ctx.lineTo(width - pad.right, y); ctx.stroke();
    ctx.fillStyle = "#9aa3b2";
    ctx.fillText(`${axisLabel(v, step)}${v + step > top + step / 2 ? unit : ""}`, pad.left - 6, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let t = end - (end % TIME_TICK_MS); t >= end - WINDOW_MS; t -= TIME_TICK_MS) {
    ctx.strokeStyle = "#2a2f3a";
    ctx.beginPath(); ctx.moveTo(x(t), pad.top + h); ctx.lineTo(x(t), pad.top + h + 4); ctx.stroke();
    ctx.fillStyle = "#9aa3b2";
    ctx.fillText(clock(t), Math.max(pad.left + 20, Math.min(width - 28, x(t))), pad.top + h + 6);
  }
  canvas.dataset.yStep = String(step);
  canvas.dataset.yTop = String(top);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    const offset = times.length - s.values.length;
    s.values.forEach((v, i) => {
      const px = x(times[i + offset]);
      const py = pad.top + h - (h * v) / top;
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    ctx.stroke();
    if (s.values.length) {  // the latest value as a dot: visible from the first point on
      const last = s.values[s.values.length - 1];
      ctx.fillStyle = s.color;
      ctx.beginPath();
      ctx.arc(x(times[times.length - 1]), pad.top + h - (h * last) / top, 3, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}

// ------------------------------------------------------------------ polling
function setStatus(state, label) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = label;
}

function markStale(err) {
  failingSince = failingSince || new Date();
  document.body.dataset.stale = "true";
  const ago = Math.round((Date.now() - failingSince.getTime()) / 1000);
  const last = lastGood ? `; figures as of ${clock(lastGood.getTime())}` : "";
  setStatus(lastGood ? "stale" : "error",
            `server unreachable since ${clock(failingSince.getTime())} (${ago} s)${last}: ${err.message}`);
  $("status").dataset.since = failingSince.toISOString();
}

async function poll() {
  try {
    const resp = await fetch("/dashboard/stats", { cache: "no-store" });
    if (resp.status === 401) {  // the login expired (or the token changed): to the login form
      window.location.reload();
      return;
    }
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    update(await resp.json());
    lastGood = new Date();
    failingSince = null;
    delete document.body.dataset.stale;
    delete $("status").dataset.since;
    setStatus("ok", `live · updated ${clock(lastGood.getTime())}`);
  } catch (err) {
    markStale(err);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

window.addEventListener("resize", () => {  // a stale page keeps its charts readable too
  drawRates();
  drawChart($("tick-canvas"), [{ values: history.tick, color: "#fbbf24" }], "ms", history.time);
});
poll();
