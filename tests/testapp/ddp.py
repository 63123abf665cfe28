"""Publications and methods the live-server tests call."""

import os
import socket
import threading

from django.db import connection
from django.db.backends.signals import connection_created

from bookstore.models import Author, Book
from ddp import MeteorError
from ddp.api import API, Collection, Publication
from tests.testapp import models


class Article(Collection):
    model = models.Article


class Tag(Collection):
    model = models.Tag


class Articles(Publication):
    queries = [models.Article.objects.all(), models.Tag.objects.all()]


class BooksAsLibrary(Publication):
    """Routes books to another collection with a ``(queryset, name)`` pair."""

    queries = [(Book.objects.all(), "library.items")]


class LibraryItems(Collection):
    model = Book
    name = "library.items"
    fields = ("title",)


class Failing(Publication):
    def get_queries(self):
        raise RuntimeError("secret detail that must not reach the client")


class Refusing(Publication):
    def get_queries(self):
        raise MeteorError("not-allowed", "You may not", {"why": "test"})


class SlowBooks(Publication):
    """Holds its database worker a little, so many subscribers overlap in the pool."""

    def get_queries(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.02)")
        return [Book.objects.all()]


class Shelf(Collection):
    model = models.Shelf
    user_rel = "owner"


class MyShelves(Publication):
    """Every shelf: the collection's ``user_rel`` keeps each user to their own."""

    login_required = True
    queries = [models.Shelf.objects.all()]


class BookIds(Collection):
    """Books whose connections keep only the ids they sent (Meteor's NO_MERGE)."""

    model = Book
    name = "nomerge.book"
    strategy = "NO_MERGE"


class BooksNoMerge(Publication):
    """Books whose title starts with ``prefix``, to ``nomerge.book``."""

    def get_queries(self, prefix):
        return [(Book.objects.filter(title__startswith=prefix), "nomerge.book")]


class BookIdsMulti(Collection):
    """Books whose connections keep the ids and who publishes each (NO_MERGE_MULTI)."""

    model = Book
    name = "nomergemulti.book"
    strategy = "NO_MERGE_MULTI"


class BooksNoMergeMulti(Publication):
    """Books whose title starts with ``prefix``, to ``nomergemulti.book``."""

    def get_queries(self, prefix):
        return [(Book.objects.filter(title__startswith=prefix), "nomergemulti.book")]


API.register(
    [Article, Tag, LibraryItems, Articles, BooksAsLibrary, Failing, Refusing, SlowBooks]
    + [Shelf, MyShelves]
    + [BookIds, BooksNoMerge, BookIdsMulti, BooksNoMergeMulti]
)


@API.method("test.echo")
def echo(this, *args):
    return list(args)


@API.method("test.nothing")
def nothing(this):
    return None


@API.method("test.whoami")
def whoami(this):
    return {"connection_id": this.connection_id, "user_id": this.user_id, "seed": this.random_seed}


@API.method("test.writeThenFail")
def write_then_fail(this, name):
    Author.objects.create(name=name, email=f"{name}@example.com")
    raise RuntimeError("boom after writing")


@API.method("test.refuse")
def refuse(this):
    raise MeteorError("not-allowed", "You may not", {"why": "test"})


@API.method("test.slow")
def slow(this, seconds):
    """A method still running when the server is told to stop."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])
    return "finished"


@API.method("test.backendPid")
def backend_pid(this):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), pg_sleep(0.02)")
        return cursor.fetchone()[0]


@API.method("test.runtime")
def runtime(this):
    """How the server process was set up: proves eventlet patched before Django."""
    import eventlet.patcher
    import psycopg2.extensions

    return {
        "socket_green": eventlet.patcher.is_monkey_patched("socket"),
        "thread_green": eventlet.patcher.is_monkey_patched("thread"),
        "socket_class": f"{socket.socket.__module__}.{socket.socket.__qualname__}",
        "psycopg_wait_callback": psycopg2.extensions.get_wait_callback() is not None,
        "threading_local": threading.local.__module__,
    }


# With DDP_TEST_COUNT_QUERIES set, a server counts every SQL statement its Django
# connections run, so a test can prove that dispatching a change costs no query.
QUERIES = [0]


def _count(execute, sql, params, many, context):
    QUERIES[0] += 1
    return execute(sql, params, many, context)


def _install_counter(sender, connection, **kwargs):
    connection.execute_wrappers.append(_count)


if os.environ.get("DDP_TEST_COUNT_QUERIES"):
    connection_created.connect(_install_counter)


@API.method("test.queryCount")
def query_count(this):
    return QUERIES[0]
