"""``GET <prefix>/websocket``: a plain WebSocket for the hosted app, no SockJS framing.

sockjs-node serves it for clients that speak WebSocket and nothing of SockJS
(``RawWebsocketSessionReceiver`` in ``src/trans-websocket.coffee``; PROTOCOL.md 10.1): no
``o``, no ``a[...]``, no heartbeats. Each text frame is one message for the app, each
``send`` one text frame, and the app's ``close(code, reason)`` is the socket's close frame.
A binary frame is refused with 1003, as RFC 6455 says of an endpoint that takes text only.

The session lives as long as its socket, and nothing finds it by an id. The request's own
green thread reads and calls the app, so ``on_open``, each ``on_message`` and ``on_close``
come one at a time and in order, as from a SockJS session. ``send`` writes before it
returns: a client that stops reading holds up whoever sends to it, not the server's memory.
Eventlet only, like the framed websocket (it takes its socket from eventlet's environ).
"""

import logging
import uuid

from ddp.sockjs import websocket
from ddp.sockjs.redact import hint

logger = logging.getLogger("ddp.sockjs")


def serve(server, environ, start_response):
    answer = websocket.refused(server, environ, start_response)
    if answer is not None:
        return answer
    try:
        ws = server.websocket(environ, max_message_size=server.options.max_message_size)
        server.raw_session(ws).run()
    finally:
        server.mark_handled()
    return []


class RawSession:
    """What the app sees of a raw websocket: ``send``, ``close``, ``id`` and ``environ``,
    as of a :class:`~ddp.sockjs.session.SockJSSession`."""

    def __init__(self, ws, app, forget):
        #: No client chose it: for the app and the logs to tell sessions apart.
        self.id = uuid.uuid4().hex
        self.environ = ws.environ
        self._ws = ws
        self._app = app
        self._forget = forget

    def __repr__(self):
        return f"<RawSession {hint(self.id)}>"

    def send(self, text):
        try:
            self._ws.send_texts([text])
        except OSError:
            pass  # the client went away: the reader sees it and ends the session

    def close(self, code=1000, reason="Normal closure"):
        self._ws.close_with(code, reason)

    def shut_down(self, code, reason):
        """Close at once (server shutdown): nothing waits to be taken here."""
        self.close(code, reason)

    def run(self):
        """Serve the socket until it closes, then forget the session."""
        try:
            self._tell("on_open")
            self._ws.run(self._received)
        finally:
            self._forget(self)
            self._tell("on_close")

    def _received(self, data):
        if isinstance(data, bytes):
            self.close(1003, "Text frames only")
        else:
            self._tell("on_message", data)

    def _tell(self, name, *args):
        try:
            getattr(self._app, name)(self, *args)
        except Exception:
            logger.exception("SockJS app failed in %s for session %s", name, hint(self.id))
