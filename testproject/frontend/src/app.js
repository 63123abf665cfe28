// The bookstore's live page: the books as `AllBooks` publishes them, kept up to date over
// DDP, a login form (Meteor's password login), and the logged-in user's private shelf
// (`MyShelf`), which disappears at logout. The page's HTML comes from Django
// (bookstore/templates/bookstore/index.html); this script takes over its lists once the
// subscription is ready.
import { Connection } from "./ddp.js";

// Where the login token is kept, so that a reload or a reconnect stays logged in.
const TOKEN_KEY = "bookstore.loginToken";

const $ = (selector) => document.querySelector(selector);

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

// Ids are strings on the wire: sort "10" after "9".
function byId([a], [b]) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

// What Meteor's client sends for a password: SHA-256 of its UTF-8 bytes, lowercase hex.
// Browsers offer SHA-256 only to secure pages (https, or http on localhost); elsewhere the
// password goes as a plain string, which the server also accepts.
async function passwordParam(password) {
  if (!globalThis.crypto || !crypto.subtle) return password;
  const bytes = new TextEncoder().encode(password);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return { digest: hex, algorithm: "sha-256" };
}

const connection = new Connection(new URL("/sockjs", window.location.href).href);
const allBooks = connection.subscribe("AllBooks");
const myShelf = connection.subscribe("MyShelf");

// The logged-in user's id, or null; `resuming` while a stored token is being tried.
let userId = null;
let resuming = false;

connection.on("connected", () => {
  // Every session starts logged out: log the new one in with the token, if there is one
  // (the page shows the previous session's data meanwhile).
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) {
    userId = null;
    return;
  }
  resuming = true;
  connection
    .call("login", { resume: token })
    .then((result) => {
      userId = result.id;
    })
    .catch((error) => {
      userId = null;
      // A token the server no longer knows: logged out elsewhere, or expired.
      if (error.error === 403) localStorage.removeItem(TOKEN_KEY);
    })
    .finally(() => {
      resuming = false;
      render();
    });
});
connection.on("change", render);

function render() {
  renderStatus();
  renderBooks();
  renderAccount();
  renderShelf();
}

function renderStatus() {
  const status = $("#status");
  const live = connection.status === "connected" && connection.ready(allBooks);
  const state = live ? "live" : connection.status === "offline" ? "offline" : "connecting";
  status.dataset.state = state;
  status.textContent = {
    live: "Live: changes made anywhere appear here as they are committed.",
    connecting: "Connecting…",
    offline: "Connection lost; reconnecting…",
  }[state];
  for (const button of document.querySelectorAll("form button")) {
    button.disabled = connection.status !== "connected";
  }
}

function renderBooks() {
  // Until the subscription is first ready, the list stays as the server rendered it.
  if (!connection.ready(allBooks) && !$("#authors").dataset.live) return;
  const books = new Map();
  for (const [id, book] of [...connection.find("bookstore.book")].sort(byId)) {
    if (!books.has(book.author_id)) books.set(book.author_id, []);
    books.get(book.author_id).push([id, book]);
  }
  const items = [];
  for (const [id, author] of [...connection.find("bookstore.author")].sort(byId)) {
    const item = element("li", `${author.name} <${author.email}>`, { "data-author": id });
    const list = element("ul");
    for (const [bookId, book] of books.get(id) || []) {
      list.append(element("li", book.title, { "data-book": bookId }));
    }
    item.append(list);
    items.push(item);
  }
  if (!items.length) items.push(element("li", "No books yet.", { class: "empty" }));
  const authors = $("#authors");
  authors.replaceChildren(...items);
  authors.dataset.live = "true";
}

function renderAccount() {
  const user = userId && connection.find("users").get(userId);
  const loggedIn = Boolean(userId);
  $("#login").hidden = loggedIn || resuming;
  $("#whoami").hidden = !loggedIn;
  if (loggedIn) $("#username").textContent = (user && user.username) || "…";
}

function renderShelf() {
  const shelf = $("#shelf-items");
  const hint = $("#shelf-hint");
  if (!userId) {
    shelf.replaceChildren();
    hint.textContent = resuming ? "Logging in…" : "Log in to see your shelf.";
    return;
  }
  const books = connection.find("bookstore.book");
  const items = [...connection.find("bookstore.shelfitem")].sort(byId).map(([id, item]) => {
    const book = books.get(item.book_id);
    const title = book ? book.title : `Book ${item.book_id}`;
    return element("li", item.note ? `${title}: ${item.note}` : title, { "data-shelf": id });
  });
  shelf.replaceChildren(...items);
  hint.textContent = items.length
    ? ""
    : connection.ready(myShelf)
      ? "Your shelf is empty."
      : "Loading your shelf…";
}

function showError(selector, error) {
  $(selector).textContent = error ? error.reason || error.message : "";
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const name = form.elements.username.value.trim();
  showError("#login-error", null);
  try {
    const result = await connection.call("login", {
      // As Meteor's loginWithPassword: an address with "@" is an email, else a username.
      user: name.includes("@") ? { email: name } : { username: name },
      password: await passwordParam(form.elements.password.value),
    });
    localStorage.setItem(TOKEN_KEY, result.token);
    userId = result.id;
    form.reset();
  } catch (error) {
    showError("#login-error", error);
  }
  render();
});

$("#logout").addEventListener("click", async () => {
  try {
    await connection.call("logout");
  } catch (error) {
    console.warn("logout failed", error);
    return;
  }
  localStorage.removeItem(TOKEN_KEY);
  userId = null;
  render();
});

$("#add-book").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  showError("#add-book-error", null);
  try {
    await connection.call(
      "bookstore.addBook",
      form.elements.title.value.trim(),
      form.elements.email.value.trim(),
    );
    form.elements.title.value = "";
  } catch (error) {
    showError("#add-book-error", error);
  }
});

for (const node of document.querySelectorAll("[data-live-only]")) node.hidden = false;
connection.start();
render();
