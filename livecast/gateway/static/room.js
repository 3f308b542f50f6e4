// The demo live room (served at /): join, chat, likes, gifts, online count,
// and the pinned message: the group attribute PINNED_KEY, shown while it is set.
//
// Every string from the server or another user reaches the page through
// textContent or an <img> src, never as HTML. Likes are sent the way the like
// counter expects (docs/counter.md): taps are merged for LIKE_FLUSH_MS and sent
// as one Low-priority TIMCustomElem {"type":"like","count":n}. The total shown
// is the room's (AppDefinedData or counter "likes"), plus this page's own taps
// that no total has included yet.
//
// Before joining, the header shows the room's figures from GET /pages/room.
// Names and texts are each shown in their own direction-isolated <bdi>, names
// on one line with an ellipsis. A message typed while disconnected stays in
// the input and is sent once the connection is back. The user id is kept per
// browser (localStorage), so two tabs are the same user (multi-login shows).

import { LivecastClient, custom, like, likeTotal, text } from "/static/livecast.js";

const LIKE_FLUSH_MS = 500;
const LIKE_UNCONFIRMED_MS = 15000;  // own taps no total has shown by then are forgotten
const ONLINE_POLL_MS = 5000;
const FIGURES_POLL_MS = 5000;  // the header's figures before joining (GET /pages/room)
const MAX_MARKS = 2;           // combining marks kept in a row in a name
const TIP_NAMES = 3;           // ids named in a join tip, the rest counted
const MAX_MESSAGES = 200;
const MAX_HEARTS = 40;
const PINNED_KEY = "pinned";  // group attribute (REST modify_group_attr) shown above the chat

const $ = (id) => document.getElementById(id);
const ui = {
  roomName: $("room-name"), online: $("online-count"), likeTotal: $("like-total"),
  conn: $("connection-state"), gap: $("gap-marker"), banner: $("reconnect-banner"), toast: $("toast"),
  list: $("message-list"), hearts: $("hearts"), joinForm: $("join-form"),
  name: $("name-input"), credentials: $("credentials"), userIdInput: $("userid-input"),
  sigInput: $("usersig-input"), sigField: $("usersig-field"), idHint: $("userid-hint"),
  newPill: $("new-pill"), unsent: $("unsent"), joinButton: $("join-button"), joinError: $("join-error"),
  composer: $("composer"), sendForm: $("send-form"), message: $("message-input"),
  like: $("like-button"), gift: $("gift-button"),
  pinned: $("pinned-message"), pinnedText: $("pinned-text"),
};

const room = {
  config: null, groupId: "", client: null, me: "",
  likes: { server: 0, unconfirmed: 0, batch: 0, flushTimer: null, forgetTimer: null },
  missed: 0, gapTimer: null, toastTimer: null, onlineTimer: null, onlineSoon: null,
  figuresTimer: null, unread: 0, unsent: null, joined: false, follow: true,
};

// ------------------------------------------------------------------ helpers
function userIdFor(name) {
  const slug = name.normalize("NFKD").toLowerCase().replace(/[^a-z0-9_.-]/g, "").slice(0, 20);
  const tag = crypto.getRandomValues(new Uint16Array(1))[0].toString(16).padStart(4, "0");
  return `${slug || "viewer"}-${tag}`;
}

/** A name with runs of combining marks cut to MAX_MARKS (no towers of glyphs). */
function tameMarks(s) {
  return String(s).replace(new RegExp(`(\\p{M}{${MAX_MARKS}})\\p{M}+`, "gu"), "$1");
}

function hueOf(s) {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function el(tag, className, content) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (content !== undefined) node.textContent = content;
  return node;
}

function showToast(message) {
  ui.toast.textContent = message;
  ui.toast.hidden = false;
  clearTimeout(room.toastTimer);
  room.toastTimer = setTimeout(() => { ui.toast.hidden = true; }, 4000);
}

function parseData(elem) {
  try {
    const data = JSON.parse(elem.MsgContent.Data);
    return data && typeof data === "object" ? data : null;
  } catch (err) {
    return null;
  }
}

// ------------------------------------------------------------------ messages
function avatar(msg) {
  const url = typeof msg.avatar === "string" ? msg.avatar : "";
  if (/^(https?:|data:image\/)/i.test(url)) {
    const img = el("img", "avatar");
    img.alt = "";
    img.referrerPolicy = "no-referrer";
    img.src = url;
    return img;
  }
  const who = msg.nick || msg.from || "?";
  const initial = el("span", "avatar initial", [...who][0].toUpperCase());
  initial.style.setProperty("--hue", String(hueOf(msg.from || who)));
  return initial;
}

