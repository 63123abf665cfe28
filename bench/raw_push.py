"""The raw transport baseline of ``bench/fanout.py``: one pre-built frame, ``sendall`` to all.

``python bench/raw_push.py [ADDR:]PORT`` (port 0 picks a free one) accepts WebSocket
clients on ``/websocket`` on the same stack as ``ddpserver``: eventlet patched first,
``eventlet.wsgi``, simple-websocket for the handshake, TCP_NODELAY. ``POST
/push?frames=K&clients=N`` waits for N clients, then sends the request's body as one text
frame, framed once, K times to every client with ``sendall``, and answers with what it did.

No JSON encoding, session, merge box or database is involved: what ``ddpserver`` delivers
against what this pushes to the same clients on the same machine tells how much of the
transport's capacity the change path leaves unused. Stop it with SIGTERM or Ctrl-C.
"""

import warnings

# Known and accepted, as in ddp/server/eventlet_driver.py: not worth a line in the bench output.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

# Before anything imports socket or threading, as ddpserver does.
eventlet.monkey_patch()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import eventlet.wsgi  # noqa: E402
import simple_websocket  # noqa: E402
from simple_websocket.errors import ConnectionClosed  # noqa: E402
from wsproto.frame_protocol import FrameProtocol  # noqa: E402

#: Seconds /push waits for the clients it was told to expect: the last ones may still be
#: between their handshake's reply and being added to :data:`clients`.
CLIENT_WAIT = 10

#: The raw sockets of the connected WebSocket clients.
clients = set()


def application(environ, start_response):
    if environ["PATH_INFO"] == "/websocket":
        return serve_websocket(environ)
    if environ["PATH_INFO"] == "/push" and environ["REQUEST_METHOD"] == "POST":
        return push(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"Not found"]


def serve_websocket(environ):
    """Hold one client until it leaves; only :func:`push` writes to it."""
    ws = simple_websocket.Server(environ)
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    clients.add(ws.sock)
    try:
        while True:
            ws.receive()  # raises ConnectionClosed once the client has gone
    except ConnectionClosed:
        pass
    finally:
        clients.discard(ws.sock)
        # The socket was taken over: eventlet.wsgi must not write an HTTP response on it.
        eventlet.wsgi.WSGI_LOCAL.already_handled = True
    return []


def push(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    frames = int(query["frames"][0])
    expected = int(query["clients"][0])
    text = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
    frame = bytes(FrameProtocol(client=False, extensions=[]).send_data(text))
    deadline = time.monotonic() + CLIENT_WAIT
    while len(clients) < expected and time.monotonic() < deadline:
        eventlet.sleep(0.01)
    targets = list(clients)
    if len(targets) < expected:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [f"{len(targets)} clients connected, {expected} expected".encode()]
    started = time.perf_counter()
    # Frame by frame across all clients, as a change fans out, rather than client by client.
    for _ in range(frames):
        for sock in targets:
            sock.sendall(frame)
    elapsed = time.perf_counter() - started
    body = json.dumps({"clients": len(targets), "frames": frames, "seconds": elapsed})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


def main():
    addr, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0").rpartition(":")
    sock = eventlet.listen((addr or "127.0.0.1", int(port)), backlog=2048)
    host, bound = sock.getsockname()[:2]
    print(f"raw push server listening on http://{host}:{bound}/", flush=True)
    # eventlet.wsgi accepts 1,024 connections unless told otherwise.
    eventlet.wsgi.server(sock, application, max_size=100_000, log_output=False)


if __name__ == "__main__":
    main()
