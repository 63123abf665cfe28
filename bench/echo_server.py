"""The transport baseline of ``bench/roundtrip.py``: a WebSocket server that echoes each frame.

``python bench/echo_server.py [ADDR:]PORT`` (port 0 picks a free one) accepts WebSocket
clients on any path on the same stack as ``ddpserver``: eventlet patched first,
``eventlet.wsgi``, simple-websocket for the handshake and framing, TCP_NODELAY. Each text
frame a client sends comes straight back as one text frame.

No JSON decoding, session, database pool or database is involved, so a round trip here is
what the transport, the loopback and the client cost on their own: ``ddpserver``'s round
trip against this one tells how much DDP adds on top. Stop it with SIGTERM or Ctrl-C.
"""

import warnings

# Known and accepted, as in ddp/server/eventlet_driver.py: not worth a line in the bench output.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

# Before anything imports socket or threading, as ddpserver does.
eventlet.monkey_patch()

import socket  # noqa: E402
import sys  # noqa: E402

import eventlet.wsgi  # noqa: E402
import simple_websocket  # noqa: E402
from simple_websocket.errors import ConnectionClosed  # noqa: E402


def application(environ, start_response):
    """Echo every text frame of one client until it leaves."""
    ws = simple_websocket.Server(environ)
    # Without it a reply may wait for the client's delayed ACK (Nagle), as ddpserver knows.
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            data = ws.receive()
            if isinstance(data, str):
                ws.send(data)
    except ConnectionClosed:
        pass
    finally:
        # The socket was taken over: eventlet.wsgi must not write an HTTP response on it.
        eventlet.wsgi.WSGI_LOCAL.already_handled = True
    return []


def main():
    addr, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0").rpartition(":")
    sock = eventlet.listen((addr or "127.0.0.1", int(port)))
    host, bound = sock.getsockname()[:2]
    # The line ddp.testing.ServerProcess waits for to learn the port.
    print(f"echo server listening on http://{host}:{bound}/", flush=True)
    eventlet.wsgi.server(sock, application, log_output=False)


if __name__ == "__main__":
    main()
