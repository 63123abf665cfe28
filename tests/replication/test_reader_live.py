"""Database capture end to end: writes no signal sees reach clients through the reader.

A real ``ddpserver`` with ``DDP["CAPTURE"] = "database"`` reads the test database's slot;
this process writes as other programs do, and in the same mode, so its own model signals
send nothing either.
"""

import subprocess
import sys

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from bookstore.models import Author, Book
from ddp.replication import setup
from ddp.testing.database import database_url
from tests.live import ServerProcess, wait_until
from tests.testapp.models import Article, Tag

pytestmark = pytest.mark.django_db(transaction=True)

DATABASE = {"CAPTURE": "database"}


@pytest.fixture
def server():
    """A server reading the changes, once it has made its slot and reads it."""
    with override_settings(DDP=DATABASE), ServerProcess(ddp=DATABASE) as server:
        wait_until(lambda: "reads the database's changes" in server.output(), timeout=30)
        with connection.cursor() as cursor:
            wait_until(lambda: setup.slot_status(cursor).active, timeout=30)
        yield server
    with connection.cursor() as cursor:
        wait_until(lambda: not setup.slot_status(cursor).active)
        setup.drop(cursor)


@pytest.fixture
def author():
    return Author.objects.create(name="Ursula", email="ursula@example.com")


def books_client(server, author):
    from ddp.testing import WebSocketDDPClient

    client = WebSocketDDPClient(server.ws_url)
    client.subscribe("AllBooks")
    client.assert_added("bookstore.author", str(author.pk))
    return client


def test_writes_that_send_no_signal_reach_the_client(server, author):
    client = books_client(server, author)
    (first, second) = Book.objects.bulk_create(
        [Book(title="one", author=author), Book(title="two", author=author)]
    )
    client.assert_added("bookstore.book", str(first.pk), title="one")
    client.assert_added("bookstore.book", str(second.pk), title="two")
    Book.objects.filter(pk=first.pk).update(title="one, renamed")
    client.assert_changed("bookstore.book", str(first.pk), {"title": "one, renamed"})
    second.title = "two, renamed"
    Book.objects.bulk_update([second], ["title"])
    client.assert_changed("bookstore.book", str(second.pk), {"title": "two, renamed"})
    with connection.cursor() as cursor:
        cursor.execute("UPDATE bookstore_book SET title = 'sql' WHERE id = %s", [first.pk])
    client.assert_changed("bookstore.book", str(first.pk), {"title": "sql"})
    Book.objects.filter(pk=second.pk).delete()
    client.assert_removed("bookstore.book", str(second.pk))
    client.close()


def test_a_program_that_is_not_django_is_heard(server, author):
    client = books_client(server, author)
    script = (
        "import sys, psycopg2\n"
        "conn = psycopg2.connect(sys.argv[1])\n"
        "with conn, conn.cursor() as cursor:\n"
        '    cursor.execute("INSERT INTO bookstore_book (title, author_id) VALUES '
        "('from psycopg2', %s) RETURNING id\", [int(sys.argv[2])])\n"
        "    print(cursor.fetchone()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, database_url(connection.settings_dict), str(author.pk)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "", "PYTHONPATH": ""},
    )
    client.assert_added("bookstore.book", done.stdout.strip(), title="from psycopg2")
    client.close()


def test_truncate_removes_every_document_clients_hold(server, author):
    client = books_client(server, author)
    books = Book.objects.bulk_create([Book(title=f"b{n}", author=author) for n in range(3)])
    for book in books:
        client.assert_added("bookstore.book", str(book.pk))
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE bookstore_book CASCADE")
    for book in books:
        client.assert_removed("bookstore.book", str(book.pk))
    client.close()


def test_a_many_to_many_add_changes_the_owning_document(server):
    from ddp.testing import WebSocketDDPClient

    article = Article.objects.create(title="a")
    tag = Tag.objects.create(name="t")
    client = WebSocketDDPClient(server.ws_url)
    client.subscribe("Articles")
    client.assert_added("testapp.article", str(article.pk), tag_ids=[])
    article.tags.add(tag)
    client.assert_changed("testapp.article", str(article.pk), {"tag_ids": [str(tag.pk)]})
    article.tags.remove(tag)
    client.assert_changed("testapp.article", str(article.pk), {"tag_ids": []})
    client.close()


def test_a_rolled_back_transaction_sends_nothing(server, author):
    client = books_client(server, author)
    with pytest.raises(RuntimeError), transaction.atomic():
        Book.objects.create(title="never", author=author)
        raise RuntimeError
    kept = Book.objects.create(title="kept", author=author)
    message = client.assert_added("bookstore.book", str(kept.pk))
    assert message["fields"]["title"] == "kept"
    assert not [m for m in client.messages if m.get("fields", {}).get("title") == "never"]
    client.close()


def test_the_writer_sends_nothing_in_database_mode(server, author):
    with CaptureQueriesContext(connection) as queries:
        Book.objects.create(title="quiet", author=author)
    assert [q["sql"] for q in queries.captured_queries if "notify" in q["sql"].lower()] == []
    assert len(queries.captured_queries) == 1  # the INSERT alone


def test_a_methods_own_writes_arrive_before_its_updated(server, author):
    client = books_client(server, author)
    book = Book.objects.create(title="before", author=author)
    client.assert_added("bookstore.book", str(book.pk))
    client.call("bookstore.renameBook", str(book.pk), "after")
    # call() returned on ``updated``: the change must already have arrived before it.
    changed = [
        m
        for m in client.messages
        if m.get("msg") == "changed" and m.get("fields", {}).get("title") == "after"
    ]
    assert changed, client.messages
    client.close()


def test_writes_to_tables_nobody_publishes_do_not_make_the_slot_keep_wal(server):
    """PostgreSQL sends nothing of them, not even an empty transaction to confirm: the
    slot's position must still follow the server's, or a busy database whose published
    tables are quiet would keep WAL until its disk is full."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE scratch_unpublished (id serial PRIMARY KEY, v text)")
        try:
            for _ in range(20):
                cursor.execute(
                    "INSERT INTO scratch_unpublished (v)"
                    " SELECT repeat('x', 200) FROM generate_series(1, 500)"
                )
            assert setup.slot_status(cursor).lag_bytes > 1024 * 1024
            wait_until(lambda: setup.slot_status(cursor).lag_bytes < 64 * 1024, timeout=60)
        finally:
            cursor.execute("DROP TABLE scratch_unpublished")
