"use strict";
/*
 * A third-party DDP client with accounts: npm `simpleddp` with `simpleddp-plugin-login`, over
 * a raw WebSocket (npm `ws`, since Node 20 has no global WebSocket) at /websocket.
 *
 *   node simpleddp_client.js PORT USERNAME PASSWORD LIVE_TITLE
 *
 * 1. Connects to ws://127.0.0.1:PORT/websocket and logs in with the plugin, sending what
 *    Meteor's loginWithPassword sends: {user: {username}, password: {digest, algorithm}}.
 * 2. Subscribes to AllBooks and, once it is ready, prints the line READY.
 * 3. Waits for a book titled LIVE_TITLE, which the caller creates (in another process) after
 *    reading READY, to arrive live.
 * 4. Calls bookstore.addBook('From simpleddp', 'simpleddp@example.com') and waits for that
 *    book to arrive in its collection too.
 * 5. Logs out with the plugin, then prints ONE line of JSON and exits 0:
 *
 *    {"login": {id, token, tokenExpires: {"$date": ms}, type}, "user": <users doc or null>,
 *     "live": <book doc>, "added": "<id>", "addedDoc": <book doc>, "loggedOut": true,
 *     "userId": <plugin's userId after logout>, "usersAfterLogout": [<users docs>]}
 *
 *    simpleddp decodes EJSON, so tokenExpires arrives as a Date; it is printed back as
 *    {"$date": ms} to show that it was one. Documents are simpleddp's: `id` plus fields.
 *
 * Any error, a connection lost early, or no answer within TIMEOUT_MS exits 1 with a message
 * on stderr, so a test never waits on it forever.
 */

const crypto = require("crypto");
const WebSocket = require("ws");
const simpleDDP = require("simpleddp");
const { simpleDDPLogin } = require("simpleddp-plugin-login");

const TIMEOUT_MS = 30000;

function fail(message) {
  process.stderr.write(`simpleddp_client.js: ${message}\n`);
  process.exit(1);
}

/** A DDP error object (or anything thrown) as one readable line. */
function describe(error) {
  if (error instanceof Error && !error.error) {
    return error.stack || String(error);
  }
  return JSON.stringify(error);
}

/** Resolve with the first document of `collection` that `test` accepts, now or later. */
function waitForDoc(server, collection, test) {
  return new Promise((resolve) => {
    const found = server.collection(collection).filter(test).fetch();
    if (found.length) {
      resolve(found[0]);
      return;
    }
    const listener = server.collection(collection).onChange(({ added, changed }) => {
      const doc = added || (changed && changed.next);
      if (doc && test(doc)) {
        listener.stop();
        resolve(doc);
      }
    });
  });
}

async function main() {
  if (process.argv.length !== 6) {
    fail("usage: node simpleddp_client.js PORT USERNAME PASSWORD LIVE_TITLE");
  }
  const [port, username, password, liveTitle] = process.argv.slice(2);
  setTimeout(() => fail(`not done within ${TIMEOUT_MS} ms`), TIMEOUT_MS).unref();

  const server = new simpleDDP(
    {
      endpoint: `ws://127.0.0.1:${port}/websocket`,
      SocketConstructor: WebSocket,
      autoReconnect: false,
    },
    [simpleDDPLogin],
  );
  let finished = false;
  server.on("error", (message) => fail(`the server sent an error: ${JSON.stringify(message)}`));
  server.on("disconnected", () => {
    if (!finished) {
      fail("the connection closed early");
    }
  });

  await server.connect();

  const digest = crypto.createHash("sha256").update(password, "utf8").digest("hex");
  const login = await server
    .login({ password: { digest, algorithm: "sha-256" }, user: { username } })
    .catch((error) => fail(`login failed: ${describe(error)}`));
  if (server.userId !== login.id) {
    fail(`the plugin did not take the login: userId ${server.userId}, result ${describe(login)}`);
  }
  // Sent before the login's result, so already in the collection.
  const user = server.collection("users").filter((doc) => doc.id === login.id).fetch()[0] || null;

  const books = server.subscribe("AllBooks");
  await books.ready().catch((error) => fail(`AllBooks refused: ${describe(error)}`));
  const live = waitForDoc(server, "bookstore.book", (doc) => doc.title === liveTitle);
  process.stdout.write("READY\n");
  const liveDoc = await live;

  const added = await server
    .call("bookstore.addBook", "From simpleddp", "simpleddp@example.com")
    .catch((error) => fail(`bookstore.addBook failed: ${describe(error)}`));
  const addedDoc = await waitForDoc(server, "bookstore.book", (doc) => doc.id === added);

  await server.logout().catch((error) => fail(`logout failed: ${describe(error)}`));

  finished = true;
  const { tokenExpires } = login;
  process.stdout.write(
    JSON.stringify({
      login: {
        ...login,
        tokenExpires: tokenExpires instanceof Date ? { $date: tokenExpires.getTime() } : tokenExpires,
      },
      user,
      live: liveDoc,
      added,
      addedDoc,
      loggedOut: true,
      userId: server.userId === undefined ? null : server.userId,
      usersAfterLogout: server.collection("users").fetch(),
    }) + "\n",
  );
  await server.disconnect();
  process.exit(0);
}

main().catch((error) => fail(describe(error)));
