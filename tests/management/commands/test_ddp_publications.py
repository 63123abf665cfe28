"""``manage.py ddp_publications``: the listing against golden files, ``--check``, one publication.

The golden files in ``golden/`` here are the command's real output for :func:`example`. After
an intended change of the output, rewrite them with ``DDP_UPDATE_GOLDEN=1`` and read the diff.
Every test but one runs the command on a registry of its own, so the project's ``API`` (which
other apps keep adding to) changes neither the goldens nor the checks.
"""

import json
import os
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import bookstore.ddp
from bookstore.models import Author, Book
from ddp.api import Collection, Publication, Registry
from ddp.management.commands.ddp_publications import Command
from tests.testapp.models import Article, Tag

GOLDEN = Path(__file__).resolve().parent / "golden"

pytestmark = pytest.mark.django_db


# The classes below are part of the goldens (their lines are): add new ones after them.


class LibraryItems(Collection):
    model = Book
    name = "library.items"
    fields = ("title",)


class BooksAsLibrary(Publication):
    """Routed with a pair, and filtered: its SQL has a parameter."""

    queries = [(Book.objects.filter(title__startswith="A"), "library.items")]


class MyAuthor(Publication):
    """Reads the connection's user, so the listing says it depends on the user."""

    def get_queries(self):
        return [Author.objects.filter(email=self.user.get_username())]


class Nothing(Publication):
    """Django runs no query for ``none()``: there is no SQL to show."""

    queries = [Book.objects.none()]


def shelf(this, *titles, limit=10):
    return limit


def example():
    """The README's bookstore, plus one of each case the listing shows differently."""
    registry = Registry()
    registry.register(
        [
            bookstore.ddp.Book,
            bookstore.ddp.Author,
            bookstore.ddp.AllBooks,
            bookstore.ddp.BooksByAuthorEmail,
            LibraryItems,
            BooksAsLibrary,
            MyAuthor,
            Nothing,
        ]
    )
    registry.method("bookstore.addBook")(bookstore.ddp.add_book)
    registry.method("bookstore.renameBook")(bookstore.ddp.rename_book)
    registry.method("test.shelf")(shelf)
    return registry


def command_for(registry):
    command = Command()
    command.registry = registry
    return command


