// A small DDP client over SockJS: the part of Meteor's client the bookstore's page needs.
//
// It connects (DDP "1"), answers the server's pings, keeps each collection's documents as
// `added`, `changed` and `removed` messages arrive, subscribes, and calls methods. When the
// connection drops it reconnects with a doubling delay and subscribes again; until every
// subscription of the new session is ready, readers keep seeing the documents they had,
// so the page does not flash empty.
import SockJS from "sockjs-client";

const FIRST_RETRY_MS = 500;
const LAST_RETRY_MS = 10000;

export class Connection {
  constructor(url) {
    this.url = url;
    this.socket = null;
    // "connecting" until `connected`; "connected"; "offline" while waiting to reconnect.
    this.status = "connecting";
    // What messages write to: collection name -> Map(id -> fields).
    this.store = new Map();
    // What readers see: the store, or the previous session's until the new one is ready.
    this.shown = this.store;
    this.subs = new Map(); // id -> {name, params, ready}
    this.calls = new Map(); // id -> {resolve, reject, answer, updated}
    this.counter = 0;
    this.retryMs = FIRST_RETRY_MS;
    this.listeners = new Map();
    this.changeQueued = false;
  }

  // Events: "change" (documents, subscriptions or status changed), "connected" (a new
  // session, before the subscriptions are sent again).
  on(event, listener) {
    if (!this.listeners.has(event)) this.listeners.set(event, []);
    this.listeners.get(event).push(listener);
  }

  emit(event) {
    for (const listener of this.listeners.get(event) || []) listener(this);
  }

  // One "change" event for a burst of messages.
  changed() {
    if (this.changeQueued) return;
    this.changeQueued = true;
    setTimeout(() => {
      this.changeQueued = false;
      this.emit("change");
    }, 0);
  }

  start() {
    this.status = "connecting";
    this.changed();
    const socket = new SockJS(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.send({ msg: "connect", version: "1", support: ["1"] });
    };
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("DDP: not JSON", event.data);
        return;
      }
      this.receive(message);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.lost();
    };
  }

  lost() {
    for (const call of this.calls.values()) call.reject(new Error("Connection lost"));
    this.calls.clear();
    for (const sub of this.subs.values()) sub.ready = false;
    this.status = "offline";
    this.changed();
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, LAST_RETRY_MS);
    setTimeout(() => this.start(), delay);
  }

  send(message) {
    if (this.socket && this.socket.readyState === SockJS.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  nextId() {
    this.counter += 1;
    return String(this.counter);
  }

  receive(message) {
    switch (message.msg) {
      case "connected":
        this.status = "connected";
        this.retryMs = FIRST_RETRY_MS;
        // A new session starts from nothing: fill a new store, show the old one meanwhile.
        this.store = new Map();
        this.emit("connected");
        for (const [id, sub] of this.subs) {
          this.send({ msg: "sub", id, name: sub.name, params: sub.params });
        }
        this.showWhenReady();
        break;
      case "failed":
        console.warn("DDP: the server speaks none of our versions", message);
        this.socket.close();
        break;
      case "ping":
        this.send(message.id === undefined ? { msg: "pong" } : { msg: "pong", id: message.id });
        break;
      case "added":
        this.documents(message.collection).set(message.id, { ...message.fields });
        break;
      case "changed": {
        const doc = this.documents(message.collection).get(message.id);
        if (doc) {
          Object.assign(doc, message.fields);
          for (const field of message.cleared || []) delete doc[field];
        }
        break;
      }
      case "removed":
        this.documents(message.collection).delete(message.id);
        break;
      case "ready":
        for (const id of message.subs) {
          const sub = this.subs.get(id);
          if (sub) sub.ready = true;
        }
        this.showWhenReady();
        break;
      case "nosub": {
        const sub = this.subs.get(message.id);
        if (sub && message.error) console.warn(`DDP: ${sub.name} refused`, message.error);
        this.subs.delete(message.id);
        break;
      }
      case "result":
        this.answered(message.id, "answer", message);
        break;
      case "updated":
        for (const id of message.methods) this.answered(id, "updated", true);
        break;
      case "error":
        console.warn("DDP: the server says", message);
        break;
      default:
        break;
    }
    this.changed();
  }

  documents(collection) {
    if (!this.store.has(collection)) this.store.set(collection, new Map());
    return this.store.get(collection);
  }

  showWhenReady() {
    if ([...this.subs.values()].every((sub) => sub.ready)) this.shown = this.store;
  }

  // The documents of a collection, as a Map from id to fields.
  find(collection) {
    return this.shown.get(collection) || new Map();
  }

  subscribe(name, ...params) {
    const id = this.nextId();
    this.subs.set(id, { name, params, ready: false });
    this.send({ msg: "sub", id, name, params });
    return id;
  }

  ready(subId) {
    const sub = this.subs.get(subId);
    return Boolean(sub && sub.ready && this.shown === this.store);
  }

  // Resolves with the method's result once both `result` and `updated` have arrived (the
  // method's own writes are in the collections by then); rejects with the server's error.
  call(method, ...params) {
    return new Promise((resolve, reject) => {
      const id = this.nextId();
      if (!this.send({ msg: "method", id, method, params })) {
        reject(new Error("Not connected"));
        return;
      }
      this.calls.set(id, { resolve, reject, answer: null, updated: false });
    });
  }

  answered(id, what, value) {
    const call = this.calls.get(id);
    if (!call) return;
    call[what] = value;
    if (!call.answer || !call.updated) return;
    this.calls.delete(id);
    if (call.answer.error) {
      const error = new Error(call.answer.error.reason || String(call.answer.error.error));
      error.error = call.answer.error.error;
      error.reason = call.answer.error.reason;
      call.reject(error);
    } else {
      call.resolve(call.answer.result);
    }
  }
}
