"""Fill the example's database with a few authors and books, once however often it runs."""

from django.core.management.base import BaseCommand
from django.db import transaction

from bookstore.models import Author, Book

AUTHORS = [
    ("Janet Evanovich", "janet@evanovich.com", ["One for the Money", "Two for the Dough"]),
    ("Terry Pratchett", "terry.pratchett@example.com", ["Guards! Guards!", "Small Gods"]),
    ("Ursula K. Le Guin", "ursula.leguin@example.com", ["A Wizard of Earthsea"]),
]


class Command(BaseCommand):
    help = "Create the example's authors and books that do not exist yet."

    def handle(self, *args, **options):
        created = 0
        with transaction.atomic():
            for name, email, titles in AUTHORS:
                # Matched by email, so an author renamed since the last run is not duplicated.
                author, new = Author.objects.get_or_create(email=email, defaults={"name": name})
                created += new
                self.stdout.write(f"{'created' if new else 'exists '} author {author} <{email}>")
                for title in titles:
                    book, new = Book.objects.get_or_create(title=title, author=author)
                    created += new
                    self.stdout.write(f"{'created' if new else 'exists '} book   {book}")
        self.stdout.write(self.style.SUCCESS(f"{created} rows created."))
