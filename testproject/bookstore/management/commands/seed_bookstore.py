"""Fill the example's database with a few authors and books, and a demo user with a shelf,
once however often it runs."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from bookstore.models import Author, Book, ShelfItem

AUTHORS = [
    ("Janet Evanovich", "janet@evanovich.com", ["One for the Money", "Two for the Dough"]),
    ("Terry Pratchett", "terry.pratchett@example.com", ["Guards! Guards!", "Small Gods"]),
    ("Ursula K. Le Guin", "ursula.leguin@example.com", ["A Wizard of Earthsea"]),
]

# Who logs in on the live page at / to see a private shelf. The password is public on
# purpose, as the example's SECRET_KEY is; the user is no staff member.
DEMO_USER = ("reader", "reader")
# (author's email, book title, note) on the demo user's shelf.
SHELF = [
    ("terry.pratchett@example.com", "Small Gods", "Lent to a friend"),
    ("ursula.leguin@example.com", "A Wizard of Earthsea", ""),
]


class Command(BaseCommand):
    help = "Create the example's authors, books and demo user that do not exist yet."

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
            created += self.seed_demo_user()
        self.stdout.write(self.style.SUCCESS(f"{created} rows created."))

    def seed_demo_user(self):
        """The demo user and their shelf; an existing user keeps the password they have."""
        created = 0
        username, password = DEMO_USER
        users = get_user_model()
        user = users.objects.filter(**{users.USERNAME_FIELD: username}).first()
        if user is None:
            user = users.objects.create_user(username, password=password)
            created += 1
            self.stdout.write(f"created user   {username} (password: {password})")
        else:
            self.stdout.write(f"exists  user   {username}")
        for email, title, note in SHELF:
            book = Book.objects.filter(title=title, author__email=email).first()
            if book is None:  # renamed or deleted since the last run
                continue
            _, new = ShelfItem.objects.get_or_create(owner=user, book=book, defaults={"note": note})
            created += new
            self.stdout.write(f"{'created' if new else 'exists '} shelf  {title} ({username})")
        return created
