"""Row changes of the replication stream -> documents announced (ddp.replication.consumer).

The stream is stood for by hand-made changes; the writes themselves go around Django's
signals (``update()``, ``bulk_create()``, SQL), as writes the signals never see do.
"""

from django.db import connection

from bookstore.models import Author, Book
from ddp.replication.consumer import Change, Tables, announce
from ddp.testing import DDPTestCase
from tests.testapp.models import Article, Tag


class ConsumerTests(DDPTestCase):
    def setUp(self):
        self.tables = Tables()
        self.author = Author.objects.create(name="Ursula", email="ursula@example.com")

    def books_client(self):
        client = self.ddp_client()
        client.subscribe("AllBooks")
        client.assert_added("bookstore.author", str(self.author.pk))
        return client

    def test_published_tables_parents_and_through_tables_are_mapped(self):
        names = self.tables.names()
        assert {Book._meta.db_table, Author._meta.db_table, Article._meta.db_table} <= set(names)
        assert Article.tags.through._meta.db_table in names
        assert "auth_permission" not in names  # nobody publishes it

    def test_writes_no_signal_saw_reach_the_client_once_announced(self):
        client = self.books_client()
        book = Book.objects.create(title="Old", author=self.author)
        client.assert_added("bookstore.book", str(book.pk), title="Old")
        Book.objects.filter(pk=book.pk).update(title="New")
        (made,) = Book.objects.bulk_create([Book(title="Bulk", author=self.author)])
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM bookstore_book WHERE id = %s", [book.pk])
        client.assert_no_messages()
        table = Book._meta.db_table
        announce(
            [
                Change(table, "update", new={"id": str(book.pk), "title": "New"}),
                Change(table, "insert", new={"id": str(made.pk), "title": "Bulk"}),
                Change(table, "delete", old={"id": str(book.pk)}),
            ],
            self.tables,
        )
        client.assert_added("bookstore.book", str(made.pk), title="Bulk")
        client.assert_removed("bookstore.book", str(book.pk))

    def test_a_document_touched_many_times_in_a_batch_is_announced_once(self):
        client = self.books_client()
        book = Book.objects.create(title="v0", author=self.author)
        client.assert_added("bookstore.book", str(book.pk))
        Book.objects.filter(pk=book.pk).update(title="v3")
        table = Book._meta.db_table
        announce([Change(table, "update", new={"id": str(book.pk)}) for _ in range(3)], self.tables)
        client.assert_changed("bookstore.book", str(book.pk), {"title": "v3"})
        client.assert_no_messages()

    def test_a_through_row_changes_the_document_that_lists_it(self):
        client = self.ddp_client()
        client.subscribe("Articles")
        article = Article.objects.create(title="a")
        tag = Tag.objects.create(name="t")
        client.assert_added("testapp.article", str(article.pk), tag_ids=[])
        through = Article.tags.through
        through.objects.bulk_create([through(article_id=article.pk, tag_id=tag.pk)])
        announce(
            [
                Change(
                    through._meta.db_table,
                    "insert",
                    new={"id": "1", "article_id": str(article.pk), "tag_id": str(tag.pk)},
                )
            ],
            self.tables,
        )
        client.assert_changed("testapp.article", str(article.pk), {"tag_ids": [str(tag.pk)]})

    def test_truncate_removes_what_clients_hold_of_the_collection(self):
        client = self.books_client()
        books = [Book.objects.create(title=f"b{n}", author=self.author) for n in range(2)]
        for book in books:
            client.assert_added("bookstore.book", str(book.pk))
        with connection.cursor() as cursor:
            # What TRUNCATE leaves (which a test's transaction cannot run on this table).
            cursor.execute("DELETE FROM bookstore_book")
        announce([Change(Book._meta.db_table, "truncate")], self.tables)
        for book in books:
            client.assert_removed("bookstore.book", str(book.pk))

    def test_an_update_that_changes_the_key_removes_the_old_document(self):
        client = self.books_client()
        book = Book.objects.create(title="moved", author=self.author)
        client.assert_added("bookstore.book", str(book.pk))
        new_pk = book.pk + 1000
        Book.objects.filter(pk=book.pk).update(id=new_pk)
        announce(
            [
                Change(
                    Book._meta.db_table,
                    "update",
                    new={"id": str(new_pk)},
                    old={"id": str(book.pk)},
                )
            ],
            self.tables,
        )
        client.assert_removed("bookstore.book", str(book.pk))
        client.assert_added("bookstore.book", str(new_pk), title="moved")
