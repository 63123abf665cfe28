"""A third-party DDP client, npm's ``ddp`` (node-ddp 0.12.1), against a real ``ddpserver``.

The other live tests use this project's own clients, which could share a misreading of the
protocol with the server. ``tests/node/allbooks.js`` subscribes to ``AllBooks`` with
node-ddp, calls ``bookstore.addBook`` once the subscription is ready, and prints what
node-ddp's own collections hold once the method's result and ``updated`` are both in.
"""

import io
import json
import shutil
import subprocess

import pytest
from django.core.management import call_command

from bookstore.management.commands.seed_bookstore import AUTHORS
from bookstore.models import Author, Book
from tests.live import ROOT

pytestmark = [pytest.mark.django_db(transaction=True)]

NODE_DIR = ROOT / "tests" / "node"
#: A bound for a hung client only: allbooks.js gives up by itself after 20 s.
CLIENT_TIMEOUT = 120


def run_node_client(port):
    """Run allbooks.js against ``port``; return the JSON it printed."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node not found: the interoperability tests run the npm DDP client `ddp` under "
            "Node.js. Install Node.js 20 or later (with npm) and run python runtests.py."
        )
    if not (NODE_DIR / "node_modules" / "ddp").is_dir():
        pytest.fail(
            f"{NODE_DIR / 'node_modules'} has no `ddp`: run `npm ci` in {NODE_DIR}, or run "
            "the tests with python runtests.py, which does it."
        )
    result = subprocess.run(
        [node, "allbooks.js", str(port)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
    )
    assert result.returncode == 0, f"allbooks.js failed:\n{result.stderr}{result.stdout}"
    lines = result.stdout.splitlines()
    assert len(lines) == 1, f"expected one line of JSON, got:\n{result.stdout}"
    return json.loads(lines[0])


def test_node_ddp_subscribes_and_calls_a_method(ddp_live_server):
    call_command("seed_bookstore", stdout=io.StringIO())

    output = run_node_client(ddp_live_server.port)
    collections = output["collections"]

    # The method committed, and the id it returned is the new row's.
    added = Book.objects.get(pk=int(output["added"]))
    assert (added.title, added.author.email) == ("Node Book", "node@example.com")

    # Exactly what AllBooks publishes reached node-ddp's collections: the seed through the
    # subscription, and the method's book and new author live, before its `updated`.
    assert collections == {
        "bookstore.author": {
            str(a.pk): {"name": a.name, "email": a.email} for a in Author.objects.all()
        },
        "bookstore.book": {
            str(b.pk): {"title": b.title, "author_id": str(b.author_id)} for b in Book.objects.all()
        },
    }

    # The same, checked against the seed itself: every author, and each book under its author.
    authors = collections["bookstore.author"]
    by_email = {doc["email"]: author_id for author_id, doc in authors.items()}
    expected = {(name, email) for name, email, _ in AUTHORS} | {("node", "node@example.com")}
    assert {(doc["name"], doc["email"]) for doc in authors.values()} == expected
    titles = {}
    for book in collections["bookstore.book"].values():
        titles.setdefault(book["author_id"], set()).add(book["title"])
    assert titles == {
        **{by_email[email]: set(seeded) for _, email, seeded in AUTHORS},
        by_email["node@example.com"]: {"Node Book"},
    }
    assert (
        collections["bookstore.book"][output["added"]]["author_id"] == by_email["node@example.com"]
    )
