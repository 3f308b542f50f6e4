// livecast.js: a browser client of the livecast WebSocket protocol
// (docs/protocol.md, "JavaScript client"). An ES module, no dependencies.
//
//   import { LivecastClient, text, custom } from "/static/livecast.js";
//   const lc = new LivecastClient({ sdkAppId, userId, userSig });
//   lc.on("message", (m) => console.log(m.groupId, m.seq, m.nick, m.msgBody));
//   await lc.connect();
//   await lc.join("demo");
//   await lc.send("demo", text("hello"));
//
// What it keeps true:
// - one WebSocket at a time; requests are matched to replies by `id`, and a
//   reply with a non-zero `code` is resolved (not thrown), as the server sent it;
//   a request is sent only while `open` (a reconnect's login and re-joins
//   first), else it rejects "not connected";
// - connect() makes one attempt, bounded by `connectTimeout`: if the server
//   cannot be reached, does not answer in time or refuses the login, it
//   rejects with a ConnectError (an Error with `code`) and nothing is retried;
// - once connected, after an unexpected close it reconnects by itself (never
//   after close(), even one made while a new UserSig was being asked for), waiting a random time in
//   [0, min(maxDelay, baseDelay * 2^attempt)) ("full jitter"), then logs in again,
//   restores the profile and re-joins every room it was in ("rejoin" event):
//   a room is the client's once a join of it is answered (one that times out
//   is quit, as the server may have joined it), until it is quit
//   (even while its join or re-join is on its way), destroyed or refused for
//   good; a refusal that passes (10002, 10006, 10023, 80003) keeps it, and a
//   re-join so refused is asked again after a backoff;
//   closes that a retry cannot fix (4003 kicked, 1009, 4009) stop it, and 4001
//   (UserSig refused) retries only when `getUserSig` can mint a new one;
//   4013 (admission control: too many connects or logins) waits the
//   "retry after N s" of its reason first, then the jittered backoff on top;
// - per room it remembers the last `seq` (and the room's `historyEpoch`) and
//   re-joins with `sinceSeq`: the messages sent while it was away come first, as
//   "message" events (marked `recovered: true`), then live ones, with no gap and
//   no duplicate; when the server no longer holds them all, or a live batch
//   skips seqs (a slow connection), it reports a "gap";
// - it never renders anything: strings from the server go to the caller as is.

const NO_RETRY = new Set([1009, 4003, 4009]);
// join refusals that pass (the request rate, the server busy or its store, the
// backend's before-join callback failing): the room is kept and asked again
const TEMPORARY = new Set([10002, 10006, 10023, 80003]);
const TRY_LATER = 4013;
const STATES = ["idle", "connecting", "open", "reconnecting", "closed"];

/** A one-element msgBody holding a text. */
export function text(s) {
  return [{ MsgType: "TIMTextElem", MsgContent: { Text: String(s) } }];
}

/** A one-element msgBody holding custom data (an object is JSON-encoded). */
export function custom(data, desc = "") {
  const d = typeof data === "string" ? data : JSON.stringify(data);
  return [{ MsgType: "TIMCustomElem", MsgContent: { Data: d, Desc: desc } }];
}

/** The key of a room's like total, in AppDefinedData or as a group counter. */
export const LIKES_KEY = "likes";

/** A like message body: one TIMCustomElem {"type":"like","count":n} (send it at Low). */
export function like(count = 1) {
  return custom({ type: "like", count }, "like");
}

/** The room's like total from a join/getGroupInfo reply's group and counters, or a
 *  groupInfo tip's changes (null for the other): the larger of the two, null if absent. */
export function likeTotal(group, counters) {
  let found = null;
  for (const kv of (group && group.AppDefinedData) || []) {
    if (kv.Key === LIKES_KEY && /^\d+$/.test(kv.Value)) found = Number(kv.Value);
  }
  for (const kv of counters || []) {
    if (kv.Key === LIKES_KEY && Number.isInteger(kv.Value)) found = Math.max(found ?? 0, kv.Value);
  }
  return found;
}

