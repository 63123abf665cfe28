"""The WSGI application ``ddpserver`` runs: DDP at ``/websocket`` and ``/sockjs``, Django
everywhere else.

One port serves all, so a Meteor front end and the project's own pages, admin and API
need one address. ``/websocket`` never carries SockJS framing (PROTOCOL.md T2);
``/sockjs`` is SockJS, which Meteor's browser client uses by default. SockJS's own raw
websocket, ``/sockjs/websocket``, is the same as ``/websocket``: Meteor's server routes
its ``/websocket`` there, so clients may use either.
"""

import logging

from django.core.wsgi import get_wsgi_application

from ddp.conf import ddp_settings
from ddp.origins import origin_allowed
from ddp.runtime import heartbeat, shutdown
from ddp.server import observability, raw_ddp
from ddp.server.resumption import Holder
from ddp.server.sockjs import sockjs_server
from ddp.sockjs import websocket_transport
from ddp.websocket import WebSocket, bad_request

logger = logging.getLogger("ddp.server")

WEBSOCKET_PATHS = ("/websocket", "/websocket/", "/sockjs/websocket", "/sockjs/websocket/")

#: The answer to a WebSocket handshake while the server holds as many clients as it may:
#: clients retry later, or elsewhere.
FULL = "503 Service Unavailable", [("Retry-After", "5")], b"Too many connections"


class DDPApplication:
    """Route ``/websocket`` and ``/sockjs`` to DDP, ``/healthz`` and ``/metrics`` to
    :mod:`~ddp.server.observability`, and every other path to Django's WSGI handler.

    ``mark_handled`` tells the WSGI server that a request took over its socket, and
    ``driver`` (a :class:`ddp.runtime.driver.Driver`) runs the clients' green threads
    (``ddpserver`` passes the eventlet driver's of both);
    ``connections`` holds every live client, for the heartbeat thread and so that
    shutdown can close them (:meth:`shut_down`); at ``max_connections`` of them (by
    default ``DDP["MAX_CONNECTIONS"]``) a new one is refused (:meth:`admits_another`).
    ``holder`` keeps the sessions of clients that dropped, for them to resume.
    ``worker`` is this process's index among ``ddpserver --workers``' (None for a single
    server): ``/metrics`` labels its series with it.
    """

    def __init__(
        self,
        run_db,
        mark_handled,
        driver,
        max_message_size,
        bus=None,
        django_app=None,
        max_connections=None,
        worker=None,
    ):
        self.run_db = run_db
        self.worker = worker
        self.max_connections = max_connections or ddp_settings.MAX_CONNECTIONS
        self.driver = driver
        self.bus = bus
        self.max_message_size = max_message_size
        self.mark_handled = mark_handled
        self.django_app = django_app or get_wsgi_application()
        self.connections = set()
        self.holder = Holder(driver)
        self.sockjs = sockjs_server(
            run_db,
            bus,
            self.connections,
            mark_handled,
            max_message_size,
            driver,
            self.admits_another,
            self.holder,
        )
        # SockJS websockets' pings ride on the same beat: a fraction of their timeout too.
        every = min(heartbeat.tick(), websocket_transport.PONG_TIMEOUT / 4)
        driver.spawn(heartbeat.keep, self.connections, driver, every)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        endpoint = observability.endpoint(path, self.worker)
        if endpoint is not None:
            return endpoint(self, environ, start_response)
        if path not in WEBSOCKET_PATHS and (path == "/sockjs" or path.startswith("/sockjs/")):
            if not origin_allowed(environ):
                start_response("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"Origin not allowed"]
            return self.sockjs.handle(environ, start_response)
        if path not in WEBSOCKET_PATHS:
            return self.django_app(environ, start_response)
        refusal = bad_request(environ)
        if refusal is None and not origin_allowed(environ):
            refusal = "403 Forbidden", [], b"Origin not allowed"
        if refusal is None and not self.admits_another():
            refusal = FULL
        if refusal is not None:
            status, headers, body = refusal
            start_response(status, [("Content-Type", "text/plain"), *headers])
            return [body]
        ws = WebSocket(environ, self.driver, max_message_size=self.max_message_size)
        try:
            raw_ddp.serve(ws, self.run_db, self.bus, self.connections, self.driver, self.holder)
        finally:
            self.mark_handled()
        return []

    def admits_another(self):
        """Whether one more client may connect. Raw WebSockets and SockJS sessions of
        every transport share the limit: eventlet's own (``max_size``) counts sockets, and
        an xhr session holds none between its requests."""
        return len(self.connections) < self.max_connections

    def shut_down(self, code, reason, pause):
        """Close the clients of every transport (:mod:`ddp.runtime.shutdown`)."""
        shutdown.close_all(self.connections, code, reason, pause, self.driver)