function describe(msgBody) {
  // -> {kind, text}; kind is "text", "gift", "like" or "other"
  const parts = [];
  for (const elem of msgBody || []) {
    if (elem.MsgType === "TIMTextElem") parts.push(String(elem.MsgContent.Text));
    else if (elem.MsgType === "TIMCustomElem") {
      const data = parseData(elem);
      if (data && data.type === "like") return { kind: "like", count: likeCount(data) };
      if (data && data.type === "gift") return { kind: "gift", text: `sent a ${giftName(data)}` };
      parts.push(String(elem.MsgContent.Desc || "[custom message]"));
    } else if (elem.MsgType === "TIMFaceElem") parts.push("[sticker]");
    else if (elem.MsgType === "TIMImageElem") parts.push("[image]");
    else parts.push(`[${String(elem.MsgType).replace(/^TIM|Elem$/g, "").toLowerCase()}]`);
  }
  return { kind: "text", text: parts.join(" ") };
}

function likeCount(data) {
  return Number.isInteger(data.count) && data.count > 0 ? data.count : 1;
}

function giftName(data) {
  return typeof data.gift === "string" && data.gift ? data.gift.slice(0, 40) : "gift";
}

function atBottom() {
  const list = ui.list;
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

/** Append to the list: followed when at the bottom; else a message (not a
 *  join tip, `counted` false) shows the "new messages" pill. */
function addItem(li, counted = true) {
  const list = ui.list;
  list.append(li);
  while (list.childElementCount > MAX_MESSAGES) list.firstElementChild.remove();
  if (room.follow) list.scrollTop = list.scrollHeight;
  else if (counted) markUnread();
}

function onScroll() {
  room.follow = atBottom();
  if (room.follow) clearUnread();
}

function markUnread() {
  room.unread += 1;
  ui.newPill.textContent = `${room.unread} new message${room.unread === 1 ? "" : "s"} ↓`;
  ui.newPill.hidden = false;
}

function clearUnread() {
  room.unread = 0;
  ui.newPill.hidden = true;
}

function jumpToLatest() {
  room.follow = true;
  ui.list.scrollTop = ui.list.scrollHeight;
  clearUnread();
}

function showMessage(msg) {
  const what = describe(msg.msgBody);
  if (what.kind === "like") {
    if (msg.from !== room.me) floatHearts(Math.min(what.count, 5));
    return;
  }
  const li = el("li", `msg ${what.kind}`);
  li.dataset.seq = String(msg.seq);
  li.dataset.from = String(msg.from);
  const body = el("div", "body");
  const nick = el("bdi", "nick", tameMarks(msg.nick || msg.from));
  nick.title = String(msg.nick || msg.from);
  body.append(nick, el("bdi", "text", what.text));
  li.append(avatar(msg), body);
  if (msg.from === room.me) li.classList.add("mine");
  addItem(li);
}

function showSystem(content) {
  addItem(el("li", "msg system", content));
}

/** "alice, bob and 3 others joined", from the server's aggregated memberJoin tip. */
function joinedText(members, total) {
  const ids = (Array.isArray(members) ? members : []).filter((m) => m && m !== room.me);
  const others = Math.max(0, (Number.isInteger(total) ? total : ids.length)
                             - (members || []).length + ids.length);
  if (others === 0) return "";
  const named = ids.slice(0, TIP_NAMES);
  const rest = others - named.length;
  const who = named.length === 0 ? `${rest} viewer${rest === 1 ? "" : "s"}`
    : rest > 0 ? `${named.join(", ")} and ${rest} other${rest === 1 ? "" : "s"}`
      : named.join(", ");
  return `${who} joined`;
}

function showJoined(tip) {
  const line = joinedText(tip.members, tip.total);
  if (line) addItem(el("li", "msg tip", line), false);
}

// ------------------------------------------------------------------ likes
function setServerLikes(total, snapshot = false) {
  if (total === null) return;
  const likes = room.likes;
  const grew = total - likes.server;
  likes.unconfirmed = snapshot ? likes.unconfirmed : Math.max(0, likes.unconfirmed - grew);
  likes.server = total;
  renderLikes();
}

function renderLikes() {
  const likes = room.likes;
  ui.likeTotal.textContent = String(likes.server + likes.unconfirmed);
  ui.likeTotal.dataset.server = String(likes.server);
  clearTimeout(likes.forgetTimer);
  if (likes.unconfirmed > 0) {
    likes.forgetTimer = setTimeout(() => { likes.unconfirmed = 0; renderLikes(); },
                                   LIKE_UNCONFIRMED_MS);
  }
}

function tapLike() {
  const likes = room.likes;
  likes.batch += 1;
  likes.unconfirmed += 1;
  renderLikes();
  floatHearts(1);
  if (!likes.flushTimer) likes.flushTimer = setTimeout(flushLikes, LIKE_FLUSH_MS);
}

async function flushLikes() {
  const likes = room.likes;
  const count = likes.batch;
  likes.batch = 0;
  likes.flushTimer = null;
  if (count === 0) return;
  const body = like(count);
  let ok = false;
  try {
    ok = (await room.client.send(room.groupId, body, { priority: "Low" })).code === 0;
  } catch (err) {
    ok = false;
  }
  if (!ok) {
    likes.unconfirmed = Math.max(0, likes.unconfirmed - count);
    renderLikes();
  }
}

function floatHearts(n) {
  for (let i = 0; i < n && ui.hearts.childElementCount < MAX_HEARTS; i++) {
    const heart = el("span", "heart", "❤");
    heart.style.setProperty("--x", `${Math.round(Math.random() * 60 - 30)}px`);
    heart.style.setProperty("--hue", String(330 + Math.round(Math.random() * 40)));
    heart.style.setProperty("--delay", `${i * 90}ms`);
    heart.addEventListener("animationend", () => heart.remove());
    ui.hearts.append(heart);
  }
}

// ------------------------------------------------------------------ room state
function applyRoom(reply) {
  if (!reply || reply.code !== 0) return;
  if (reply.group && reply.group.Name) ui.roomName.textContent = reply.group.Name;
  setServerLikes(likeTotal(reply.group, reply.counters), true);
  if (Number.isInteger(reply.onlineMemberNum)) ui.online.textContent = String(reply.onlineMemberNum);
}

async function refreshOnline() {
  const client = room.client;
  if (!client || client.state !== "open") return;
  try {
    const r = await client.getOnlineMemberNum(room.groupId);
    if (r.code === 0) ui.online.textContent = String(r.onlineMemberNum);
  } catch (err) {
    // reconnecting: the next poll or the re-join brings it
  }
}

function refreshOnlineSoon() {
  clearTimeout(room.onlineSoon);
  room.onlineSoon = setTimeout(refreshOnline, 300);
}

function onTip(tip) {
  if (tip.groupId !== room.groupId) return;
  if (tip.type === "memberJoin") showJoined(tip);
  if (tip.type === "memberJoin" || tip.type === "memberQuit") refreshOnlineSoon();
  else if (tip.type === "groupInfo") setServerLikes(likeTotal(tip.changes, null));
  else if (tip.type === "counters") setServerLikes(likeTotal(null, tip.counters));
  else if (tip.type === "system") showSystem(String(tip.content));
  else if (tip.type === "destroyed") showToast("This room has ended.");
  else if (tip.type === "mute" && tip.member === room.me) {
    showToast(tip.until ? "You were muted in this room." : "You can speak again.");
  }
}

function showPinned({ groupId, groupAttributes }) {
  if (groupId !== room.groupId) return;
  const value = groupAttributes ? groupAttributes[PINNED_KEY] : undefined;
  const pinned = typeof value === "string" && value !== "";
  ui.pinnedText.textContent = pinned ? value : "";
  ui.pinned.hidden = !pinned;
}

function onGap(gap) {
  if (gap.groupId !== room.groupId) return;
  room.missed += gap.missed;
  ui.gap.textContent = `⚠ ${room.missed} message${room.missed === 1 ? "" : "s"} missed`;
  ui.gap.hidden = false;
  clearTimeout(room.gapTimer);
  room.gapTimer = setTimeout(() => { ui.gap.hidden = true; room.missed = 0; }, 10000);
}

const STATE_TEXT = {
  idle: "not connected", connecting: "connecting…", open: "live",
  reconnecting: "reconnecting…", closed: "offline",
};

function onState({ state, code }) {
  ui.conn.dataset.state = state;
  let label = STATE_TEXT[state] || state;
  if (state === "closed" && code === 4003) label = "signed in elsewhere";
  if (state === "closed" && code === 4001) label = "UserSig refused";
  ui.conn.textContent = label;
  const away = state === "reconnecting" || state === "closed";
  document.body.classList.toggle("offline", away);
  ui.banner.hidden = !away || ui.composer.hidden;  // only once in the room
  ui.banner.textContent = state === "closed" ? `Disconnected: ${label}.`
    : "Connection lost. Reconnecting…";
  if (state === "open") { refreshOnline(); sendUnsent(); }
  if (state === "closed" && room.joined) offerRejoin();
}

/** Closed for good (kicked, signed in elsewhere, UserSig refused): the join
 *  form comes back, a message being typed stays in the input. */
function offerRejoin() {
  room.joined = false;
  clearInterval(room.onlineTimer);
  ui.composer.hidden = true;
  ui.joinForm.hidden = false;
  ui.joinButton.disabled = false;
  ui.joinButton.textContent = "Join again";
  pollFigures();
}

// ------------------------------------------------------------------ join and send
async function devUserSig(userId) {
  const resp = await fetch("/dev/usersig", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ userId }),
  });
  if (!resp.ok) throw new Error(`no UserSig for ${userId} (HTTP ${resp.status})`);
  return (await resp.json()).userSig;
}

