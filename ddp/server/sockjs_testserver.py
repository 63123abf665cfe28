"""``python -m ddp.server.sockjs_testserver [[addr:]port]``: the services sockjs-protocol tests.

The SockJS layer alone, no DDP (PROTOCOL.md section 11), on one port (default
127.0.0.1:8081; port 0 picks a free one):

* ``/echo``: an echo, with ``response_limit`` 4096;
* ``/close``: closes every session at once with 3000 "Go away!";
* ``/disabled_websocket_echo``: an echo without the websocket transport;
* ``/cookie_needed_echo``: an echo with ``JSESSIONID`` cookies.

It prints ``SockJS test server listening on http://HOST:PORT/`` once it listens, and on
SIGTERM or SIGINT closes every session with 1001 and stops. Django is not set up beyond
default settings: :class:`ddp.websocket.WebSocket` reads the ``DDP`` setting.
"""

from ddp.server import eventlet_driver

# Before anything else: eventlet must patch the standard library first, and it fails
# outright once Django's (unconfigured) settings object exists.
eventlet_driver.monkey_patch()

import logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

from django.conf import settings  # noqa: E402

from ddp.runtime import heartbeat, shutdown  # noqa: E402
from ddp.runtime.outgoing import Life, Outgoing  # noqa: E402
from ddp.sockjs import websocket_transport  # noqa: E402
from ddp.sockjs.redact import hint  # noqa: E402
from ddp.sockjs.server import SockJSOptions, SockJSServer  # noqa: E402
from ddp.websocket import WebSocket  # noqa: E402

logger = logging.getLogger("ddp.sockjs")
DRIVER = eventlet_driver.EventletDriver()

ADDRPORT = re.compile(r"(?:(?:\[(?P<ipv6>[0-9a-fA-F:]+)\]|(?P<host>[^:]+)):)?(?P<port>\d+)")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081


class Echo:
    def on_open(self, session):
        pass

    def on_message(self, session, text):
        session.send(text)

    def on_close(self, session):
        pass


class Close(Echo):
    def on_open(self, session):
        session.close(3000, "Go away!")


class AppConnection(Outgoing):
    """A hosted app's session, of any transport, driven as ``ddpserver`` drives a
    DDP client's: what the app sends waits in a bounded outbox (``max_queued_*``; an xhr
    session's messages waiting for a poll count too) that the runtime writes, and the
    heartbeat thread pings. The thread that brings each message (a websocket's reader, an
    ``xhr_send``) tells the app, so ``on_open``, each ``on_message`` and ``on_close``
    come one at a time and in order."""

    kind = "SockJS client"

    def __init__(self, transport, app, max_bytes, max_messages):
        super().__init__(transport, DRIVER, max_bytes, max_messages)
        self.app = app
        self.id = transport.id
        self.environ = transport.environ

    def name(self):
        return hint(self.id)

    def send(self, text):
        if self.life < Life.CLOSING:
            self._enqueue(text)

    def close(self, code=3000, reason="Go away!"):
        if self.life < Life.CLOSING:
            super().close(code, reason)

    def shut_down(self, code, reason):
        self.close(code, reason)

    def beat(self, now):
        self.keepalive(now)

    def receive(self, text):
        self.tell("on_message", text)

    def tell(self, name, *args):
        try:
            getattr(self.app, name)(self, *args)
        except Exception:
            logger.exception("SockJS app failed in %s for session %s", name, self.name())


class Hosted:
    """An app as the SockJS server sees it: each session, of any transport, becomes an
    :class:`AppConnection`, kept in ``live``."""

    def __init__(self, app, live, max_bytes, max_messages):
        self.app = app
        self.live = live
        self.max_bytes = max_bytes
        self.max_messages = max_messages

    def connect(self, transport):
        connection = AppConnection(transport, self.app, self.max_bytes, self.max_messages)
        self.live.add(connection)
        connection.tell("on_open")
        return connection

    def disconnect(self, connection):
        self.live.discard(connection)
        connection.tell("on_close")


def hosted_server(app, prefix, live, max_queued_bytes=None, max_queued_messages=None, **options):
    """A SockJSServer for ``app`` at ``prefix`` under eventlet, its sessions in ``live``,
    cut off beyond ``max_queued_bytes`` of text or ``max_queued_messages`` waiting (None,
    as sockjs-node, for no limit)."""
    options = SockJSOptions(**options)
    hosted = Hosted(app, live, max_queued_bytes or sys.maxsize, max_queued_messages or sys.maxsize)
    return SockJSServer(
        hosted,
        DRIVER,
        prefix,
        options,
        mark_handled=eventlet_driver.mark_handled,
        websocket=WebSocket,
    )


class Services:
    """Several SockJS servers behind one WSGI application, chosen by their prefix, and
    the websockets they host (``live``), whose heartbeats one thread drives.

    It offers the eventlet driver what it needs of an application for shutdown: their
    ``connections`` together, and ``shut_down``.
    """

    def __init__(self, servers, live):
        self.servers = servers
        self.live = live
        delays = [server.options.heartbeat_delay for server in servers]
        every = min(*delays, websocket_transport.PONG_TIMEOUT) / 4
        DRIVER.spawn(heartbeat.keep, live, DRIVER, every)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        for server in self.servers:
            if path == server.prefix or path.startswith(server.prefix + "/"):
                return server(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=UTF-8")])
        return [b"404 Error: Page not found\n"]

    @property
    def connections(self):
        return set(self.live).union(*(server.connections for server in self.servers))

    def shut_down(self, code, reason, pause):
        shutdown.close_all(self.connections, code, reason, pause, DRIVER)


def services():
    live = set()
    return Services(
        [
            hosted_server(Echo(), "/echo", live, response_limit=4096),
            hosted_server(Close(), "/close", live),
            hosted_server(Echo(), "/disabled_websocket_echo", live, websocket=False),
            hosted_server(Echo(), "/cookie_needed_echo", live, cookie_needed=True),
        ],
        live,
    )


def parse_addrport(addrport):
    match = ADDRPORT.fullmatch(addrport)
    if match is None or int(match["port"]) > 65535:
        sys.exit(f"{addrport!r} is not a port or an address:port pair")
    return match["ipv6"] or match["host"] or DEFAULT_HOST, int(match["port"])


def main(argv):
    if len(argv) > 1:
        sys.exit("usage: python -m ddp.server.sockjs_testserver [[addr:]port]")
    addr, port = parse_addrport(argv[0]) if argv else (DEFAULT_HOST, DEFAULT_PORT)
    logging.basicConfig(level=logging.WARNING)
    if not settings.configured:
        settings.configure()
    try:
        sock = eventlet_driver.listen(addr, port)
    except OSError as exc:
        sys.exit(f"Cannot listen on {addr}:{port}: {exc.strerror}")
    host = f"[{addr}]" if ":" in addr else addr
    url = f"http://{host}:{sock.getsockname()[1]}/"

    def started():
        print(f"SockJS test server listening on {url}", flush=True)

    eventlet_driver.serve(sock, services(), max_connections=10_000, on_started=started)


if __name__ == "__main__":
    main(sys.argv[1:])
