"""Two related models: enough to show a filtered publication that spans a foreign key."""

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
