"""A small DDP client over a real websocket (websocket-client), for the live tests."""

import itertools
import json
import time

import websocket


class DDPClient:
    def __init__(self, url, connect=True, timeout=10, **options):
        self.ws = websocket.create_connection(url, timeout=timeout, **options)
        self.timeout = timeout
        self.log = []
        self.ids = itertools.count(1)
        self.session = None
        #: The client's copy of every collection, as a Meteor client keeps it.
        self.collections = {}
        if connect:
            self.send({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]})
            reply = self.recv()
            assert reply["msg"] == "connected", reply
            self.session = reply["session"]

    def send(self, message):
        self.ws.send(json.dumps(message))

    def send_raw(self, text):
        self.ws.send(text)

    def recv(self, timeout=None):
        self.ws.settimeout(timeout or self.timeout)
        message = json.loads(self.ws.recv())
        self.log.append(message)
        self._apply(message)
        return message

    def _apply(self, message):
        kind = message.get("msg")
        if kind not in ("added", "changed", "removed"):
            return
        docs = self.collections.setdefault(message["collection"], {})
        if kind == "added":
            assert message["id"] not in docs, f"duplicate added: {message}"
            docs[message["id"]] = dict(message["fields"])
        elif kind == "changed":
            doc = docs[message["id"]]
            doc.update(message.get("fields", {}))
            for key in message.get("cleared", ()):
                del doc[key]
        else:
            del docs[message["id"]]

    def wait_for(self, predicate, timeout=20):
        """Read messages until ``predicate(self)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"gave up waiting; last messages: {self.log[-5:]}")
            try:
                self.recv(timeout=remaining)
            except websocket.WebSocketTimeoutException:
                pass

    def recv_until(self, predicate, timeout=None):
        """Every message up to and including the first for which ``predicate`` is true."""
        received = []
        while True:
            message = self.recv(timeout)
            received.append(message)
            if predicate(message):
                return received

    def sub(self, name, *params):
        """Subscribe; return the messages up to its ``ready`` or ``nosub``."""
        sub_id = str(next(self.ids))
        self.send({"msg": "sub", "id": sub_id, "name": name, "params": list(params)})
        return sub_id, self.recv_until(
            lambda m: (
                (m["msg"] == "ready" and sub_id in m["subs"])
                or (m["msg"] == "nosub" and m.get("id") == sub_id)
            )
        )

    def call(self, method, *params):
        """Call a method; return ``(result message, every message until result and updated)``."""
        call_id = str(next(self.ids))
        self.send({"msg": "method", "id": call_id, "method": method, "params": list(params)})
        seen = set()

        def done(m):
            if m["msg"] == "result" and m["id"] == call_id:
                seen.add("result")
            if m["msg"] == "updated" and call_id in m["methods"]:
                seen.add("updated")
            return seen == {"result", "updated"}

        messages = self.recv_until(done)
        result = next(m for m in messages if m["msg"] == "result" and m["id"] == call_id)
        return result, messages

    def close_code(self, timeout=None):
        """Read frames until the server's close frame; return its status code.

        Messages that come before it are parsed into :attr:`log` like any other.
        """
        self.ws.settimeout(timeout or self.timeout)
        while True:
            opcode, data = self.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(data[:2], "big")
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self.log.append(json.loads(data))

    def close(self):
        self.ws.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
