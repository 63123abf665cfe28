"""A batch the reader announced but could not confirm is announced again, and a server
that had it drops the second copy.

The reader runs in this process, on the fake driver and a ``run_db`` that fails right
after its first batch committed (as when its server dies then): the position is not
confirmed, so the reader reads the same transaction again and announces it again. The
client follows a ``NO_MERGE`` collection, whose merge box keeps no values and so would
pass a second copy on as a ``changed``.
"""

import pytest
from django.db import OperationalError, connection

from bookstore.models import Author, Book
from ddp.replication.reader import Reader
from ddp.testing import WebSocketDDPClient
from ddp.testing.driver import FakeDriver
from tests.live import ServerProcess, metric, wait_until
from tests.replication.conftest import drive_until, slot_active

pytestmark = pytest.mark.django_db(transaction=True)

IDS = "nomerge.book"


class DiesAfterItsFirstBatch:
    """``run_db`` whose first job commits its events, then fails before the reader can
    confirm them."""

    def __init__(self):
        self.done = 0

    def __call__(self, func, *args):
        result = func(*args)
        self.done += 1
        if self.done == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return result


def changed_titles(client, book):
    """The titles of the ``changed`` messages of ``book`` ``client`` got so far."""
    client._pump(0.1)
    return [
        m["fields"]["title"]
        for m in client.messages
        if m.get("msg") == "changed" and m.get("id") == str(book.pk)
    ]


def test_a_batch_announced_again_reaches_clients_once(cursor):
    author = Author.objects.create(name="Lee", email="lee@child.com")
    book = Book.objects.create(title="dup-1", author=author)
    # A server that reads nothing itself: this process's reader announces to it.
    with ServerProcess(ddp={"CAPTURE": "signals"}) as server:
        client = WebSocketDDPClient(server.ws_url, timeout=30)
        client.subscribe("BooksNoMerge", "dup")
        client.assert_added(IDS, str(book.pk), title="dup-1")
        run_db = DiesAfterItsFirstBatch()
        driver = FakeDriver()
        reader = Reader(connection.get_connection_params(), run_db, driver)
        reader.start()
        try:
            drive_until(driver, lambda: slot_active(cursor), "the reader's stream")
            cursor.execute("UPDATE bookstore_book SET title = 'dup-2' WHERE id = %s", [book.pk])
            drive_until(driver, lambda: run_db.done >= 2, "the batch announced again")
            # A later write, after which a second copy would have arrived.
            cursor.execute("UPDATE bookstore_book SET title = 'dup-3' WHERE id = %s", [book.pk])
            drive_until(driver, lambda: "dup-3" in changed_titles(client, book), "dup-3")
        finally:
            reader.stop()
            wait_until(lambda: not slot_active(cursor), timeout=30)
        assert changed_titles(client, book) == ["dup-2", "dup-3"]
        assert metric(server, "ddp_repeated_events_total") == 1
        client.close()