async function credentials(name) {
  if (room.config.devKey) {
    const userId = ui.userIdInput.value.trim() || userIdFor(name);
    return { userId, userSig: await devUserSig(userId), getUserSig: devUserSig };
  }
  const userId = ui.userIdInput.value.trim();
  const userSig = ui.sigInput.value.trim();
  if (!userId || !userSig) throw new Error("Enter your User ID and UserSig.");
  return { userId, userSig, getUserSig: null };
}

function makeClient({ userId, userSig, getUserSig }) {
  const client = new LivecastClient({ sdkAppId: room.config.sdkAppId, userId, userSig, getUserSig });
  client.on("state", onState);
  client.on("message", (m) => {
    if (m.groupId !== room.groupId) return;
    if (room.unsent && m.from === room.me && m.random === room.unsent.random) {
      releaseUnsent();  // it had reached the room before the connection went: not sent twice
    }
    showMessage(m);
  });
  client.on("tip", onTip);
  client.on("online", ({ groupId, onlineMemberNum }) => {
    if (groupId === room.groupId && Number.isInteger(onlineMemberNum)) {
      ui.online.textContent = String(onlineMemberNum);
    }
  });
  client.on("gap", onGap);
  client.on("groupAttributes", showPinned);
  client.on("rejoin", ({ groupId, reply }) => { if (groupId === room.groupId) applyRoom(reply); });
  client.on("kicked", ({ reason }) => showToast(`Disconnected by the server: ${reason}`));
  return client;
}

