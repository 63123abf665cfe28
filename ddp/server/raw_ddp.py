"""Raw DDP over WebSocket (``/websocket``): one DDP message per text frame, no framing.

The request's own green thread reads frames and hands them to a
:class:`~ddp.runtime.connection.ConnectionRuntime`; never SockJS framing here (T2).
"""

from ddp import metrics
from ddp.runtime.connection import ConnectionRuntime
from ddp.sockjs.websocket_transport import PlainWebSocket


class WebSocketTransport(PlainWebSocket):
    """What a ConnectionRuntime needs of a :class:`ddp.websocket.WebSocket`: the plain
    transport, with the WebSocket ping a ``pre1`` peer needs."""

    __slots__ = ("_pinged",)

    def __init__(self, ws):
        super().__init__(ws)
        self._pinged = False

    def ping(self):
        """A WebSocket ping: how a ``pre1`` peer, which has no DDP ping, is found dead."""
        self._pinged = self.ws.ping_nowait()
        return self._pinged

    def answered(self):
        """Whether a pong came since the last :meth:`ping`."""
        return self._pinged and self.ws.pong_received


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
