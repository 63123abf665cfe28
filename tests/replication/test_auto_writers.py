"""With DDP["CAPTURE"] = "auto", a writer leaves its changes to the replication reader
exactly while the database's slot exists, whatever its own role could do.

This process writes (its setting is the default, "auto") to a server that itself captures
through signals, so that nothing but this process's NOTIFYs can bring a change.
"""

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from bookstore.models import Author, Book
from ddp.bus import producer
from ddp.replication import setup
from ddp.testing import WebSocketDDPClient
from tests.live import ServerProcess

pytestmark = pytest.mark.django_db(transaction=True)


def notifies(queries):
    return [q for q in queries.captured_queries if "pg_notify" in q["sql"]]


def write(title, author):
    with CaptureQueriesContext(connection) as queries:
        book = Book.objects.create(title=title, author=author)
    return book, len(notifies(queries))


def test_a_writer_sends_nothing_while_the_slot_exists(cursor):
    producer.forget_slots()
    author = Author.objects.create(name="Ursula", email="ursula@example.com")
    with ServerProcess(ddp={"CAPTURE": "signals"}) as server:
        client = WebSocketDDPClient(server.ws_url, timeout=30)
        client.subscribe("AllBooks")
        client.assert_added("bookstore.author", str(author.pk))

        before, sent_before = write("before the slot", author)
        setup.ensure_slot(cursor)
        during, sent_during = write("while the slot exists", author)
        setup.drop(cursor)
        after, sent_after = write("after the slot", author)

        client.assert_added("bookstore.book", str(after.pk))
        client.close()
    assert (sent_before, sent_during, sent_after) == (1, 0, 1)
    # NOTIFYs arrive in commit order: had the second write sent, it would be here.
    added = [m["id"] for m in client.messages if m.get("collection") == "bookstore.book"]
    assert added == [str(before.pk), str(after.pk)]


def test_the_answer_is_kept_a_few_seconds(cursor, monkeypatch):
    producer.forget_slots()
    with CaptureQueriesContext(connection) as queries:
        answers = [producer.reading_database() for _ in range(3)]
    assert (answers, len(queries)) == ([False] * 3, 1)

    setup.ensure_slot(cursor)  # this process made it: it looks again
    monkeypatch.setattr(producer, "SLOT_CHECK_INTERVAL", 0)
    with CaptureQueriesContext(connection) as queries:
        answers = [producer.reading_database() for _ in range(3)]
    assert (answers, len(queries)) == ([True] * 3, 3)


@pytest.mark.parametrize(("mode", "reading"), [("signals", False), ("database", True)])
def test_the_other_modes_ask_nothing(cursor, mode, reading):
    setup.ensure_slot(cursor)
    with override_settings(DDP={"CAPTURE": mode}), CaptureQueriesContext(connection) as queries:
        assert producer.reading_database() is reading
    assert len(queries) == 0
