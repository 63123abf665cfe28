"""A method's caller waits for the method's own changes before ``updated`` (PROTOCOL.md R4),
and for no other writer's: the producer marks the :class:`Writes` open on the connection
that sent them, never a thread's state."""

import threading

import pytest
from django.db import connection

from bookstore.models import Author, Book
from ddp.api import API
from ddp.bus.memory import InMemoryBus
from ddp.bus.producer import recording, use_backend
from ddp.testing.client import DDPClient

pytestmark = pytest.mark.django_db(transaction=True)


class FenceCounter(InMemoryBus):
    """The in-memory bus, counting the fences that methods wait for."""

    def __init__(self):
        super().__init__()
        self.fences = 0

    def fence(self, target=True):
        self.fences += 1
        super().fence(target)


def in_another_thread(func):
    """Run ``func`` in a thread of its own (its own database connection), and wait for it."""
    errors = []

    def run():
        try:
            func()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == []


@pytest.fixture
def author():
    return Author.objects.create(name="Janet", email="janet@evanovich.com")


@pytest.fixture
def bus():
    bus = FenceCounter()
    previous = use_backend(bus)
    yield bus
    use_backend(previous)


@pytest.fixture
def methods(author, monkeypatch):
    """Methods that write a book themselves, have another thread write one, or write
    nothing, beside the project's publications."""
    API.autodiscover()

    def mine(this, title):
        Book.objects.create(title=title, author=author)

    def theirs(this, title):
        in_another_thread(lambda: Book.objects.create(title=title, author=author))

    def none(this):
        Author.objects.count()

    for method in (mine, theirs, none):
        monkeypatch.setitem(API.methods, f"writes.{method.__name__}", method)


@pytest.fixture
def client(bus, methods):
    client = DDPClient(bus=bus)
    client.subscribe("AllBooks")
    yield client
    client.close()


def titles_added(client):
    added = [m for m in client.messages if m.get("msg") == "added"]
    return [m["fields"]["title"] for m in added if m["collection"] == "bookstore.book"]


def test_a_recording_sees_what_its_connection_sent_and_not_another_threads(client, author):
    books = []
    with recording() as writes:
        in_another_thread(lambda: books.append(Book.objects.create(title="theirs", author=author)))
    assert not writes.sent
    with recording() as writes:
        books.append(Book.objects.create(title="mine", author=author))
    assert writes.sent
    # Both writes did send their change.
    for book in books:
        client.assert_added("bookstore.book", str(book.pk), title=book.title)


def test_a_nested_recordings_writes_are_the_outer_ones_too(client, author):
    with recording() as outer:
        with recording() as inner:
            Book.objects.create(title="inner", author=author)
        assert inner.sent
        with recording() as quiet:
            pass
        assert not quiet.sent
    assert outer.sent


def test_a_method_waits_for_its_own_writes_and_no_other_threads(client):
    client.call("writes.theirs", "by another thread")
    assert client.bus.fences == 0
    client.call("writes.none")
    assert client.bus.fences == 0
    client.call("writes.mine", "by the method")
    assert client.bus.fences == 1
    assert titles_added(client) == ["by another thread", "by the method"]