def run(registry, *args):
    """``(stdout, stderr)`` of the command run on ``registry``."""
    stdout, stderr = StringIO(), StringIO()
    call_command(command_for(registry), *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def failed_check(registry):
    """The stderr lines of a ``--check`` that must fail, after checking how it fails."""
    stderr = StringIO()
    with pytest.raises(CommandError) as info:
        call_command(command_for(registry), "--check", stdout=StringIO(), stderr=stderr)
    lines = stderr.getvalue().splitlines()
    assert info.value.returncode == 1
    assert str(info.value) == f"{len(lines)} problem{'s' if len(lines) > 1 else ''} found."
    return lines


def assert_golden(name, text):
    path = GOLDEN / name
    if os.environ.get("DDP_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_table_listing_matches_golden():
    stdout, _ = run(example())
    assert_golden("ddp_publications.txt", stdout)


def test_json_listing_matches_golden():
    stdout, _ = run(example(), "--format", "json")
    assert_golden("ddp_publications.json", stdout)
    assert json.loads(stdout)["version"] == 1


def test_one_publication_shows_its_sql():
    stdout, _ = run(example(), "--publication", "BooksAsLibrary")
    assert_golden("ddp_publications_BooksAsLibrary.txt", stdout)


def test_one_publication_as_json():
    stdout, _ = run(example(), "--publication", "AllBooks", "--format", "json")
    publication = json.loads(stdout)["publication"]
    assert [q["model"] for q in publication["queries"]] == ["bookstore.Author", "bookstore.Book"]
    assert publication["queries"][1]["sql"].startswith('SELECT "bookstore_book"."id"')


def test_a_publication_with_parameters_is_not_run():
    stdout, _ = run(example(), "--publication", "BooksByAuthorEmail")
    assert "(depends on parameters)" in stdout
    assert "SELECT" not in stdout


def test_unknown_publication_names_the_known_ones():
    registry = Registry()
    with pytest.raises(CommandError) as info:
        run(registry, "--publication", "Nope")
    assert str(info.value) == (
        "Unknown publication 'Nope'. "
        "Known: meteor.loginServiceConfiguration, meteor_autoupdate_clientVersions"
    )
    assert info.value.returncode == 1


MATCHING = "Matching (how writers find the subscriptions a saved row is in):"


def test_check_passes_on_the_example_and_says_how_each_publication_is_matched():
    stdout, stderr = run(example(), "--check")
    assert stdout.splitlines() == [
        "Not run, as they take parameters: BooksByAuthorEmail",
        MATCHING,
        "  AllBooks: bookstore.author: multiplexed; bookstore.book: multiplexed",
        "  BooksAsLibrary: library.items: multiplexed",
        "  BooksByAuthorEmail: takes parameters: decided at each subscription; none is live now",
        "  MyAuthor: bookstore.author: multiplexed",
        "  Nothing: bookstore.book: holds no row",
        "No problems.",
    ]
    assert stderr == ""


def test_check_says_which_publications_are_matched_one_by_one_and_why():
    registry = Registry()

    class Extra(Publication):
        queries = [Book.objects.extra(where=["title <> ''"])]

    class Blobs(Publication):
        queries = [Article.objects.filter(blob=b"x")]

    class Articles(Collection):
        model = Article

    registry.register([bookstore.ddp.Book, Articles, Extra, Blobs])
    stdout, _ = run(registry, "--check")
    assert stdout.splitlines()[1:3] == [
        "  Blobs: testapp.article: one by one (a parameter of type Binary)",
        "  Extra: bookstore.book: one by one (extra() or raw SQL)",
    ]


def test_check_reports_an_unregistered_collection():
    registry = Registry()

    class Routed(Publication):
        queries = [(Book.objects.all(), "library.items")]

    registry.register(Routed)
    assert failed_check(registry) == [
        "PROBLEM: Routed: collection 'library.items' is not registered"
    ]


def test_check_reports_a_model_no_collection_publishes():
    registry = Registry()

    class Tags(Publication):
        queries = [Tag.objects.all()]

    registry.register(Tags)
    assert failed_check(registry) == ["PROBLEM: Tags: no collection publishes testapp.Tag"]


def test_check_reports_rows_routed_to_another_models_collection():
    registry = Registry()

    class Tags(Publication):
        queries = [(Tag.objects.all(), "library.items")]

    registry.register([LibraryItems, Tags])
    assert failed_check(registry) == [
        "PROBLEM: Tags: testapp.Tag rows go to 'library.items', which publishes bookstore.Book"
    ]


def test_check_reports_a_name_registered_twice():
    registry = Registry()

    class First(Publication):
        name = "Books"
        queries = []

    class Second(Publication):
        name = "Books"
        queries = []

    registry.register([First, Second])
    [line] = failed_check(registry)
    places = re.fullmatch(
        r"PROBLEM: Books: registered 2 times \((\S+), (\S+)\); only the last is served", line
    )
    first, second = (place.split(":") for place in places.groups())
    assert first[0] == second[0] == "tests.management.commands.test_ddp_publications"
    assert int(first[1]) < int(second[1])


def test_replacing_a_builtin_is_not_a_duplicate():
    registry = Registry()

    class LoginServices(Publication):
        name = "meteor.loginServiceConfiguration"
        queries = []

    registry.register(LoginServices)
    stdout, _ = run(registry, "--check")
    assert (
        stdout
        == f"{MATCHING}\n  meteor.loginServiceConfiguration: publishes nothing\nNo problems.\n"
    )
    listing = json.loads(run(registry, "--format", "json")[0])
    replaced = {p["name"]: p["builtin"] for p in listing["publications"]}
    assert replaced == {
        "meteor.loginServiceConfiguration": False,
        "meteor_autoupdate_clientVersions": True,
    }


def test_registering_the_same_class_again_is_not_a_duplicate():
    registry = Registry()
    registry.register([bookstore.ddp.Book, Nothing, Nothing])
    stdout = f"{MATCHING}\n  Nothing: bookstore.book: holds no row\nNo problems.\n"
    assert run(registry, "--check") == (stdout, "")


def test_login_required_or_a_user_rel_makes_a_publication_depend_on_the_user():
    registry = Registry()

    class OwnBooks(Collection):
        model = Book
        user_rel = "author__email"

    class Mine(Publication):
        queries = [Book.objects.all()]

    class LoggedIn(Publication):
        login_required = True
        queries = []

    registry.register([OwnBooks, Mine, LoggedIn])
    listing = json.loads(run(registry, "--format", "json")[0])
    dependent = {p["name"]: p["user_dependent"] for p in listing["publications"]}
    assert dependent["Mine"] is dependent["LoggedIn"] is True


def test_check_reports_a_query_postgresql_cannot_plan():
    registry = Registry()

    class Articles(Collection):
        model = Article

    class Broken(Publication):
        queries = [Article.objects.extra(where=["no_such_column = 1"])]

    registry.register([Articles, Broken])
    assert failed_check(registry) == [
        "PROBLEM: Broken: EXPLAIN of the testapp.Article query failed: "
        'column "no_such_column" does not exist'
    ]


def test_check_reports_a_publication_that_raises_and_goes_on():
    registry = Registry()

    class Raising(Publication):
        def get_queries(self):
            raise RuntimeError("no\nsecond line")

    class Tags(Publication):
        queries = [Tag.objects.all()]

    registry.register([Raising, Tags])
    assert failed_check(registry) == [
        "PROBLEM: Raising: get_queries() raised RuntimeError: no",
        "PROBLEM: Tags: no collection publishes testapp.Tag",
    ]


def test_the_project_registry_is_the_default():
    stdout = StringIO()
    call_command("ddp_publications", "--format", "json", stdout=stdout)
    publications = {p["name"]: p for p in json.loads(stdout.getvalue())["publications"]}
    assert publications["AllBooks"]["defined_at"] == "bookstore.ddp:11"
    assert publications["BooksByAuthorEmail"]["params"] == ["author_email"]
    assert publications["meteor_autoupdate_clientVersions"]["builtin"] is True
