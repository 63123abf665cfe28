"""The bookstore example, tested the way a project tests its own publications."""

import pytest
from django.db import transaction

from bookstore.models import Author, Book
from ddp import MeteorError
from ddp.testing import DDPTestCase, SubscriptionError

JANET = "janet@evanovich.com"


class BooksByAuthorEmailTests(DDPTestCase):
    def test_new_book_reaches_subscriber(self):
        janet = Author.objects.create(name="Janet", email=JANET)
        client = self.ddp_client()
        client.subscribe("BooksByAuthorEmail", JANET)
        book = Book.objects.create(title="Hot Six", author=janet)
        client.assert_added(
            "bookstore.book", str(book.pk), title="Hot Six", author_id=str(janet.pk)
        )
        book_id = str(book.pk)  # Django sets pk to None on delete()
        book.delete()
        client.assert_removed("bookstore.book", book_id)

    def test_initial_documents_then_ready(self):
        janet = Author.objects.create(name="Janet", email=JANET)
        book = Book.objects.create(title="One for the Money", author=janet)
        client = self.ddp_client()
        sub_id = client.subscribe("BooksByAuthorEmail", JANET)
        client.assert_messages(
            [
                {
                    "msg": "added",
                    "collection": "bookstore.author",
                    "id": str(janet.pk),
                    "fields": {"name": "Janet", "email": JANET},
                },
                {
                    "msg": "added",
                    "collection": "bookstore.book",
                    "id": str(book.pk),
                    "fields": {"title": "One for the Money", "author_id": str(janet.pk)},
                },
            ]
        )
        assert client.messages[-1] == {"msg": "ready", "subs": [sub_id]}

    def test_only_changed_fields_travel(self):
        janet = Author.objects.create(name="Janet", email=JANET)
        book = Book.objects.create(title="Hot Six", author=janet)
        client = self.ddp_client()
        client.subscribe("AllBooks")
        client.assert_added("bookstore.author", str(janet.pk))
        client.assert_added("bookstore.book", str(book.pk))
        book.title = "Seven Up"
        book.save()
        client.assert_changed("bookstore.book", str(book.pk), fields={"title": "Seven Up"})
        client.assert_no_messages()

    def test_changed_fields_as_keywords_as_assert_added_takes_them(self):
        janet = Author.objects.create(name="Janet", email=JANET)
        book = Book.objects.create(title="Hot Six", author=janet)
        client = self.ddp_client()
        client.subscribe("AllBooks")
        client.assert_added("bookstore.book", str(book.pk), title="Hot Six")
        book.title = "Seven Up"
        book.save()
        book.title = "Eight"
        book.save()
        # At least these values, as assert_added: the second change, not the first.
        client.assert_changed("bookstore.book", str(book.pk), title="Eight")
        client.assert_changed("bookstore.book", str(book.pk), fields={"title": "Seven Up"})
        with pytest.raises(TypeError, match="fields= or keywords"):
            client.assert_changed("bookstore.book", str(book.pk), {"title": "x"}, title="x")

    def test_moving_a_book_to_another_author(self):
        janet = Author.objects.create(name="Janet", email=JANET)
        lee = Author.objects.create(name="Lee", email="lee@child.com")
        book = Book.objects.create(title="Hot Six", author=janet)
        janets, lees = self.ddp_client(), self.ddp_client()
        janets.subscribe("BooksByAuthorEmail", JANET)
        lees.subscribe("BooksByAuthorEmail", lee.email)
        book.author = lee
        book.save()
        janets.assert_removed("bookstore.book", str(book.pk))
        lees.assert_added("bookstore.book", str(book.pk), author_id=str(lee.pk))

    def test_changes_arrive_at_the_end_of_the_outer_block_and_rollbacks_send_nothing(self):
        janet = Author.objects.create(name="Janet", email=JANET)
        client = self.ddp_client()
        client.subscribe("AllBooks")
        client.assert_added("bookstore.author", str(janet.pk))
        with transaction.atomic():
            kept = Book.objects.create(title="kept", author=janet)
            client.assert_no_messages()  # not committed yet
            try:
                with transaction.atomic():
                    Book.objects.create(title="rolled back", author=janet)
                    raise RuntimeError
            except RuntimeError:
                pass
        client.assert_added("bookstore.book", str(kept.pk), title="kept")
        client.assert_no_messages()

    def test_add_book_method(self):
        client = self.ddp_client()
        client.subscribe("AllBooks")
        book_id = client.call("bookstore.addBook", "Dune", "frank@herbert.com")
        client.assert_added("bookstore.book", book_id, title="Dune")
        assert Book.objects.get(pk=book_id).author.email == "frank@herbert.com"

    def test_rename_unknown_book_is_a_meteor_error(self):
        client = self.ddp_client()
        with pytest.raises(MeteorError) as info:
            client.call("bookstore.renameBook", "999999", "x")
        assert (info.value.error, info.value.reason) == (404, "Book not found")

    def test_unknown_publication_raises(self):
        client = self.ddp_client()
        with pytest.raises(SubscriptionError) as info:
            client.subscribe("nope")
        assert info.value.error["error"] == 404

    def test_unsubscribe(self):
        janet = Author.objects.create(name="Janet", email=JANET)
        client = self.ddp_client()
        sub_id = client.subscribe("BooksByAuthorEmail", JANET)
        client.assert_added("bookstore.author", str(janet.pk))
        client.unsubscribe(sub_id)
        client.assert_removed("bookstore.author", str(janet.pk))
        client.assert_no_messages()
        assert client.collection("bookstore.author") == {}

    def test_ready_and_nosub_after_raw_requests(self):
        client = self.ddp_client()
        client.send({"msg": "sub", "id": "raw", "name": "AllBooks", "params": []})
        client.assert_ready("raw")
        client.send({"msg": "sub", "id": "bad", "name": "nope", "params": []})
        client.assert_nosub("bad", error=404)

    def test_failure_messages_show_what_arrived(self):
        janet = Author.objects.create(name="Janet", email=JANET)
        client = self.ddp_client()
        client.subscribe("AllBooks")
        with pytest.raises(AssertionError, match="Expected added bookstore.book 404") as info:
            client.assert_added("bookstore.book", "404")
        assert f"'id': '{janet.pk}'" in str(info.value)  # what did arrive


def test_fixture_client_sees_changes(ddp_client, ddp_client_factory):
    janet = Author.objects.create(name="Janet", email=JANET)
    other = ddp_client_factory()
    ddp_client.subscribe("AllBooks")
    other.subscribe("BooksByAuthorEmail", "nobody@example.com")
    book = Book.objects.create(title="Hot Six", author=janet)
    ddp_client.assert_added("bookstore.book", str(book.pk), title="Hot Six")
    other.assert_no_messages()
