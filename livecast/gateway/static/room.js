// The demo live room (served at /): join, chat, likes, gifts, online count,
// and the pinned message: the group attribute PINNED_KEY, shown while it is set.
//
// Every string from the server or another user reaches the page through
// textContent or an <img> src, never as HTML. Likes are sent the way the like
// counter expects (docs/counter.md): taps are merged for LIKE_FLUSH_MS and sent
// as one Low-priority TIMCustomElem {"type":"like","count":n}. The total shown
// is the room's (AppDefinedData or counter "likes"), plus this page's own taps
// that no total has included yet.

import { LivecastClient, custom, like, likeTotal, text } from "/static/livecast.js";

const LIKE_FLUSH_MS = 500;
const LIKE_UNCONFIRMED_MS = 15000;  // own taps no total has shown by then are forgotten
const ONLINE_POLL_MS = 5000;
const MAX_MESSAGES = 200;
const MAX_HEARTS = 40;
const PINNED_KEY = "pinned";  // group attribute (REST modify_group_attr) shown above the chat

const $ = (id) => document.getElementById(id);
const ui = {
  roomName: $("room-name"), online: $("online-count"), likeTotal: $("like-total"),
  conn: $("connection-state"), gap: $("gap-marker"), banner: $("reconnect-banner"), toast: $("toast"),
  list: $("message-list"), hearts: $("hearts"), joinForm: $("join-form"),
  name: $("name-input"), credentials: $("credentials"), userIdInput: $("userid-input"),
  sigInput: $("usersig-input"), joinButton: $("join-button"), joinError: $("join-error"),
  composer: $("composer"), sendForm: $("send-form"), message: $("message-input"),
  like: $("like-button"), gift: $("gift-button"),
  pinned: $("pinned-message"), pinnedText: $("pinned-text"),
};

const room = {
  config: null, groupId: "", client: null, me: "",
  likes: { server: 0, unconfirmed: 0, batch: 0, flushTimer: null, forgetTimer: null },
  missed: 0, gapTimer: null, toastTimer: null, onlineTimer: null, onlineSoon: null,
};

// ------------------------------------------------------------------ helpers
function userIdFor(name) {
  const slug = name.normalize("NFKD").toLowerCase().replace(/[^a-z0-9_.-]/g, "").slice(0, 20);
  const tag = crypto.getRandomValues(new Uint16Array(1))[0].toString(16).padStart(4, "0");
  return `${slug || "viewer"}-${tag}`;
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

function addItem(li) {
  const list = ui.list;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  while (list.childElementCount > MAX_MESSAGES) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
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
  body.append(el("span", "nick", msg.nick || msg.from), el("span", "text", what.text));
  li.append(avatar(msg), body);
  if (msg.from === room.me) li.classList.add("mine");
  addItem(li);
}

function showSystem(content) {
  addItem(el("li", "msg system", content));
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
  if (state === "open") refreshOnline();
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
    const userId = sessionStorage.getItem("livecast.userId") || userIdFor(name);
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
  client.on("message", (m) => { if (m.groupId === room.groupId) showMessage(m); });
  client.on("tip", onTip);
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
    const creds = await credentials(name);
    const client = makeClient(creds);
    room.client = client;
    room.me = creds.userId;
    await client.connect();
    await client.setMyProfile({ nick: name });
    const reply = await client.join(room.groupId);
    if (reply.code !== 0) throw new Error(reply.info || `join failed (${reply.code})`);
    sessionStorage.setItem("livecast.userId", creds.userId);
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
  applyRoom(reply);
  ui.joinForm.hidden = true;
  ui.composer.hidden = false;
  document.body.classList.add("joined");
  ui.message.focus();
  clearInterval(room.onlineTimer);
  room.onlineTimer = setInterval(refreshOnline, ONLINE_POLL_MS);
}

async function sendText(event) {
  event.preventDefault();
  const value = ui.message.value.trim();
  if (!value) return;
  ui.message.value = "";
  await report(room.client.send(room.groupId, text(value)));
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

// ------------------------------------------------------------------ start
async function start() {
  const resp = await fetch("/pages/config");
  room.config = await resp.json();
  const wanted = new URLSearchParams(location.search).get("room");
  room.groupId = wanted || room.config.room;
  ui.roomName.textContent = room.groupId === room.config.room ? "Demo live room" : room.groupId;
  ui.credentials.hidden = room.config.devKey;
  ui.name.value = localStorage.getItem("livecast.name") || "";
  ui.joinForm.addEventListener("submit", join);
  ui.sendForm.addEventListener("submit", sendText);
  ui.like.addEventListener("click", tapLike);
  ui.gift.addEventListener("click", sendGift);
  document.body.dataset.ready = "true";
}

start();