async function join(event) {
  event.preventDefault();
  const name = ui.name.value.trim();
  if (!name) return;
  ui.joinButton.disabled = true;
  ui.joinError.hidden = true;
  try {
    if (room.client) room.client.close();  // a previous session, closed for good
    const creds = await credentials(name);
    const client = makeClient(creds);
    room.client = client;
    room.me = creds.userId;
    await client.connect();
    await client.setMyProfile({ nick: name });
    const reply = await client.join(room.groupId, { history: 20 });  // the chat so far
    if (reply.code !== 0) throw new Error(reply.info || `join failed (${reply.code})`);
    localStorage.setItem("livecast.userId", creds.userId);
    ui.userIdInput.value = creds.userId;
    localStorage.setItem("livecast.name", name);
    entered(reply);
  } catch (err) {
    if (room.client) room.client.close();
    ui.joinError.textContent = err instanceof Error ? err.message : `${err.info || "failed"} (${err.code})`;
    ui.joinError.hidden = false;
    ui.joinButton.disabled = false;
  }
}

function entered(reply) {
  room.joined = true;
  clearTimeout(room.figuresTimer);
  applyRoom(reply);
  showJoinNotice(reply);
  ui.joinForm.hidden = true;
  ui.composer.hidden = false;
  document.body.classList.add("joined");
  ui.message.focus();
  clearInterval(room.onlineTimer);
  room.onlineTimer = setInterval(refreshOnline, ONLINE_POLL_MS);
}

