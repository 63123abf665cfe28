"""A raw-websocket DDP client that resumes its session as Meteor 3.4's does, for the tests.

It counts what it receives from its session, pings and pongs left out (``receivedCount``),
and after :meth:`ResumingClient.drop` reconnects naming the session and that count.
"""

from ddp.testing import WebSocketDDPClient

CONNECT = {"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}


class ResumingClient(WebSocketDDPClient):
    def __init__(self, url, **options):
        self.received = 0
        super().__init__(url, connect=False, **options)
        self.send(CONNECT)
        self._connected(self.recv())

    def _received(self, text):
        super()._received(text)
        if self.messages[-1].get("msg") not in ("ping", "pong"):
            self.received += 1

    def _connected(self, reply):
        assert reply["msg"] == "connected", reply
        resumed = reply["session"] == self.session_id
        if not resumed:
            # A new session: its count starts with this ``connected``, and what the old
            # one sent is gone with it (Meteor's client resets its store).
            self.received = 1
            self._collections.clear()
        self.session_id = reply["session"]
        return resumed

    def leave(self):
        """Leave as Meteor 3.4's client does: ``disconnect``, then close."""
        self.send({"msg": "disconnect"})
        self.close()

    def drop(self):
        """Cut the TCP connection, with no WebSocket close and no ``disconnect``."""
        self.ws.shutdown()

    def reconnect(self, url=None, received=None):
        """Connect again, asking for the session back; return whether it was."""
        self.reopen(url)
        count = self.received if received is None else received
        self.send({**CONNECT, "session": self.session_id, "receivedCount": count})
        return self._connected(self.recv())


def messages_until_result(client, method_id):
    """Every message up to the ``result`` of ``method_id``."""
    return client.recv_until(lambda m: m.get("msg") == "result" and m["id"] == method_id)


def call(client, method, *params):
    """Send a method call with a fresh id; return the id."""
    method_id = f"m{next(client.ids)}"
    client.send({"msg": "method", "id": method_id, "method": method, "params": list(params)})
    return method_id
