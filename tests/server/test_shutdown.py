"""SIGTERM: stop accepting, close clients one by one, let methods in flight answer."""

import http.client
import json
import signal
import threading

import pytest

from bookstore.models import Author, Book
from ddp.testing import WebSocketDDPClient
from tests.live import ServerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_sigterm_lets_a_method_in_flight_answer_then_closes_everyone():
    with ServerProcess(ddp={"SHUTDOWN_WINDOW": 1.0}) as server:
        busy = WebSocketDDPClient(server.ws_url)
        idle = [WebSocketDDPClient(server.ws_url) for _ in range(5)]
        busy.send({"msg": "method", "id": "slow", "method": "test.slow", "params": [1.0]})
        busy.send({"msg": "ping", "id": "p"})
        assert busy.recv() == {"msg": "pong", "id": "p"}  # the method is running
        server.send_signal(signal.SIGTERM)
        assert busy.close_code() == 1001
        assert {"msg": "result", "id": "slow", "result": "finished"} in busy.messages
        assert {"msg": "updated", "methods": ["slow"]} in busy.messages
        for client in idle:
            assert client.close_code() == 1001
        assert server.stop() == 0, server.output()


def test_rolling_restart_of_one_of_three_servers_loses_no_change():
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    servers = [ServerProcess(ddp={"SHUTDOWN_WINDOW": 0.5}).start() for _ in range(3)]
    clients = {n: [] for n in range(3)}
    for n, server in enumerate(servers):
        for _ in range(4):
            client = WebSocketDDPClient(server.ws_url)
            client.subscribe("AllBooks")
            clients[n].append(client)
    done = threading.Event()

    def write():
        for n in range(300):
            book = Book.objects.create(title=f"r{n}", author=janet)
            if n % 4 == 0:
                book.title += " renamed"
                book.save()
            if n % 7 == 0:
                book.delete()
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    replacement = None
    try:
        clients[0][0].wait_for(lambda c: len(c.collection("bookstore.book")) > 30)
        servers[0].send_signal(signal.SIGTERM)  # a rolling restart: this one goes
        assert servers[0].stop() == 0
        replacement = ServerProcess().start()
        # Its clients reconnect, to a peer or to the new server, and subscribe again.
        moved = []
        for n, old in enumerate(clients[0]):
            assert old.close_code() == 1001
            target = servers[1] if n % 2 else replacement
            client = WebSocketDDPClient(target.ws_url)
            client.subscribe("AllBooks")
            moved.append(client)
        writer.join()
        assert done.is_set()
        wanted = {
            str(b.pk): {"title": b.title, "author_id": str(janet.pk)} for b in Book.objects.all()
        }
        for client in moved + clients[1] + clients[2]:
            client.wait_for(lambda c: c.collection("bookstore.book") == wanted)
            client.close()
    finally:
        writer.join()
        for server in servers[1:] + ([replacement] if replacement else []):
            server.stop()


def test_a_second_sigterm_during_the_graceful_shutdown_stops_at_once():
    """Whoever sends it again will not wait out the window (here a minute): neither does
    the server."""
    server = ServerProcess(ddp={"SHUTDOWN_WINDOW": 60.0}).start()
    try:
        # Open while it runs: the window is spent closing them, 20 s apart.
        _open = [WebSocketDDPClient(server.ws_url) for _ in range(3)]
        server.process.send_signal(signal.SIGTERM)
        # The graceful shutdown is under way.
        wait_until(lambda: "closing clients" in server.output(), 10, what="closing clients")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) == 128 + signal.SIGTERM
        assert "again: stopping at once" in server.output()
    finally:
        server.stop()


def post(server, path, *messages):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps([json.dumps(message) for message in messages]) if messages else ""
    conn.request("POST", path, body=body.encode())
    data = conn.getresponse().read().decode()
    conn.close()
    return data


def test_a_closed_xhr_client_does_not_hold_up_the_end():
    """An xhr client between two polls is closed at once, and its server is done with it
    then, not when its SockJS session expires: the server stops without waiting out the
    window plus 10 s (30 s here) for it to leave."""
    server = ServerProcess(ddp={"SHUTDOWN_WINDOW": 20.0}).start()
    try:
        assert post(server, "/sockjs/000/idle/xhr") == "o\n"
        post(
            server,
            "/sockjs/000/idle/xhr_send",
            {"msg": "connect", "version": "1", "support": ["1"]},
        )
        assert '\\"msg\\":\\"connected\\"' in post(server, "/sockjs/000/idle/xhr")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
        assert "DDP server stopped." in server.output()
    finally:
        server.stop()
