"""A client that stops reading is cut off when its bounded buffer overflows; others go on."""

import socket

import pytest

from bookstore.models import Author, Book
from ddp.testing import WebSocketDDPClient
from tests.ddpclient import DDPClient
from tests.live import ServerProcess
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_client_that_never_reads_is_disconnected_and_others_get_everything():
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    # More than the kernel's socket buffers hold, so the server's own buffer fills.
    for n in range(12):
        Article.objects.create(title=str(n), body="x" * 1024 * 1024)
    ddp = {"OUTBOX_MAX_BYTES": 256 * 1024, "OUTBOX_MAX_MESSAGES": 100_000}
    with ServerProcess(ddp=ddp) as server:
        # A tiny receive buffer, and then no reading at all.
        slow = DDPClient(server.ws_url, sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
        for name in ("AllBooks", "Articles"):
            slow.send({"msg": "sub", "id": name, "name": name, "params": []})
        others = [DDPClient(server.ws_url) for _ in range(100)]
        for client in others:
            client.sub("AllBooks")
        books = [str(Book.objects.create(title=str(n), author=janet).pk) for n in range(1000)]

        def books_of(client):
            return client.collections.get("bookstore.book", {})

        for client in others:
            client.wait_for(lambda c: len(books_of(c)) == 1000, timeout=120)
            assert list(books_of(client)) == books
            client.close()
    output = server.output()
    assert output.count("Disconnecting slow client") == 1
    assert f"Disconnecting slow client {slow.session}" in output


def test_a_publication_larger_than_the_buffer_streams_at_the_clients_pace():
    """A reading client gets every document of a large subscription: the initial send
    waits for room instead of overflowing the bounded buffer, on both transports."""
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    Book.objects.bulk_create([Book(title=f"b{n}", author=janet) for n in range(3000)])
    ddp = {"OUTBOX_MAX_MESSAGES": 500}
    with ServerProcess(ddp=ddp) as server:
        for client in (
            WebSocketDDPClient(server.ws_url, timeout=60),
            WebSocketDDPClient(
                f"ws://127.0.0.1:{server.port}/sockjs/000/largesub/websocket",
                timeout=60,
                sockjs=True,
            ),
        ):
            client.subscribe("AllBooks")
            assert len(client.collection("bookstore.book")) == 3000
            client.close()
    assert "Disconnecting slow" not in server.output()
