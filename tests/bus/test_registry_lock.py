"""A new subscription waiting for the registry's lock never holds writers up for long.

A transaction holds the lock shared, as every writer does, and stays open: the
subscription's exclusive request must not queue every other writer behind it, and the
subscription must still start once the lock is free, missing no change made meanwhile.

Writers take the lock on the signals path: the server and this process say
DDP["CAPTURE"] = "signals" (with "auto" the writers here would leave their changes to a
replication reader, and whether a save takes the lock would depend on when they see its
slot).
"""

import threading
import urllib.request

import psycopg2
import pytest
from django.db import connection, connections
from prometheus_client.parser import text_string_to_metric_families

from bookstore.models import Author, Book
from ddp.bus.registry import LOCK, lock_shared
from ddp.testing import WebSocketDDPClient
from ddp.testing.database import database_url
from tests.live import SIGNALS, ServerProcess, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("capture_signals")]

JANET = "janet@evanovich.com"
#: The bound the issue sets on a writer's save while a subscription waits for the lock.
SAVE_WITHIN = 0.1


@pytest.fixture
def janet():
    return Author.objects.create(name="Janet", email=JANET)


@pytest.fixture
def holder():
    """A connection of its own, not Django's, for a transaction left open."""
    holder = psycopg2.connect(database_url(connection.settings_dict))
    yield holder
    holder.close()


def hold_the_lock(holder):
    """Open a transaction on ``holder`` holding the registry lock shared, as a writer
    does, and leave it open; ``holder.rollback()`` releases it."""
    with holder.cursor() as cursor:
        lock_shared(cursor)


def exclusive_request_waiting():
    """Whether a server's exclusive request for the registry lock is in PostgreSQL's queue."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
            " AND mode = 'ExclusiveLock' AND NOT granted",
            [LOCK],
        )
        return cursor.fetchone()[0] > 0


def rename(book, title):
    """Save ``book`` with ``title`` in a thread of its own (a writer of its own)."""

    def save():
        try:
            book.title = title
            book.save()
        finally:
            connections.close_all()

    writer = threading.Thread(target=save, daemon=True)
    writer.start()
    return writer


def books(client):
    return client.collection("bookstore.book")


def counter(server, name):
    with urllib.request.urlopen(server.url + "metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")


def test_writes_go_on_while_a_subscription_waits_for_the_lock(janet, holder):
    book = Book.objects.create(title="Hot Six", author=janet)
    with ServerProcess(ddp={**SIGNALS, "REGISTRY_LOCK_WAIT": 60}) as server:
        # A live subscription, so that the saves below go through the matcher; and one
        # save first, so that this process's matcher knows its template already.
        watcher = WebSocketDDPClient(server.ws_url)
        watcher.subscribe("AllBooks")
        book.save()

        hold_the_lock(holder)
        newcomer = WebSocketDDPClient(server.ws_url)
        newcomer.send({"msg": "sub", "id": "n", "name": "BooksByAuthorEmail", "params": [JANET]})
        writers = []
        try:
            for n in range(3):
                # Each save starts while the server's request is queued for the lock.
                # Polled every millisecond: the server's request may wait only briefly at a time.
                wait_until(exclusive_request_waiting, interval=0.001)
                writers.append(rename(book, f"Take {n}"))
                writers[-1].join(SAVE_WITHIN)
                assert not writers[-1].is_alive(), f"save {n} waited behind the subscription"
        finally:
            holder.rollback()
            for writer in writers:
                writer.join(30)

        reply = newcomer.recv_until(lambda m: m["msg"] in ("ready", "nosub"))[-1]
        assert reply == {"msg": "ready", "subs": ["n"]}
        # Saved before the subscription could register: its first query saw them.
        assert books(newcomer) == {str(book.pk): {"title": "Take 2", "author_id": str(janet.pk)}}
        # Saved after: the writer matched it against the new subscription.
        rename(book, "Seven Up").join(30)
        newcomer.wait_for(lambda c: books(c)[str(book.pk)]["title"] == "Seven Up")
        assert counter(server, "ddp_registry_lock_retries_total") > 0
        assert counter(server, "ddp_registry_busy_total") == 0
        watcher.close()
        newcomer.close()
    assert "Traceback" not in server.output()


def test_a_subscription_that_cannot_register_in_time_gets_a_503_nosub(janet, holder):
    Book.objects.create(title="Hot Six", author=janet)
    with ServerProcess(ddp={"REGISTRY_LOCK_WAIT": 0.3}) as server:
        client = WebSocketDDPClient(server.ws_url)
        hold_the_lock(holder)
        try:
            sub_id, messages = client.sub("BooksByAuthorEmail", JANET)
        finally:
            holder.rollback()
        assert messages == [
            {
                "msg": "nosub",
                "id": sub_id,
                "error": {
                    "isClientSafe": True,
                    "error": 503,
                    "reason": "The server is busy: subscribe again later",
                    "message": "The server is busy: subscribe again later [503]",
                    "errorType": "Meteor.Error",
                },
            }
        ]
        assert counter(server, "ddp_registry_busy_total") == 1
        # The lock is free now: the same subscription starts, on the same connection.
        sub_id, messages = client.sub("BooksByAuthorEmail", JANET)
        assert messages[-1] == {"msg": "ready", "subs": [sub_id]}
        assert len(books(client)) == 1
        client.close()
    output = server.output()
    assert "the registry lock stayed held for 0.3 s" in output
    assert "Traceback" not in output


def test_a_server_taken_for_dead_registers_again_once_the_lock_is_free(janet, holder):
    """Registering again after a stall may meet the lock held: the next heartbeats retry,
    and then the clients converge, rather than their subscriptions being left out."""
    settings = {"SERVER_HEARTBEAT": 0.2, "REGISTRY_LOCK_WAIT": 0.3}
    with ServerProcess(ddp=settings) as server:
        client = WebSocketDDPClient(server.ws_url)
        client.subscribe("BooksByAuthorEmail", JANET)
        hold_the_lock(holder)
        try:
            with connection.cursor() as cursor:
                # What a peer does to a server silent for 2 * SERVER_TIMEOUT.
                cursor.execute("DELETE FROM ddp_server")
            wait_until(lambda: "the registry lock stayed held" in server.output())
        finally:
            holder.rollback()
        book = Book.objects.create(title="Hot Six", author=janet)
        client.wait_for(lambda c: str(book.pk) in books(c))
        book.title = "Seven Up"
        book.save()
        client.wait_for(lambda c: books(c)[str(book.pk)]["title"] == "Seven Up")
        client.close()
    assert "This server was taken for dead" in server.output()
