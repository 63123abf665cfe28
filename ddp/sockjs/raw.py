"""``GET <prefix>/websocket``: a plain WebSocket for the hosted app, no SockJS framing.

sockjs-node serves it for clients that speak WebSocket and nothing of SockJS
(``RawWebsocketSessionReceiver`` in ``src/trans-websocket.coffee``; PROTOCOL.md 10.1): no
``o``, no ``a[...]``, no heartbeats. Each text frame is one message for the app, each text
the app sends one text frame, and the app's close is the socket's close frame. A binary
frame is refused with 1003, as RFC 6455 says of an endpoint that takes text only.

The socket is a :class:`RawWebSocket`, a transport the app drives as it does a SockJS
session's (``app.connect(transport)``, ``app.disconnect`` at the end); it lives as long as
the socket, and nothing finds it by an id. The request's own green thread reads and hands
each message to the app. Eventlet only, like the framed websocket (it takes its socket
from eventlet's environ).
"""

import uuid

from ddp.sockjs import websocket_transport


def serve(server, environ, start_response):
    answer = websocket_transport.refused(server, environ, start_response)
    if answer is not None:
        return answer
    try:
        ws = server.websocket(
            environ, server.driver, max_message_size=server.options.max_message_size
        )
        receiver = server.app.connect(RawWebSocket(ws))

        def on_message(data):
            if isinstance(data, bytes):
                ws.close_with(1003, "Text frames only")
            else:
                receiver.receive(data)

        try:
            ws.run(on_message)
        finally:
            server.app.disconnect(receiver)
    finally:
        server.mark_handled()
    return []


class RawWebSocket(websocket_transport.PlainWebSocket):
    """A raw websocket as a transport, with an id for the app."""

    __slots__ = ("id",)

    def __init__(self, ws):
        super().__init__(ws)
        #: No client chose it: for the app and the logs to tell sessions apart.
        self.id = uuid.uuid4().hex
