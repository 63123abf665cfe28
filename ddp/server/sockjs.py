"""DDP over SockJS at ``/sockjs``, as Meteor's browser client speaks it by default.

:mod:`ddp.sockjs` knows nothing of DDP; this is the app it hosts: each SockJS session
carries one :class:`~ddp.runtime.connection.ConnectionRuntime`, exactly as a raw WebSocket
does; a SockJS websocket is a transport the runtime drives directly. Meteor's server
settings are used (T8): heartbeats every 45 s, sessions kept 60 s
without a receiving connection.
"""

from ddp import metrics
from ddp.addresses import client_address
from ddp.runtime.connection import ConnectionRuntime
from ddp.sockjs.server import SockJSOptions, SockJSServer
from ddp.websocket import WebSocket


class SockJSTransport:
    """What a ConnectionRuntime needs of an xhr SockJS session."""

    def __init__(self, session, closed):
        self.session = session
        self.environ = session.environ
        self.closed = closed

    def send_now(self, texts):
        self.send_texts(texts)  # the SockJS session queues them: nothing is left
        return b""

    def send_texts(self, texts):
        for text in texts:
            self.session.send(text)

    def close(self, code, reason):
        # The session answers with its close frame until SockJS forgets it; for the
        # server the client is gone now (shutdown need not wait for that).
        self.session.close(int(code), reason or "Normal closure")
        self.closed()

    def backlog(self):
        return self.session.backlog()

    def ping(self):
        """None here: SockJS finds dead peers itself (websocket pings answered within
        10 s; an xhr session nobody polls expires)."""
        return False

    def answered(self):
        return False

    def keepalive(self, now):
        return None  # the DDP heartbeat is enough

    def abort(self):
        # The session's own bounds (max_queued_*) cut slow clients; this is the same call.
        self.session.close(1008, "Too slow")


def _log(event, connection):
    session_id = connection.session.connection.session_id
    remote = connection.session.context.client_address
    metrics.log_event(event, session_id, transport="sockjs", remote=remote)


class DDPOverSockJS:
    """The SockJS app: a ConnectionRuntime per session, kept in the server's ``connections``."""

    def __init__(self, run_db, bus, connections, driver, holder=None):
        self.run_db = run_db
        self.holder = holder
        self.driver = driver
        self.bus = bus
        self.connections = connections
        self._by_session = {}

    def connect(self, transport):
        """A SockJS websocket: the runtime drives it directly, as a raw WebSocket."""
        connection = ConnectionRuntime(
            transport,
            self.run_db,
            self.bus,
            self.driver,
            environ=transport.environ,
            holder=self.holder,
        )
        self.connections.add(connection)
        connection.open()
        _log("connect", connection)
        return connection

    def disconnect(self, connection):
        self.connections.discard(connection)
        connection.finish()
        _log("disconnect", connection)

    def on_open(self, session):
        transport = SockJSTransport(session, lambda: self.connections.discard(connection))
        connection = ConnectionRuntime(
            transport,
            self.run_db,
            self.bus,
            self.driver,
            environ=session.environ,
            holder=self.holder,
        )
        self._by_session[session] = connection
        self.connections.add(connection)
        connection.open()
        _log("connect", connection)

    def on_message(self, session, text):
        connection = self._by_session.get(session)
        if connection is not None:
            connection.receive(text)

    def on_close(self, session):
        connection = self._by_session.pop(session, None)
        if connection is not None:
            self.connections.discard(connection)
            connection.finish()
            _log("disconnect", connection)


def sockjs_server(
    run_db,
    bus,
    connections,
    mark_handled,
    max_message_size,
    settings,
    driver,
    admit=None,
    holder=None,
):
    """The ``/sockjs`` WSGI app ``ddpserver`` mounts, with Meteor's SockJS settings;
    ``admit()`` says whether a new session may open (the server's connection limit),
    ``holder`` keeps DDP sessions for clients that come back."""
    options = SockJSOptions(
        heartbeat_delay=45.0,
        disconnect_delay=60.0,
        max_message_size=max_message_size,
        max_queued_bytes=settings.OUTBOX_MAX_BYTES,
        max_queued_messages=settings.OUTBOX_MAX_MESSAGES,
    )
    app = DDPOverSockJS(run_db, bus, connections, driver, holder)
    return SockJSServer(
        app,
        prefix="/sockjs",
        options=options,
        mark_handled=mark_handled,
        spawn=driver.spawn,
        client_address=client_address,
        admit=admit,
        websocket=WebSocket,
        slow_client=lambda: metrics.inc("ddp_slow_client_disconnects_total"),
    )
