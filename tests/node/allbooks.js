"use strict";
/*
 * A third-party DDP client (the npm package `ddp`, node-ddp 0.12.1) against a real ddpserver,
 * so that the interoperability tests check the server against a client it was not written with.
 *
 *   node allbooks.js PORT            (127.0.0.1, path /websocket)
 *   node allbooks.js ws://HOST:PORT/websocket
 *
 * Subscribes to AllBooks and, once it is ready, calls bookstore.addBook('Node Book',
 * 'node@example.com'). When both the method's result and its `updated` have arrived (the
 * server promises the method's own writes reach the caller before `updated`), prints ONE
 * line of JSON on stdout:
 *
 *   {"added": "<book id>", "collections": {"<name>": {"<id>": {<fields>}}}}
 *
 * then closes and exits 0. Any error, a connection lost early, or no answer within
 * TIMEOUT_MS exits 1 with a message on stderr, so a test never waits on it forever.
 */

const DDPClient = require("ddp");

const TIMEOUT_MS = 20000;

function fail(message) {
  process.stderr.write(`allbooks.js: ${message}\n`);
  process.exit(1);
}

/** Host, port and path from a port number or a ws:// URL. */
function target(arg) {
  if (/^\d+$/.test(arg)) {
    return { host: "127.0.0.1", port: Number(arg), path: "websocket" };
  }
  const url = new URL(arg);
  if (url.protocol !== "ws:") {
    fail(`expected a port or a ws:// URL, got ${arg}`);
  }
  // node-ddp prefixes the path with "/" itself.
  const path = url.pathname.replace(/^\/+/, "") || "websocket";
  return { host: url.hostname, port: Number(url.port || 80), path };
}

/** node-ddp's collections without the `_id` it copies into every document. */
function withoutIds(collections) {
  const out = {};
  for (const [name, docs] of Object.entries(collections)) {
    out[name] = {};
    for (const [id, doc] of Object.entries(docs)) {
      const { _id, ...fields } = doc;
      out[name][id] = fields;
    }
  }
  return out;
}

function main() {
  if (process.argv.length !== 3) {
    fail("usage: node allbooks.js PORT|ws://HOST:PORT/websocket");
  }
  const timer = setTimeout(() => fail(`no complete answer within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
  const client = new DDPClient({
    ...target(process.argv[2]),
    ssl: false,
    autoReconnect: false,
    useSockJs: false,
    ddpVersion: "1",
  });
  let done = false;

  client.on("socket-error", (error) => fail(`socket error: ${error.message || error}`));
  client.on("socket-close", (code, reason) => {
    if (!done) {
      fail(`connection closed early (code ${code}, reason ${JSON.stringify(reason)})`);
    }
    clearTimeout(timer);
    process.exit(0);
  });

  client.connect((error) => {
    if (error) {
      fail(`could not connect: ${error}`);
    }
    client.subscribe("AllBooks", [], (nosub) => {
      if (nosub) {
        fail(`AllBooks refused: ${JSON.stringify(nosub)}`);
      }
      addBook(client, (added) => {
        done = true;
        process.stdout.write(
          JSON.stringify({ added, collections: withoutIds(client.collections) }) + "\n",
        );
        // Exits 0 from the socket-close handler once the close handshake is over.
        client.close();
      });
    });
  });
}

/** Call bookstore.addBook; `then(id)` runs once its result AND its `updated` are in. */
function addBook(client, then) {
  let result;
  let answered = false;
  let updated = false;
  const maybeDone = () => {
    if (answered && updated) {
      then(result);
    }
  };
  client.call(
    "bookstore.addBook",
    ["Node Book", "node@example.com"],
    (error, id) => {
      if (error) {
        fail(`bookstore.addBook failed: ${JSON.stringify(error)}`);
      }
      result = id;
      answered = true;
      maybeDone();
    },
    () => {
      updated = true;
      maybeDone();
    },
  );
}

main();
