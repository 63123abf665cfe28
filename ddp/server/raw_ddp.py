"""Raw DDP over WebSocket (``/websocket``): one DDP message per text frame, no framing.

The request's own green thread reads frames and hands them to a
:class:`~ddp.runtime.connection.ConnectionRuntime`; never SockJS framing here (T2).
"""

from ddp import metrics
from ddp.runtime.connection import ConnectionRuntime


class WebSocketTransport:
    """What a ConnectionRuntime needs of a :class:`ddp.websocket.WebSocket`."""

    def __init__(self, ws):
        self.ws = ws
        self.environ = ws.environ
        self._pinged = False

    def ping(self):
        """A WebSocket ping: how a ``pre1`` peer, which has no DDP ping, is found dead."""
        self._pinged = self.ws.ping_nowait()
        return self._pinged

    def answered(self):
        """Whether a pong came since the last :meth:`ping`."""
        return self._pinged and self.ws.pong_received

    def keepalive(self, now):
        return None  # the DDP heartbeat is enough

    def send_now(self, texts):
        return self.ws.send_now(texts)

    def send_bytes(self, data):
        self.ws.sock.send(data)

    def send_texts(self, texts):
        self.ws.send_texts(texts)

    def close(self, code, reason):
        self.ws.close_with(code, reason)

    def abort(self):
        self.ws.abort()

    def backlog(self):
        """Nothing waits here: the connection's writer writes through, blocking."""
        return 0, 0


def serve(ws, run_db, bus, connections, driver, holder=None):
    """Serve one client until either side closes; ``connections`` tracks live clients,
    ``holder`` keeps sessions for clients that come back (:mod:`ddp.server.resumption`)."""
    connection = ConnectionRuntime(
        WebSocketTransport(ws), run_db, bus, driver, environ=ws.environ, holder=holder
    )
    connections.add(connection)
    connection.open()
    session_id = connection.session.connection.session_id
    remote = connection.session.context.client_address
    metrics.log_event("connect", session_id, transport="websocket", remote=remote)

    def on_message(data):
        if isinstance(data, bytes):
            connection.receive_binary()
        else:
            connection.receive(data)

    try:
        ws.run(on_message)
    finally:
        connections.discard(connection)
        connection.finish()
        session_id = connection.session.connection.session_id  # resumed: not the first
        metrics.log_event("disconnect", session_id, transport="websocket", remote=remote)