/** The default endpoint: /v1/ws on the page's own host. */
export function defaultUrl(loc = globalThis.location) {
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/v1/ws`;
}

/** Full-jitter exponential backoff: a random delay in [0, min(max, base*2^attempt)). */
export function backoff(attempt, baseDelay = 500, maxDelay = 15000, random = Math.random) {
  return random() * Math.min(maxDelay, baseDelay * 2 ** attempt);
}

/** The seconds of a "retry after N s" hint in a close reason or an info; 0 if none. */
export function retryAfter(reason) {
  const m = /retry after (\d+(?:\.\d+)?) s/.exec(reason || "");
  return m ? Number(m[1]) : 0;
}

/** Why connect() failed: `code` is the login reply's code (e.g. a UserSig
 *  code, 70001 expired) or, when no login reply came, the close code (1006:
 *  the server could not be reached; 4000: no answer within connectTimeout). */
export class ConnectError extends Error {
  constructor(code, info, reply = null) {
    super(`${info || "connection failed"} (${code})`);
    this.name = "ConnectError";
    this.code = code;
    this.info = info || "";
    this.reply = reply;  // the refused login's reply, if there was one
    this.retryAfter = retryAfter(info);  // seconds to wait first (4013, 70399), or 0
  }
}

function random32() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

export class LivecastClient {
  constructor(opts = {}) {
    this.url = opts.url || defaultUrl();
    this.sdkAppId = opts.sdkAppId;
    this.userId = opts.userId || "";        // empty: a guest (receive only)
    this.userSig = opts.userSig || "";
    this.getUserSig = opts.getUserSig || null;  // async (userId) => new UserSig
    this.timeout = opts.timeout ?? 10000;       // ms per request
    this.baseDelay = opts.baseDelay ?? 500;
    this.maxDelay = opts.maxDelay ?? 15000;
    this.pingEvery = opts.pingEvery ?? 20000;
    this.connectTimeout = opts.connectTimeout ?? 10000;  // ms for connect()'s one attempt
    this.state = "idle";
    this.rooms = new Map();      // joined rooms: groupId -> last seq seen (0: none yet)
    this.wanted = new Set();     // rooms joined or being joined, and not quit since
    this.epochs = new Map();     // groupId -> historyEpoch of that seq (recovery)
    this.history = new Map();    // groupId -> recent messages asked for at join
    this.attrs = new Map();      // groupId -> {groupAttributes, attrSeq} last seen
    this.profile = null;         // {nick, avatar} to restore after a reconnect
    this.ws = null;
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map();    // id -> {resolve, reject, timer}
    this.handlers = new Map();   // event -> Set of functions
    this.timer = null;           // reconnect or heartbeat timer
    this.stopped = false;
    this.opened = null;          // {resolve, reject} of the running connect()
    this.connectTimer = null;    // bounds connect()'s attempt
  }

  // ---------------------------------------------------------------- events
  /** Listen to an event; returns a function that stops listening. Events:
   *  state {state, delay?, code?}, message {groupId, seq, from, nick, ...},
   *  tip {groupId, type, ...}, counters {groupId, counters},
   *  groupInfo {groupId, changes}, gap {groupId, expected, got, missed},
   *  groupAttributes {groupId, groupAttributes, attrSeq} (after a join and on every change),
   *  rejoin {groupId, reply}, kicked {reason}, close {code, reason},
   *  online {groupId, onlineMemberNum}. */
  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(fn);
    return () => this.handlers.get(event).delete(fn);
  }

  emit(event, detail) {
    for (const fn of this.handlers.get(event) || []) {
      try { fn(detail); } catch (err) { console.error(err); }
    }
  }

  setState(state, extra = {}) {
    if (!STATES.includes(state)) throw new Error(`bad state ${state}`);
    this.state = state;
    this.emit("state", { state, ...extra });
  }

  // ---------------------------------------------------------------- lifecycle
  /** Connect and log in; resolves once open (and rooms re-joined). One
   *  attempt: it rejects with a ConnectError if the server cannot be reached,
   *  does not get through login within `connectTimeout` ms, or refuses the
   *  login. Reconnecting by itself starts only once it has been open. */
  connect() {
    this.stopped = false;
    this.attempt = 0;
    return new Promise((resolve, reject) => {
      this.opened = { resolve, reject };
      clearTimeout(this.connectTimer);
      this.connectTimer = setTimeout(() => this.giveUp(
        new ConnectError(4000, `no connection within ${this.connectTimeout} ms`)),
      this.connectTimeout);
      this.firstSig();
    });
  }

  /** No UserSig yet but a way to get one: ask for it before the first open. */
  async firstSig() {
    if (this.userId && !this.userSig && this.getUserSig) {
      try {
        this.userSig = await this.getUserSig(this.userId);
      } catch (err) {
        return this.giveUp(new ConnectError(4001, `getUserSig failed: ${err}`));
      }
    }
    if (this.opened) this.open();
  }

  /** connect()'s attempt failed: reject it with `err`, close, retry nothing. */
  giveUp(err) {
    if (!this.opened) return;
    const ws = this.ws;
    this.stopped = true;
    this.ws = null;
    clearTimeout(this.timer);
    this.failPending(err.code);
    if (ws) ws.close(1000, "connect failed");
    this.setState("closed", { code: err.code });
    this.settle(false, err);
  }

  /** Close for good: no reconnect. */
  close() {
    if (this.opened) return this.giveUp(new ConnectError(1000, "closed before it was open"));
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "bye");
    this.setState("closed", { code: 1000 });
  }

  open() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => this.handshake(ws);
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => this.closed(ws, ev.code, ev.reason);
  }

  async handshake(ws) {
    try {
      if (this.userId) {
        const r = await this.call("login", { sdkAppId: this.sdkAppId, userId: this.userId,
                                                userSig: this.userSig });
        if (r.code !== 0) {
          if (this.opened) return this.giveUp(new ConnectError(r.code, r.info, r));
          return undefined;  // a reconnect: the server closes 4001, closed() decides
        }
      }
      if (this.profile && this.userId) await this.call("setMyProfile", this.profile);
      for (const groupId of [...this.rooms.keys()]) {
        if (!this.wanted.has(groupId)) continue;  // quit meanwhile
        const reply = await this.joinNow(groupId);
        if (TEMPORARY.has(reply.code)) this.rejoinLater(ws, groupId, 0);
        this.emit("rejoin", { groupId, reply });
      }
      if (ws !== this.ws) return;
      this.attempt = 0;
      this.setState("open");
      this.heartbeat(ws);
      this.settle(true);
    } catch (err) {
      this.abandon(ws, "handshake failed");  // a request timed out (or the socket closed)
    }
  }

  /** Give up on a socket that still looks open: close it and retry at once,
   *  without waiting for a close frame a dead network may never deliver. */
  abandon(ws, reason) {
    if (ws !== this.ws) return;
    ws.close(4000, reason);
    this.closed(ws, 4000, reason);
  }

  settle(ok, reply) {
    const o = this.opened;
    this.opened = null;
    clearTimeout(this.connectTimer);
    if (o) (ok ? o.resolve() : o.reject(reply));
  }

  heartbeat(ws) {
    this.timer = setTimeout(async () => {
      if (ws !== this.ws || this.state !== "open") return;
      try {
        await this.request("ping", {});
        this.heartbeat(ws);
      } catch (err) {
        this.abandon(ws, "no pong");
      }
    }, this.pingEvery);
  }

  async closed(ws, code, reason) {
    if (ws !== this.ws) return;
    clearTimeout(this.timer);
    this.ws = null;
    this.failPending(code);
    this.emit("close", { code, reason });
    if (this.stopped) return;
    if (this.opened) {  // connect()'s attempt: no retry, it rejects
      this.giveUp(new ConnectError(code, reason || (code === 1006 ? "server unreachable" : "closed")));
      return;
    }
    if (NO_RETRY.has(code) || (code === 4001 && !this.getUserSig)) {
      this.setState("closed", { code });
      return;
    }
    if (code === 4001) {
      try { this.userSig = await this.getUserSig(this.userId); } catch (err) { /* retry later */ }
      if (this.stopped) return;  // close() while the new UserSig was asked for
    }
    const hint = code === TRY_LATER ? retryAfter(reason) * 1000 : 0;
    const delay = hint + backoff(this.attempt, this.baseDelay, this.maxDelay);
    this.attempt += 1;
    this.setState("reconnecting", { delay, code });
    this.timer = setTimeout(() => this.open(), delay);
  }

  failPending(code) {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`connection closed (${code})`));
    }
    this.pending.clear();
  }

  // ---------------------------------------------------------------- requests
  /** Send any op; resolves with its reply. Rejects if not connected (also
   *  while a reconnect logs in and re-joins: a send then would go before its
   *  room's re-join), on close, or after `timeout` ms without a reply. */
  request(op, fields = {}, timeout = this.timeout) {
    if (this.state !== "open") return Promise.reject(new Error("not connected"));
    return this.call(op, fields, timeout);
  }

  /** `request` on the socket as it is: the handshake's own requests (login,
   *  profile, re-joins) go before the client is open, and a quit always may. */
  call(op, fields = {}, timeout = this.timeout) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("not connected"));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${op}: no reply in ${timeout} ms`));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ ...fields, op, id }));
    });
  }

  /** Join a room (kept across reconnects). Resolves with the reply.
   *  `history`: that many recent messages first, as "message" events. */
  async join(groupId, { history = 0 } = {}) {
    if (this.state !== "open") throw new Error("not connected");
    const joined = this.rooms.has(groupId);
    this.wanted.add(groupId);
    if (history > 0) this.history.set(groupId, history);
    const ws = this.ws;
    try {
      const r = await this.joinNow(groupId);
      if (r.code !== 0 && !joined) this.forget(groupId);  // not a room of this client
      return r;
    } catch (err) {  // no reply (closed, timed out): joined only if it was before
      if (!joined && this.wanted.has(groupId)) {
        this.forget(groupId);
        // timed out on a live socket: the server may still join it, so it is
        // left there too (a quit goes after the join, and is carried out after it)
        if (ws === this.ws) this.call("quit", { groupId }).catch(() => {});
      }
      throw err;
    }
  }

  /** A re-join refused for a reason that passes (a rate, the backend, the
   *  server busy): asked again after a backoff while the socket lives and the
   *  room is wanted. */
  rejoinLater(ws, groupId, attempt) {
    setTimeout(async () => {
      if (ws !== this.ws || !this.wanted.has(groupId)) return;  // closed (re-joined then), quit
      if (this.state !== "open") return this.rejoinLater(ws, groupId, attempt);  // still re-joining
      let reply;
      try { reply = await this.joinNow(groupId); } catch (err) { return; }  // closed: rejoined then
      if (TEMPORARY.has(reply.code)) this.rejoinLater(ws, groupId, attempt + 1);
      this.emit("rejoin", { groupId, reply });
    }, backoff(attempt + 1, this.baseDelay, this.maxDelay));
  }

  async joinNow(groupId) {
    const fields = { groupId };
    const last = this.rooms.get(groupId) || 0;
    const since = this.epochs.has(groupId);
    if (since) Object.assign(fields, { sinceSeq: last, historyEpoch: this.epochs.get(groupId) });
    else if (this.history.get(groupId)) fields.history = this.history.get(groupId);
    const r = await this.call("join", fields);
    if (!this.wanted.has(groupId)) return r;  // quit while the join was on its way
    if (r.code !== 0) {
      if (!TEMPORARY.has(r.code)) this.forget(groupId);  // destroyed, banned, refused
      return r;
    }
    if (r.groupAttributes) this.noteAttrs(groupId, r.groupAttributes, r.attrSeq, true);
    this.caughtUp(groupId, r, since ? last : null);
    return r;
  }

  /** A join's reply: its messages (history, or recovered) before any live one;
   *  recovery refused: a gap up to the newest seq. */
  caughtUp(groupId, r, last) {
    if (typeof r.historyEpoch !== "number") return;
    const sameRun = this.epochs.get(groupId) === r.historyEpoch;
    this.epochs.set(groupId, r.historyEpoch);
    const msgs = r.msgs || [];
    if (last !== null && sameRun && r.recovered === false && r.lastSeq > last) {
      this.emit("gap", { groupId, expected: last + 1, got: r.lastSeq + 1,
                         missed: r.lastSeq - last });
    } else if (last !== null && !sameRun && r.lastSeq > 0 && !(r.msgs || []).length) {
      // the room's history restarted (a restarted server): its seqs 1..lastSeq
      // of the new run were sent while this client was away
      this.emit("gap", { groupId, expected: 1, got: r.lastSeq + 1, missed: r.lastSeq });
    }
    if (!r.recovered || !sameRun) {  // count from the reply's messages, else the newest seq
      this.rooms.set(groupId, msgs.length ? msgs[0].seq - 1 : (r.lastSeq || 0));
    }
    const mark = r.recovered ? { recovered: true } : {};
    this.messages(groupId, msgs.map((m) => ({ ...m, ...mark })));
  }

  async quit(groupId) {
    this.forget(groupId);
    return this.call("quit", { groupId });
  }

  /** The room is no longer this client's: not re-joined, its state dropped. */
  forget(groupId) {
    this.wanted.delete(groupId);
    this.rooms.delete(groupId);
    this.attrs.delete(groupId);
    this.epochs.delete(groupId);
    this.history.delete(groupId);
  }

  /** Send a msgBody at a priority (High, Normal, Low, Lowest). The reply comes
   *  when its fate is known: msgSeq > 0 delivered, 0 with a dropReason dropped. */
  send(groupId, msgBody, { priority = "Normal", random = random32(), cloudCustomData = "" } = {}) {
    return this.request("send", { groupId, msgBody, priority, random, cloudCustomData },
                        this.timeout + 6000);
  }

  /** Set nick/avatar; remembered and restored after every reconnect. */
  setMyProfile(profile) {
    this.profile = { ...(this.profile || {}), ...profile };
    return this.request("setMyProfile", profile);
  }

  getGroupInfo(groupId) { return this.request("getGroupInfo", { groupId }); }
  getOnlineMemberNum(groupId) { return this.request("getOnlineMemberNum", { groupId }); }

  // ---------------------------------------------------------------- group attributes
  /** The room's attributes as last seen (join, tips, replies): {key: value}. */
  groupAttributes(groupId) {
    return { ...((this.attrs.get(groupId) || {}).groupAttributes || {}) };
  }

  /** Ask the server; `keyList` empty or absent: every key. Resolves with the
   *  reply ({code, groupAttributes, attrSeq}). */
  async getGroupAttributes(groupId, keyList = []) {
    const r = await this.request("getGroupAttributes", { groupId, keyList });
    if (r.code === 0 && keyList.length === 0) this.noteAttrs(groupId, r.groupAttributes, r.attrSeq);
    return r;
  }

  /** Member writes (when the server allows them): upsert, replace all, delete
   *  (`keyList` empty: every key). Each carries the attrSeq last seen
   *  (compare-and-set); 10056 means another write came first: read again, retry. */
  setGroupAttributes(groupId, groupAttributes, opts = {}) {
    return this.writeAttrs("setGroupAttributes", groupId, { groupAttributes }, opts);
  }

  initGroupAttributes(groupId, groupAttributes, opts = {}) {
    return this.writeAttrs("initGroupAttributes", groupId, { groupAttributes }, opts);
  }

  deleteGroupAttributes(groupId, keyList = [], opts = {}) {
    return this.writeAttrs("deleteGroupAttributes", groupId, { keyList }, opts);
  }

  async writeAttrs(op, groupId, fields, { attrSeq } = {}) {
    const seq = attrSeq ?? (this.attrs.get(groupId) || {}).attrSeq ?? 0;
    const r = await this.request(op, { groupId, ...fields, attrSeq: seq });
    if (r.code === 0) this.noteAttrs(groupId, r.groupAttributes, r.attrSeq);
    return r;
  }

  /** Keep the newest attributes seen and announce them: a tip or reply no newer
   *  than what is known is ignored; a join's always counts (the room may have
   *  started again on a restarted server). */
  noteAttrs(groupId, groupAttributes, attrSeq, joined = false) {
    const last = this.attrs.get(groupId);
    if (!joined && last && last.attrSeq >= attrSeq) return;
    this.attrs.set(groupId, { groupAttributes: { ...groupAttributes }, attrSeq });
    this.emit("groupAttributes", { groupId, groupAttributes: { ...groupAttributes }, attrSeq });
  }

  // ---------------------------------------------------------------- pushes
  receive(data) {
    let frame;
    try { frame = JSON.parse(data); } catch (err) { return; }
    if (frame.op === "reply") return this.answer(frame);
    if (frame.op === "msgs") return this.messages(frame.groupId, frame.msgs || []);
    if (frame.op === "tips") return this.tips(frame.groupId, frame.tips || []);
    if (frame.op === "kicked") return this.emit("kicked", { reason: frame.reason });
  }

  answer(frame) {
    const p = this.pending.get(frame.id);
    if (!p) return;
    this.pending.delete(frame.id);
    clearTimeout(p.timer);
    p.resolve(frame);
  }

  messages(groupId, msgs) {
    for (const m of msgs) {
      const last = this.rooms.get(groupId) || 0;
      if (this.epochs.has(groupId) && typeof m.seq === "number" && m.seq <= last) continue;
      this.checkSeq(groupId, m.seq);
      this.emit("message", { groupId, ...m });
    }
  }

  /** seq is contiguous per room: a jump means missed messages; a smaller seq
   *  means the room started again (a restarted server): count from there. */
  checkSeq(groupId, seq) {
    if (!this.rooms.has(groupId) || typeof seq !== "number") return;
    const last = this.rooms.get(groupId);
    if (last > 0 && seq > last + 1) {
      this.emit("gap", { groupId, expected: last + 1, got: seq, missed: seq - last - 1 });
    }
    this.rooms.set(groupId, seq);
  }

  tips(groupId, tips) {
    for (const tip of tips) {
      this.emit("tip", { groupId, ...tip });
      if (tip.type === "counters") this.emit("counters", { groupId, counters: tip.counters || [] });
      if (tip.type === "groupInfo") this.emit("groupInfo", { groupId, changes: tip.changes || {} });
      if (tip.type === "online") this.emit("online", { groupId, onlineMemberNum: tip.onlineMemberNum });
      if (tip.type === "groupAttributes") {
        this.noteAttrs(groupId, tip.groupAttributes || {}, tip.attrSeq);
      }
      if (tip.type === "destroyed") this.forget(groupId);
    }
  }
}
