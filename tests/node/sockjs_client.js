"use strict";
/*
 * DDP over SockJS the way Meteor's browser client speaks it: npm `sockjs-client` opens
 * http://127.0.0.1:PORT/sockjs (GET /sockjs/info, then its websocket transport, falling back
 * to the others), and the few lines of DDP below ride on it, one DDP message per SockJS
 * message.
 *
 *   node sockjs_client.js PORT USERNAME PASSWORD LIVE_TITLE [--xhr]
 *
 * --xhr allows only the xhr-polling transport (POST .../xhr and .../xhr_send), the fallback
 * a browser takes when WebSockets are blocked.
 *
 * 1. Connects with {"msg":"connect","version":"1","support":["1","pre2","pre1"]} and logs in
 *    as Meteor's loginWithPassword does: {user: {username}, password: {digest, algorithm}}.
 * 2. Subscribes to AllBooks and, once it is ready, prints the line READY.
 * 3. Waits for a book titled LIVE_TITLE, which the caller creates (in another process) after
 *    reading READY, to arrive live.
 * 4. Calls bookstore.addBook('From sockjs', 'sockjs@example.com') and waits for its result
 *    and its `updated`, by which time the book must have arrived.
 * 5. Calls logout, waits for its result and `updated`, then prints ONE line of JSON, closes
 *    and exits 0:
 *
 *    {"transport": "websocket"|"xhr-polling", "login": <login's result as sent>,
 *     "userBeforeResult": <users doc present when the login's result came, or null>,
 *     "live": {"id", ...fields}, "added": "<id>", "addedDoc": {"id", ...fields} or null,
 *     "loggedOut": true, "logoutResult": <result, null when absent>,
 *     "usersAfterLogout": [<users docs>]}
 *
 * Any error, a connection lost early, or no answer within TIMEOUT_MS exits 1 with a message
 * on stderr, so a test never waits on it forever.
 */

const crypto = require("crypto");
const SockJS = require("sockjs-client");

const TIMEOUT_MS = 30000;

function fail(message) {
  process.stderr.write(`sockjs_client.js: ${message}\n`);
  process.exit(1);
}

/** A minimal DDP client over one SockJS connection: a merge of documents, and waiters. */
class DDP {
  constructor(sock) {
    this.sock = sock;
    this.collections = {};
    this.waiters = [];
    this.nextId = 1;
    this.closing = false;
    sock.onmessage = (event) => this.receive(event.data);
    sock.onclose = (event) => {
      if (!this.closing) {
        fail(`the connection closed early (code ${event.code}, reason ${JSON.stringify(event.reason)})`);
      }
      process.exit(0);
    };
  }

  send(message) {
    this.sock.send(JSON.stringify(message));
  }

  /** Docs of `name` as {"id", ...fields}. */
  docs(name) {
    return Object.entries(this.collections[name] || {}).map(([id, fields]) => ({ id, ...fields }));
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch (error) {
      fail(`not JSON: ${JSON.stringify(data)}`);
    }
    const { msg } = message;
    if (msg === "ping") {
      this.send(message.id === undefined ? { msg: "pong" } : { msg: "pong", id: message.id });
    } else if (msg === "error") {
      fail(`the server sent an error: ${data}`);
    } else if (msg === "added") {
      const docs = (this.collections[message.collection] ||= {});
      docs[message.id] = { ...(message.fields || {}) };
    } else if (msg === "changed") {
      const doc = (this.collections[message.collection] || {})[message.id];
      if (!doc) {
        fail(`changed for a document never added: ${data}`);
      }
      Object.assign(doc, message.fields || {});
      for (const field of message.cleared || []) {
        delete doc[field];
      }
    } else if (msg === "removed") {
      const docs = this.collections[message.collection] || {};
      if (!(message.id in docs)) {
        fail(`removed for a document never added: ${data}`);
      }
      delete docs[message.id];
    }
    // Waiters see every message after the documents took it in.
    this.waiters = this.waiters.filter((waiter) => !waiter(message));
  }

