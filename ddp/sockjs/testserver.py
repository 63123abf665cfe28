"""``python -m ddp.sockjs.testserver [[addr:]port]``: the services sockjs-protocol tests.

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

from ddp.sockjs.server import SockJSOptions, SockJSServer  # noqa: E402

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


class Services:
    """Several SockJS servers behind one WSGI application, chosen by their prefix.

    It offers the eventlet driver what it needs of an application for shutdown: their
    ``connections`` together, and ``shut_down``.
    """

    def __init__(self, servers):
        self.servers = servers

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        for server in self.servers:
            if path == server.prefix or path.startswith(server.prefix + "/"):
                return server(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=UTF-8")])
        return [b"404 Error: Page not found\n"]

    @property
    def connections(self):
        return set().union(*(server.connections for server in self.servers))

    def shut_down(self, code, reason, pause):
        for server in self.servers:
            server.shut_down(code, reason, pause)


def services():
    def server(app, prefix, **options):
        return SockJSServer(
            app,
            prefix,
            SockJSOptions(**options),
            mark_handled=eventlet_driver.mark_handled,
            spawn=eventlet_driver.spawn,
        )

    return Services(
        [
            server(Echo(), "/echo", response_limit=4096),
            server(Close(), "/close"),
            server(Echo(), "/disabled_websocket_echo", websocket=False),
            server(Echo(), "/cookie_needed_echo", cookie_needed=True),
        ]
    )


def parse_addrport(addrport):
    match = ADDRPORT.fullmatch(addrport)
    if match is None or int(match["port"]) > 65535:
        sys.exit(f"{addrport!r} is not a port or an address:port pair")
    return match["ipv6"] or match["host"] or DEFAULT_HOST, int(match["port"])


def main(argv):
    if len(argv) > 1:
        sys.exit("usage: python -m ddp.sockjs.testserver [[addr:]port]")
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
