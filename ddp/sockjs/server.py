"""``SockJSServer``: a SockJS 0.3 server as a WSGI application, hosting any app.

The host mounts it at a prefix and passes it every request whose path is under that
prefix, unchanged. The app is any object with ``connect(transport)``, which returns what
receives the client's messages (``receive(text)``), and ``disconnect(that)``: each session,
xhr (:mod:`ddp.sockjs.session`), websocket (:mod:`ddp.sockjs.websocket_transport`) or raw websocket
(:mod:`ddp.sockjs.raw`), is a transport the app drives (:mod:`ddp.runtime.transport`).

URLs under the prefix, as sockjs-node 0.3.24 dispatches them (``src/sockjs.coffee``):

* ``GET /``: the greeting; ``GET /info`` and ``OPTIONS /info``: capabilities (T9);
* ``/<server>/<session>/xhr``, ``/xhr_send``, ``/xhr_streaming``: ``POST`` and ``OPTIONS``;
* ``/<server>/<session>/websocket``: ``GET`` (404 when websockets are off);
* ``/websocket``: ``GET``, a plain WebSocket without SockJS framing (:mod:`ddp.sockjs.raw`;
  404 when websockets are off).

A known path asked with another method gets 405 and ``Allow``; anything else 404.
``<server>`` and ``<session>`` are anything without a slash or a dot; ``<server>`` is for
load balancers and ignored.
"""

import dataclasses
import functools
import json
import re
import secrets

from ddp.sockjs import raw, responses, websocket_transport, xhr
from ddp.sockjs.framing import close_frame
from ddp.sockjs.session import SockJSSession, Sweeper

SESSION_URL = re.compile(r"/([^/.]+)/(?P<session>[^/.]+)/(?P<transport>[a-z_]+)/?")

#: The answer to a request that would open a session the host has no room for.
FULL = close_frame(1013, "Try again later")

XHR_TRANSPORTS = {"xhr": xhr.poll, "xhr_send": xhr.send, "xhr_streaming": xhr.stream}


@dataclasses.dataclass(frozen=True)
class SockJSOptions:
    """sockjs-node's options, with its defaults; times in seconds (Meteor: 45 and 60, T8)."""

    #: Offer the websocket transport (``/info`` tells clients whether to try it).
    websocket: bool = True
    #: Set a ``JSESSIONID`` cookie for load balancers with sticky sessions.
    cookie_needed: bool = False
    #: Silence after which a receiving request gets ``h`` (a websocket: a ping).
    heartbeat_delay: float = 25.0
    #: Time a session waits for its next receiving request before it expires.
    disconnect_delay: float = 5.0
    #: Bytes after which a streaming answer ends, so browsers free what it accumulated.
    response_limit: int = 128 * 1024
    #: Answer cross-origin requests (CORS headers and ``origins`` in ``/info``).
    cors: bool = True
    #: Largest message a client may send, in bytes; None for no limit. A bigger websocket
    #: frame closes the socket with 1009, a bigger ``xhr_send`` body gets 413.
    max_message_size: int | None = None


def remote_addr(environ):
    """The address of the peer that sent the request ``environ``."""
    return environ.get("REMOTE_ADDR", "")


