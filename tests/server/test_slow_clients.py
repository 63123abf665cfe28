"""A client that stops reading is cut off when its bounded buffer overflows; others go on."""

import http.client
import json
import select
import signal
import socket
import time

import pytest
from django.db import connection

from bookstore.models import Author, Book
from ddp.testing import WebSocketDDPClient
from tests.live import ServerProcess, metric, wait_until
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
        slow = WebSocketDDPClient(
            server.ws_url, sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
        )
        for name in ("AllBooks", "Articles"):
            slow.send({"msg": "sub", "id": name, "name": name, "params": []})
        others = [WebSocketDDPClient(server.ws_url) for _ in range(100)]
        for client in others:
            client.subscribe("AllBooks")
        books = [str(Book.objects.create(title=str(n), author=janet).pk) for n in range(1000)]

        def books_of(client):
            return client.collection("bookstore.book")

        for client in others:
            client.wait_for(lambda c: len(books_of(c)) == 1000, timeout=120)
            assert list(books_of(client)) == books
            client.close()
    output = server.output()
    assert output.count("Disconnecting slow client") == 1
    assert f"Disconnecting slow client {slow.session_id}" in output


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


def xhr(server, session_id, kind, *messages):
    """One SockJS xhr request of ``kind`` (``xhr``, ``xhr_send``) carrying ``messages``."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps([json.dumps(message) for message in messages]) if messages else ""
    conn.request("POST", f"/sockjs/000/{session_id}/{kind}", body=body.encode())
    data = conn.getresponse().read().decode()
    conn.close()
    return data


def test_an_xhr_client_that_stops_polling_is_cut_off_once_as_any_client():
    """What waits for an xhr client's next poll is bounded once, by the runtime's outbox:
    it is cut off, logged and counted as a DDP client on any transport."""
    for n in range(3):
        Article.objects.create(title=str(n), body="x" * 200 * 1024)
    with ServerProcess(ddp={"OUTBOX_MAX_BYTES": 256 * 1024}) as server:
        assert xhr(server, "stopped", "xhr") == "o\n"
        xhr(server, "stopped", "xhr_send", {"msg": "connect", "version": "1", "support": ["1"]})
        (connected,) = json.loads(xhr(server, "stopped", "xhr")[1:])
        session = json.loads(connected)["session"]
        sub = {"msg": "sub", "id": "a", "name": "Articles", "params": []}
        assert xhr(server, "stopped", "xhr_send", sub) == ""
        wait_until(lambda: "Disconnecting slow" in server.output(), 30)
        assert metric(server, "ddp_slow_client_disconnects_total") == 1
        # Its SockJS session ended with it: the id opens a new one.
        assert xhr(server, "stopped", "xhr") == "o\n"
    output = server.output()
    assert output.count("Disconnecting slow") == 1
    assert f"Disconnecting slow client {session}" in output


def many_books(count):
    """``count`` books with long titles: far more bytes than socket buffers and a small
    outbox hold together, so a client that does not read leaves its publish waiting."""
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    # Titles "000000xxx...", "000001xxx..." (200 characters), written by PostgreSQL in one
    # statement: Django's bulk_create of the same rows took four times as long.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Book._meta.db_table} (title, author_id)"
            " SELECT rpad(lpad(n::text, 6, '0'), 200, 'x'), %s"
            " FROM generate_series(0, %s - 1) AS n ORDER BY n",
            [janet.pk, count],
        )
    return Book.objects.order_by("pk").values_list("pk", flat=True).first()


def subscribe_without_reading(server):
    """A client with a tiny receive buffer that subscribes to AllBooks and reads no more;
    returned once the first documents reached its socket: the publish has started."""
    client = WebSocketDDPClient(
        server.ws_url, sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
    )
    client.send({"msg": "sub", "id": "all", "name": "AllBooks", "params": []})
    readable, _, _ = select.select([client.ws.sock], [], [], 30)
    assert readable, "no document came"
    return client


def registry_rows():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ddp_subscription")
        return cursor.fetchone()[0]


def test_a_client_that_never_reads_holds_no_database_worker():
    """Issue 12, item 3: with one database worker, a client that stops reading during a
    60,000-document publish leaves the worker free: another client's method answers
    within a second; the slow client is cut off and its subscription released."""
    book = many_books(60_000)
    ddp = {"OUTBOX_MAX_BYTES": 256 * 1024, "HEARTBEAT_TIMEOUT": 3.0}
    with ServerProcess("--db-pool", "1", ddp=ddp) as server:
        slow = subscribe_without_reading(server)
        other = WebSocketDDPClient(server.ws_url)
        other.send(
            {
                "msg": "method",
                "id": "r",
                "method": "bookstore.renameBook",
                "params": [str(book), "Renamed"],
            }
        )
        other.wait_for(lambda c: {"msg": "result", "id": "r", "result": None} in c.messages, 1)
        wait_until(lambda: f"Disconnecting slow client {slow.session_id}" in server.output(), 30)
        wait_until(lambda: registry_rows() == 0, 10)
        other.close()
    assert server.output().count("Disconnecting slow client") == 1


def test_a_publish_has_one_deadline_however_the_client_trickles():
    """A client that reads a little now and then never stalls a wait for room for long,
    yet its publish ends at DDP["PUBLISH_TIMEOUT"]: it is cut off as a slow consumer."""
    many_books(60_000)
    ddp = {"OUTBOX_MAX_BYTES": 256 * 1024, "HEARTBEAT_TIMEOUT": 60.0, "PUBLISH_TIMEOUT": 2.0}
    with ServerProcess("--db-pool", "1", ddp=ddp) as server:
        slow = subscribe_without_reading(server)
        deadline = time.monotonic() + 30
        # About 40 KB/s: all 18 MB would take minutes. Once cut off, what the kernel
        # holds still trickles in.
        while f"Disconnecting slow client {slow.session_id}" not in server.output():
            assert time.monotonic() < deadline, "still sending after 30 s"
            assert slow.ws.sock.recv(2048)
            time.sleep(0.05)
        wait_until(lambda: registry_rows() == 0, 10)


def test_sigterm_does_not_wait_for_a_client_that_never_reads():
    many_books(60_000)
    ddp = {
        "OUTBOX_MAX_BYTES": 256 * 1024,
        "HEARTBEAT_TIMEOUT": 60.0,
        "PUBLISH_TIMEOUT": 600.0,
        "SHUTDOWN_WINDOW": 1.0,
    }
    with ServerProcess("--db-pool", "1", ddp=ddp) as server:
        subscribe_without_reading(server)
        server.send_signal(signal.SIGTERM)
        assert server.stop(timeout=30) == 0, server.output()
    assert "DDP server stopped." in server.output()


def test_rows_written_between_pages_reach_a_late_reader_as_they_are():
    """The initial documents are read a page per query, each in its own snapshot; what is
    written meanwhile is applied after them, so the client ends with the table as it is."""
    first = many_books(30_000)
    ddp = {"OUTBOX_MAX_BYTES": 256 * 1024}
    with ServerProcess(ddp=ddp) as server:
        client = subscribe_without_reading(server)
        # Rows already sent, and rows that the pages have not reached yet.
        Book.objects.filter(pk=first).delete()
        last, before_last = Book.objects.order_by("-pk")[:2]
        last.title = "Renamed"
        last.save()
        before_last.delete()
        Book.objects.create(title="New", author=last.author)
        wanted = {
            str(b.pk): {"title": b.title, "author_id": str(b.author_id)} for b in Book.objects.all()
        }
        # In order: a predicate over every message so far, checked at each of 30,000
        # messages, took most of this test's time.
        client.recv_until(lambda m: m == {"msg": "ready", "subs": ["all"]}, timeout=60)
        client.wait_for(lambda c: c.collection("bookstore.book") == wanted)
        client.close()
    # Its page was read after the rename: the document went out renamed, not changed later.
    sent = [m for m in client.messages if m.get("collection") == "bookstore.book"]
    assert [m["fields"] for m in sent if m["id"] == str(last.pk)] == [wanted[str(last.pk)]]
    assert "Disconnecting slow" not in server.output()
