"""A change that goes to many clients is JSON-encoded once per distinct message."""

from bookstore.models import Author, Book
from ddp import metrics
from ddp.testing import DDPTestCase

ENCODED = "ddp_messages_encoded_total"


class EncodeOnceTests(DDPTestCase):
    def test_one_encoding_per_distinct_message_whatever_the_clients(self):
        janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
        clients = [self.ddp_client() for _ in range(50)]
        for client in clients:
            client.subscribe("AllBooks")

        before = metrics.counters[ENCODED]
        book = Book.objects.create(title="Hot Six", author=janet)
        for client in clients:
            client.assert_added("bookstore.book", str(book.pk), title="Hot Six")
        assert metrics.counters[ENCODED] - before == 1

        before = metrics.counters[ENCODED]
        book.title = "Seven Up"
        book.save()
        for client in clients:
            client.assert_changed("bookstore.book", str(book.pk), fields={"title": "Seven Up"})
        assert metrics.counters[ENCODED] - before == 1

        before = metrics.counters[ENCODED]
        book_id = str(book.pk)
        book.delete()
        for client in clients:
            client.assert_removed("bookstore.book", book_id)
        assert metrics.counters[ENCODED] - before == 1

    def test_clients_whose_views_differ_get_their_own_messages(self):
        janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
        book = Book.objects.create(title="Hot Six", author=janet)
        old, fresh = self.ddp_client(), self.ddp_client()
        old.subscribe("AllBooks")
        old.assert_added("bookstore.book", str(book.pk))
        # ``fresh`` does not hold the book yet: it gets an ``added``, ``old`` a ``changed``.
        fresh.subscribe("BooksByAuthorEmail", "nobody@example.com")
        before = metrics.counters[ENCODED]
        book.title = "Seven Up"
        book.save()
        old.assert_changed("bookstore.book", str(book.pk), fields={"title": "Seven Up"})
        fresh.assert_no_messages()
        assert metrics.counters[ENCODED] - before == 1
