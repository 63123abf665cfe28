"""DDP over SockJS at ``/sockjs``, as Meteor's browser client speaks it by default.

:mod:`ddp.sockjs` knows nothing of DDP; this is the app it hosts: each SockJS session
carries one :class:`~ddp.runtime.connection.ConnectionRuntime`, exactly as a raw WebSocket
does: a SockJS session, websocket or xhr, is a transport the runtime drives. Meteor's server
settings are used (T8): heartbeats every 45 s, sessions kept 60 s
without a receiving connection.
"""

from ddp import metrics
from ddp.addresses import client_address
from ddp.runtime.connection import ConnectionRuntime
from ddp.sockjs.server import SockJSOptions, SockJSServer
from ddp.websocket import WebSocket


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

    def connect(self, transport):
        """A SockJS session of any transport: the runtime drives it, as a raw WebSocket;
        what it returns receives the client's messages."""
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
        """The session is closed or gone: it leaves ``connections`` now (shutdown waits
        for nobody's ``disconnect_delay``), and its session ends or is held."""
        self.connections.discard(connection)
        connection.finish()
        _log("disconnect", connection)


def sockjs_server(
    run_db,
    bus,
    connections,
    mark_handled,
    max_message_size,
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
    )
    app = DDPOverSockJS(run_db, bus, connections, driver, holder)
    return SockJSServer(
        app,
        driver,
        prefix="/sockjs",
        options=options,
        mark_handled=mark_handled,
        client_address=client_address,
        admit=admit,
        websocket=WebSocket,
    )
