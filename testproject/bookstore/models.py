"""Two related models, enough to show a filtered publication that spans a foreign key, and
a user's own shelf, published to its owner only."""

from django.conf import settings
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=200)
    # Unique because clients subscribe by it (BooksByAuthorEmail) and addBook finds authors by it.
    email = models.EmailField(unique=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return self.name


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return self.title


class ShelfItem(models.Model):
    """A book on a user's shelf: private data, published to its owner only (``MyShelf``)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="shelf_items", on_delete=models.CASCADE
    )
    book = models.ForeignKey(Book, related_name="shelf_items", on_delete=models.CASCADE)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "book"], name="bookstore_shelfitem_once")
        ]

    def __str__(self):
        return f"{self.book} on {self.owner}'s shelf"
