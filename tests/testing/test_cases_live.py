"""DDPLiveServerTestCase: the same client API against a real ddpserver and real NOTIFY."""

from bookstore.models import Author, Book
from ddp.testing import DDPLiveServerTestCase


class BookstoreLiveTests(DDPLiveServerTestCase):
    def test_changes_reach_a_websocket_client(self):
        janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
        client = self.ddp_client()
        client.subscribe("BooksByAuthorEmail", "janet@evanovich.com")
        client.assert_added("bookstore.author", str(janet.pk), name="Janet")
        book = Book.objects.create(title="Hot Six", author=janet)
        client.assert_added("bookstore.book", str(book.pk), title="Hot Six")
        book.title = "Seven Up"
        book.save()
        client.assert_changed("bookstore.book", str(book.pk), fields={"title": "Seven Up"})
        book_id = str(book.pk)
        book.delete()
        client.assert_removed("bookstore.book", book_id)
        client.assert_no_messages()

    def test_method_call_and_error(self):
        client = self.ddp_client()
        book_id = client.call("bookstore.addBook", "Dune", "frank@herbert.com")
        assert Book.objects.filter(pk=book_id).exists()
        assert client.collection("bookstore.book") == {}


def test_live_fixtures(ddp_live_client, transactional_db):
    author = Author.objects.create(name="Lee", email="lee@child.com")
    ddp_live_client.subscribe("AllBooks")
    ddp_live_client.assert_added("bookstore.author", str(author.pk), email="lee@child.com")
