// A Socket.IO 4 room broadcast server, the way its documentation shows it:
// one io.to(room).emit per message, no coalescing, no rate limit.
// It speaks what `livecast bench --peers socketio-node` needs (livecast/bench/dialects.py):
//   "join" {groupId}            -> socket.join(room), ack {code: 0}
//   "send" {groupId, ...}       -> next seq of the room, emit "msgs" to the room
//                                  with livecast's msgs object, ack {code, msgSeq, msgTime, dropReason}
// Usage: node server.js PORT      (npm install in this folder first)
"use strict";
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 8090);
const io = new Server(port, {
  serveClient: false,
  transports: ["websocket"],
  perMessageDeflate: false,
});
const seqs = new Map();

io.on("connection", (socket) => {
  socket.on("join", (req, ack) => {
    socket.join(String(req.groupId));
    if (ack) ack({ code: 0, info: "" });
  });
  socket.on("send", (req, ack) => {
    const room = String(req.groupId);
    const seq = (seqs.get(room) || 0) + 1;
    seqs.set(room, seq);
    const now = Date.now();
    const msg = {
      seq, time: now, from: socket.id, nick: "", avatar: "",
      priority: req.priority || "Normal", random: req.random || 0,
      msgBody: req.msgBody, cloudCustomData: req.cloudCustomData || "",
    };
    io.to(room).emit("msgs", { op: "msgs", groupId: room, msgs: [msg] });
    if (ack) ack({ code: 0, info: "", msgSeq: seq, msgTime: now, dropReason: "" });
  });
});

const stop = () => io.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
