# bookstore/ddp.py
from ddp.api import API, Collection, Publication
from bookstore import models

class Book(Collection):
    model = models.Book

class Author(Collection):
    model = models.Author

class AllBooks(Publication):
    queries = [models.Author.objects.all(), models.Book.objects.all()]

class BooksByAuthorEmail(Publication):
    def get_queries(self, author_email):
        return [models.Author.objects.filter(email=author_email),
                models.Book.objects.filter(author__email=author_email)]

API.register([Book, Author, AllBooks, BooksByAuthorEmail])


# The README's example ends above; the methods below are the example's writes.
from django.db import transaction

from ddp import MeteorError


@API.method("bookstore.addBook")
def add_book(this, title, author_email):
    """Add a book, creating its author on first use, and return the new book's id.

    The author is found by email so that a client needs no author id to add a book; a new
    author is named after the part of the address before the ``@`` until renamed in the admin.
    """
    with transaction.atomic():
        author, _ = models.Author.objects.get_or_create(
            email=author_email, defaults={"name": author_email.split("@")[0]}
        )
        book = models.Book.objects.create(title=title, author=author)
    return str(book.pk)


@API.method("bookstore.renameBook")
def rename_book(this, book_id, title):
    """Give the book ``book_id`` a new title; 404 when there is no such book.

    The row is loaded and saved, not updated in place, because ``save()`` sends the signal
    that tells subscribed clients about the change and ``QuerySet.update()`` does not.
    """
    try:
        book = models.Book.objects.get(pk=book_id)
    except (models.Book.DoesNotExist, ValueError):
        # A non-numeric id is as missing as an unknown one.
        raise MeteorError(404, "Book not found") from None
    book.title = title
    book.save(update_fields=["title"])


# Private data: each user's shelf, published to its owner only. The live page at / shows it
# under "My shelf" once logged in, and it disappears at logout.
class ShelfItem(Collection):
    model = models.ShelfItem
    fields = ("book", "note")
    # Every query of this collection, and every live change, is limited to the user's own.
    user_rel = "owner"


class MyShelf(Publication):
    """The logged-in user's shelf; an anonymous connection gets none of it, and ``ready``."""

    login_required = True
    queries = [models.ShelfItem.objects.all()]


API.register([ShelfItem, MyShelf])
