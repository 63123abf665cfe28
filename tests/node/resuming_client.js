"use strict";
/*
 * A DDP client that resumes its session as Meteor 3.4's does (meteor/meteor#14051): no npm
 * client sends `receivedCount` yet, so this one speaks DDP itself over npm `ws`.
 *
 *   node resuming_client.js PORT
 *
 * 1. Connects to ws://127.0.0.1:PORT/websocket, subscribes to AllBooks and, once it is ready,
 *    counts the messages it got (pings and pongs left out, as Meteor's client counts them).
 * 2. Cuts its TCP connection (no close frame, no `disconnect`) and prints DROPPED.
 * 3. Waits for a line on stdin (the caller changes a book meanwhile), then reconnects sending,
 *    at once and as Meteor's client does, `connect` with `session` and `receivedCount`, its
 *    `sub` again and a method call.
 * 4. Once the method's result came, sends `disconnect`, closes, and prints ONE line of JSON:
 *
 *    {"session": <first session>, "connected": <the second `connected`>,
 *     "messages": [<every message after it, up to the result>]}
 *
 * Any error, or no answer within TIMEOUT_MS, exits 1 with a message on stderr.
 */

const WebSocket = require("ws");

const TIMEOUT_MS = 30000;
const port = process.argv[2];
const url = `ws://127.0.0.1:${port}/websocket`;
const CONNECT = { msg: "connect", version: "1", support: ["1", "pre2", "pre1"] };
const SUB = { msg: "sub", id: "books", name: "AllBooks", params: [] };

setTimeout(() => fail(new Error("timed out")), TIMEOUT_MS).unref();

function fail(error) {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
}

let session = null;
let received = 0;

function open(onMessage, onOpen) {
  const ws = new WebSocket(url);
  ws.on("error", fail);
  ws.on("open", () => onOpen(ws));
  ws.on("message", (data) => {
    const message = JSON.parse(data.toString());
    if (message.msg === "ping") {
      ws.send(JSON.stringify({ msg: "pong", id: message.id }));
    }
    if (message.msg !== "ping" && message.msg !== "pong") {
      received += 1;
    }
    onMessage(ws, message);
  });
  return ws;
}

open(
  (ws, message) => {
    if (message.msg === "connected") {
      session = message.session;
      ws.send(JSON.stringify(SUB));
    } else if (message.msg === "ready") {
      ws._socket.destroy(); // the TCP connection is cut: the server sees it go, nothing else
      process.stdout.write("DROPPED\n");
      process.stdin.once("data", resume);
    }
  },
  (ws) => ws.send(JSON.stringify(CONNECT)),
);

function resume() {
  let connected = null;
  const messages = [];
  open(
    (ws, message) => {
      if (connected === null) {
        connected = message;
        return;
      }
      messages.push(message);
      if (message.msg === "result") {
        ws.send(JSON.stringify({ msg: "disconnect" }));
        ws.close();
        process.stdout.write(`${JSON.stringify({ session, connected, messages })}\n`);
        process.exit(0);
      }
    },
    (ws) => {
      ws.send(JSON.stringify({ ...CONNECT, session, receivedCount: received }));
      ws.send(JSON.stringify(SUB));
      ws.send(JSON.stringify({ msg: "method", id: "1", method: "test.echo", params: ["back"] }));
    },
  );
}