class SockJSServer:
    """A WSGI application serving SockJS under ``prefix`` for ``app``.

    ``app.connect(session)`` is called when a session opens, and ``app.disconnect`` with
    what it returned once the session is closed or gone (see the module's docstring); a
    session offers what a transport does, ``id`` and ``environ``. What waits for a client
    is bounded by the app, which counts a session's ``backlog()`` and cuts off
    (``abort()``) a client that stopped reading or polling. ``options`` is a
    :class:`SockJSOptions`.

    ``driver`` runs it (:class:`ddp.runtime.driver.Driver`: threads, clock, sleeps and
    waits; the eventlet driver's under ``ddpserver``, a fake clock's in tests), and
    ``mark_handled`` tells the WSGI server that a request took over its socket (a
    websocket; :func:`ddp.server.eventlet_driver.mark_handled`). No lock guards the
    sessions: the driver's one OS thread runs every request, and nothing between reading
    the registry and changing it yields. ``websocket`` is the WebSocket class
    (:class:`ddp.websocket.WebSocket`, made with ``driver=``; without one, no websocket
    is served); a websocket, framed or raw, is no session of this layer but a transport the
    app drives in the same way, for as long as its socket lasts. ``connections`` holds
    the live xhr sessions; each has ``shut_down(code, reason)``, which the host's one
    shutdown path calls (:mod:`ddp.runtime.shutdown`).

    An xhr session's id is all its requests carry, a bearer secret: a session answers
    only the client address that opened it, and to any other as if it did not exist
    (404). ``client_address(environ)`` says whose a request is (by default
    ``REMOTE_ADDR``; behind a proxy, the host passes one that reads its forwarded address).

    ``admit()``, when given, says whether a new session may open (the host's connection
    limit). When it may not, an xhr request that would open one is answered
    ``c[1013,"Try again later"]``: sockjs-client closes at once with that code, as on
    any close frame (an HTTP error would have it try each of its other transports), and
    Meteor's client reconnects later. A websocket is refused 503 before its handshake.
    """

    def __init__(
        self,
        app,
        driver,
        prefix="/sockjs",
        options=None,
        mark_handled=None,
        client_address=None,
        admit=None,
        websocket=None,
    ):
        self.app = app
        self.driver = driver
        self.websocket = websocket
        self.admit = admit or (lambda: True)
        self.client_address = client_address or remote_addr
        self.prefix = prefix.rstrip("/")
        self.options = options or SockJSOptions()
        if websocket is None:
            self.options = dataclasses.replace(self.options, websocket=False)
        self.mark_handled = mark_handled or (lambda: None)
        self.connections = set()
        self._sessions = {}
        self._sweeper = Sweeper(driver)

    def __call__(self, environ, start_response):
        return self.handle(environ, start_response)

    def handle(self, environ, start_response):
        """The WSGI application, for a host to call as a method rather than through the
        instance: the reading thread of an idle websocket, whose stack is kept while it
        waits, then costs 0.8 KB less (``bench/connections.py --transport sockjs``).

        A websocket is served by a direct call, not through :meth:`_route`'s handlers:
        a ``functools.partial`` is called from C, and that C frame, the partial, its
        arguments and the route's dict stayed in every idle websocket's stack (1.5 KB)."""
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] == "GET" and self._is_websocket(path):
            return websocket_transport.serve(self, environ, start_response)
        rest = path[len(self.prefix) :]
        methods = self._route(rest) if path.startswith(self.prefix) else None
        if methods is None:
            return responses.not_found(start_response)
        handler = methods.get(environ["REQUEST_METHOD"])
        if handler is None:
            return responses.method_not_allowed(start_response, methods)
        return handler(environ, start_response)

    def _is_websocket(self, path):
        """Whether ``path`` is a SockJS websocket's, and websockets are served."""
        if not path.startswith(self.prefix):
            return False
        match = SESSION_URL.fullmatch(path, len(self.prefix))
        return match is not None and match["transport"] == "websocket" and self.options.websocket

    def _route(self, rest):
        """The methods ``rest`` of a path answers, each with its handler; None for 404."""
        if rest in ("", "/"):
            return {"GET": self._welcome}
        if rest in ("/info", "/info/"):
            return {"OPTIONS": self._info_options, "GET": self._info}
        if rest in ("/websocket", "/websocket/"):
            if not self.options.websocket:
                return {"GET": self._disabled}
            return {"GET": functools.partial(raw.serve, self)}
        match = SESSION_URL.fullmatch(rest)
        if match is None:
            return None
        transport, session_id = match["transport"], match["session"]
        if transport in XHR_TRANSPORTS:
            handler = functools.partial(XHR_TRANSPORTS[transport], self, session_id=session_id)
            return {"POST": handler, "OPTIONS": self._xhr_options}
        if transport == "websocket":
            # A GET is served before routing (handle) unless websockets are off.
            return {"GET": self._disabled}
        return None

    # Answers.

    def _welcome(self, environ, start_response):
        return responses.respond(
            start_response, "200 OK", [responses.TEXT], b"Welcome to SockJS!\n"
        )

    def _info(self, environ, start_response):
        info = {"websocket": self.options.websocket}
        if self.options.cors:
            info["origins"] = ["*:*"]
        info["cookie_needed"] = self.options.cookie_needed
        # Browsers lack a good source of entropy: the client seeds from this.
        info["entropy"] = secrets.randbits(32)
        headers = [responses.JSON, responses.NO_CACHE, *self._cors(environ)]
        return responses.respond(
            start_response, "200 OK", headers, json.dumps(info, separators=(",", ":")).encode()
        )

    def _info_options(self, environ, start_response):
        return responses.preflight(
            start_response, ["OPTIONS", "GET"], self._preflight_headers(environ)
        )

    def _xhr_options(self, environ, start_response):
        return responses.preflight(
            start_response, ["OPTIONS", "POST"], self._preflight_headers(environ)
        )

    def _disabled(self, environ, start_response):
        return responses.not_found(start_response, responses.cache_for_a_year())

    def _cors(self, environ):
        return responses.cors(environ) if self.options.cors else []

    def _cookie(self, environ):
        return [responses.jsessionid(environ)] if self.options.cookie_needed else []

    def _preflight_headers(self, environ):
        return [*self._cookie(environ), *self._cors(environ)]

    def session_headers(self, environ):
        """Headers of every answer about a session (``xhr``, ``xhr_send``...)."""
        return [*self._cookie(environ), responses.NO_CACHE, *self._cors(environ)]

    # Sessions, for the transports.

    def attach(self, session_id, environ, receiver):
        """Attach a receiving request to its session, opening one if there is none.

        Returns ``(session, frames, attached)`` as :meth:`SockJSSession.attach` does; session is
        None when none could open (``admit()`` refused).
        """
        while True:
            session = self._sessions.get(session_id)
            if session is None:
                if not self.admit():
                    return None, [FULL], False
                session = self._sessions[session_id] = self._new_session(session_id, environ)
            attached = session.attach(receiver)
            if attached is not None:
                return (session, *attached)

    def find(self, session_id, environ):
        """The session ``session_id`` if the request ``environ`` may use it, else None."""
        session = self._sessions.get(session_id)
        if session is None or session.address != self.client_address(environ):
            return None
        return session

    def foreign(self, session_id, environ):
        """Whether ``session_id`` is a live session opened from another address than the
        request ``environ``'s: that request must be answered as if it did not exist."""
        session = self._sessions.get(session_id)
        return session is not None and session.address != self.client_address(environ)

    def _new_session(self, session_id, environ):
        session = SockJSSession(
            session_id,
            environ,
            self.app,
            self.options,
            self._forget,
            self.driver,
            self._sweeper,
            address=self.client_address(environ),
        )
        self.connections.add(session)
        return session

    def _forget(self, session):
        """Called by an expiring session."""
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        self.connections.discard(session)
