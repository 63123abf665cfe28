"use strict";
/*
 * A SockJS DDP client that survives its server going away, as Meteor's browser client does:
 * when its connection closes it opens a new one (a new SockJS session, so a proxy may send
 * it to another server), logs in again with its resume token and subscribes again.
 *
 *   node failover_client.js URL USERNAME PASSWORD TRANSPORT SESSION
 *
 * URL is the site's root (http://127.0.0.1:PORT); TRANSPORT the one sockjs-client may use
 * ("websocket", "xhr-polling"...); SESSION the SockJS session id of the first connection
 * (the caller picks it, to know which server a hashing proxy sends it to); later ones are
 * random, as sockjs-client makes them.
 *
 * It prints one line of JSON per event:
 *
 *   {"event": "ready", "connection": <1, 2...>, "transport", "userId",
 *    "books": {<id>: {fields}}}   logged in and AllBooks ready, on each connection
 *   {"event": "closed", "connection", "code", "reason"}   the server closed it
 *   {"event": "seen", "title", "books"}   a book of the title asked for is there
 *
 * and reads commands on stdin, one a line: `WAIT <title>` (print `seen` once a book of that
 * title is in AllBooks, on whatever connection) and `QUIT` (close and exit 0). Any error,
 * or no command for TIMEOUT_MS, exits 1 with a message on stderr.
 */

const crypto = require("crypto");
const readline = require("readline");
const SockJS = require("sockjs-client");

const TIMEOUT_MS = 60000;

function fail(message) {
  process.stderr.write(`failover_client.js: ${message}\n`);
  process.exit(1);
}

function print(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

const [url, username, password, transport, firstSession] = process.argv.slice(2);
if (!firstSession) {
  fail("usage: node failover_client.js URL USERNAME PASSWORD TRANSPORT SESSION");
}

let timer = null;
function keepAlive() {
  clearTimeout(timer);
  timer = setTimeout(() => fail(`nothing to do for ${TIMEOUT_MS} ms`), TIMEOUT_MS);
}

let books = {};
let token = null;
let userId = null;
let connection = 0;
let sock = null;
let nextId = 1;
let waiting = []; // titles asked for with WAIT, not seen yet
const pending = {}; // method id -> callback(result message)

function send(message) {
  sock.send(JSON.stringify(message));
}

function call(method, params, callback) {
  const id = String(nextId++);
  pending[id] = callback;
  send({ msg: "method", id, method, params });
}

function checkWaiting() {
  const titles = new Set(Object.values(books).map((doc) => doc.title));
  const seen = waiting.filter((title) => titles.has(title));
  waiting = waiting.filter((title) => !titles.has(title));
  for (const title of seen) {
    print({ event: "seen", title, books });
  }
}

function receive(data) {
  let message;
  try {
    message = JSON.parse(data);
  } catch (error) {
    fail(`not JSON: ${JSON.stringify(data)}`);
  }
  const { msg } = message;
  if (msg === "ping") {
    send(message.id === undefined ? { msg: "pong" } : { msg: "pong", id: message.id });
  } else if (msg === "error" || msg === "failed") {
    fail(`the server refused: ${data}`);
  } else if (msg === "connected") {
    const credentials = token
      ? { resume: token }
      : {
          user: { username },
          password: {
            digest: crypto.createHash("sha256").update(password, "utf8").digest("hex"),
            algorithm: "sha-256",
          },
        };
    call("login", [credentials], (answer) => {
      if (answer.error) {
        fail(`login failed: ${JSON.stringify(answer.error)}`);
      }
      token = answer.result.token;
      userId = answer.result.id;
      send({ msg: "sub", id: `books${connection}`, name: "AllBooks", params: [] });
    });
  } else if (msg === "result") {
    const callback = pending[message.id];
    delete pending[message.id];
    if (callback) {
      callback(message);
    }
  } else if (msg === "nosub") {
    fail(`AllBooks refused: ${data}`);
  } else if (msg === "ready") {
    print({ event: "ready", connection, transport: sock.transport, userId, books });
  } else if (message.collection === "bookstore.book") {
    if (msg === "added") {
      books[message.id] = { ...(message.fields || {}) };
    } else if (msg === "changed") {
      Object.assign(books[message.id], message.fields || {});
      for (const field of message.cleared || []) {
        delete books[message.id][field];
      }
    } else if (msg === "removed") {
      delete books[message.id];
    }
  }
  checkWaiting();
}

function open() {
  connection += 1;
  // A new connection starts from nothing: what the new subscription sends is the truth.
  books = {};
  const sessionId = connection === 1 ? () => firstSession : 8;
  sock = new SockJS(`${url}/sockjs`, null, { transports: [transport], sessionId });
  const own = connection;
  sock.onopen = () => send({ msg: "connect", version: "1", support: ["1", "pre2", "pre1"] });
  sock.onmessage = (event) => receive(event.data);
  sock.onclose = (event) => {
    if (own !== connection) {
      return;
    }
    print({ event: "closed", connection, code: event.code, reason: event.reason });
    setTimeout(open, 100 + Math.random() * 400);
  };
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  keepAlive();
  if (line === "QUIT") {
    connection += 1; // its close is ours, not the server's
    sock.close();
    process.exit(0);
  } else if (line.startsWith("WAIT ")) {
    waiting.push(line.slice(5));
    checkWaiting();
  } else {
    fail(`unknown command ${JSON.stringify(line)}`);
  }
});

keepAlive();
open();