function showJoinNotice(reply) {
  const group = reply.group || {};
  const name = group.Name || room.groupId;
  const note = typeof group.Notification === "string" && group.Notification ? ` ${group.Notification}` : "";
  const li = el("li", "msg joined-room", `You joined ${name}. Be kind, have fun.${note}`);
  li.dataset.testid = "join-notice";
  addItem(li);
}

// ------------------------------------------------------------------ unsent text
/** A message kept while the connection is away, with its `random`: if its
 *  send had reached the room after all, the re-join brings it back (same
 *  sender and random) and it is not sent again. */
function holdUnsent(value, random = random32()) {
  room.unsent = { value, random };
  if (!ui.message.value.trim()) ui.message.value = value;
  ui.message.classList.add("pending");
  ui.unsent.textContent = "Not connected: your message is kept and will be sent when the connection is back.";
  ui.unsent.hidden = false;
}

function releaseUnsent() {
  if (room.unsent && ui.message.value.trim() === room.unsent.value) ui.message.value = "";
  room.unsent = null;
  ui.message.classList.remove("pending");
  ui.unsent.hidden = true;
}

async function sendUnsent() {
  const held = room.unsent;
  if (!held || !room.client) return;
  releaseUnsent();
  await deliver(held.value, held.random);
}

function random32() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

async function deliver(value, random = random32()) {
  let r;
  try {
    r = await room.client.send(room.groupId, text(value), { random });
  } catch (err) {
    holdUnsent(value, random);  // the connection went while it was on its way
    return;
  }
  if (r.code !== 0) showToast(r.info || `refused (${r.code})`);
  else if (r.dropReason === "MsgFreqCtrl") showToast("The room is busy: your message was dropped.");
}

async function sendText(event) {
  event.preventDefault();
  const value = ui.message.value.trim();
  if (!value) return;
  if (!room.client || room.client.state !== "open") {
    holdUnsent(value);
    return;
  }
  ui.message.value = "";
  await deliver(value);
}

async function sendGift() {
  await report(room.client.send(room.groupId, custom({ type: "gift", gift: "rose" }, "gift"),
                                { priority: "High" }));
}

async function report(pending) {
  try {
    const r = await pending;
    if (r.code !== 0) showToast(r.info || `refused (${r.code})`);
    else if (r.dropReason === "MsgFreqCtrl") showToast("The room is busy: your message was dropped.");
  } catch (err) {
    showToast("Not sent: the connection is being re-established.");
  }
}

// ------------------------------------------------------------------ figures before joining
async function fetchFigures() {
  try {
    const resp = await fetch(`/pages/room?groupId=${encodeURIComponent(room.groupId)}`,
                             { cache: "no-store" });
    if (!resp.ok) return;
    const f = await resp.json();
    if (room.client && room.client.state === "open") return;  // the live figures win
    ui.online.textContent = String(f.online);
    setServerLikes(f.likes, true);
    if (f.name && room.groupId !== room.config.room) ui.roomName.textContent = f.name;
  } catch (err) {
    // the server is away: the figures stay as they were
  }
}

async function pollFigures() {
  clearTimeout(room.figuresTimer);
  await fetchFigures();
  if (!room.client || room.client.state !== "open") {
    room.figuresTimer = setTimeout(pollFigures, FIGURES_POLL_MS);
  }
}

// ------------------------------------------------------------------ start
async function start() {
  const resp = await fetch("/pages/config");
  room.config = await resp.json();
  const wanted = new URLSearchParams(location.search).get("room");
  room.groupId = wanted || room.config.room;
  ui.roomName.textContent = room.groupId === room.config.room ? "Demo live room" : room.groupId;
  ui.sigField.hidden = room.config.devKey;
  ui.idHint.hidden = !room.config.devKey;
  ui.userIdInput.value = localStorage.getItem("livecast.userId") || "";
  if (room.config.devKey) ui.userIdInput.placeholder = "chosen from your name";
  ui.name.value = localStorage.getItem("livecast.name") || "";
  ui.joinForm.addEventListener("submit", join);
  ui.sendForm.addEventListener("submit", sendText);
  ui.like.addEventListener("click", tapLike);
  ui.gift.addEventListener("click", sendGift);
  ui.newPill.addEventListener("click", jumpToLatest);
  ui.list.addEventListener("scroll", onScroll);
  new ResizeObserver(() => { if (room.follow) ui.list.scrollTop = ui.list.scrollHeight; })
    .observe(ui.list);
  await pollFigures();
  document.body.dataset.ready = "true";
}

start();