  /** Resolve with the first message (now or later) for which `test` returns a value. */
  waitFor(test) {
    return new Promise((resolve) => {
      this.waiters.push((message) => {
        const value = test(message);
        if (value !== undefined) {
          resolve(value);
          return true;
        }
        return false;
      });
    });
  }

  /** Call a method; resolve with its result once both `result` and `updated` are in. */
  async call(method, params) {
    const id = String(this.nextId++);
    const result = this.waitFor((m) => (m.msg === "result" && m.id === id ? m : undefined));
    const updated = this.waitFor((m) =>
      m.msg === "updated" && m.methods.includes(id) ? true : undefined,
    );
    this.send({ msg: "method", id, method, params });
    const answer = await result;
    if (answer.error) {
      fail(`${method} failed: ${JSON.stringify(answer.error)}`);
    }
    await updated;
    return answer.result === undefined ? null : answer.result;
  }
}

async function main() {
  const args = process.argv.slice(2).filter((arg) => arg !== "--xhr");
  const xhr = process.argv.includes("--xhr");
  if (args.length !== 4) {
    fail("usage: node sockjs_client.js PORT USERNAME PASSWORD LIVE_TITLE [--xhr]");
  }
  const [port, username, password, liveTitle] = args;
  setTimeout(() => fail(`not done within ${TIMEOUT_MS} ms`), TIMEOUT_MS).unref();

  const sock = new SockJS(
    `http://127.0.0.1:${port}/sockjs`,
    null,
    xhr ? { transports: ["xhr-polling"] } : {},
  );
  const ddp = new DDP(sock);
  await new Promise((resolve) => {
    sock.onopen = resolve;
  });

  const connected = ddp.waitFor((m) => {
    if (m.msg === "failed") {
      fail(`the server refused DDP: ${JSON.stringify(m)}`);
    }
    return m.msg === "connected" ? m : undefined;
  });
  ddp.send({ msg: "connect", version: "1", support: ["1", "pre2", "pre1"] });
  await connected;

  // The users document must be there when the login's result comes (Meteor's client waits
  // for it), so note it at that moment.
  let userBeforeResult = null;
  ddp.waitFor((m) => {
    if (m.msg === "result") {
      userBeforeResult = ddp.docs("users")[0] || null;
      return true;
    }
    return undefined;
  });
  const digest = crypto.createHash("sha256").update(password, "utf8").digest("hex");
  const login = await ddp.call("login", [
    { user: { username }, password: { digest, algorithm: "sha-256" } },
  ]);

  const subId = crypto.randomBytes(8).toString("hex");
  const ready = ddp.waitFor((m) => {
    if (m.msg === "nosub" && m.id === subId) {
      fail(`AllBooks refused: ${JSON.stringify(m)}`);
    }
    return m.msg === "ready" && m.subs.includes(subId) ? true : undefined;
  });
  ddp.send({ msg: "sub", id: subId, name: "AllBooks", params: [] });
  await ready;

  const findLive = () => ddp.docs("bookstore.book").find((doc) => doc.title === liveTitle);
  const live = ddp.waitFor(() => findLive());
  process.stdout.write("READY\n");
  const liveDoc = await live;

  const added = await ddp.call("bookstore.addBook", ["From sockjs", "sockjs@example.com"]);
  const addedDoc = ddp.docs("bookstore.book").find((doc) => doc.id === added) || null;

  const logoutResult = await ddp.call("logout", []);

  process.stdout.write(
    JSON.stringify({
      transport: sock.transport,
      login,
      userBeforeResult,
      live: liveDoc,
      added,
      addedDoc,
      loggedOut: true,
      logoutResult,
      usersAfterLogout: ddp.docs("users"),
    }) + "\n",
  );
  // Exits 0 from the close handler.
  ddp.closing = true;
  sock.close();
}

main().catch((error) => fail(error.stack || String(error)));
