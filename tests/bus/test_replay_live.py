"""A captured change stream, replayed, reaches a ddpserver's clients as the original did.

A replayed event carries what its writer saw: the keys of the distinct subscriptions it
matched and the registry id it could see. So these tests replay to the server the capture
was made on, while the first client keeps its subscription live: a second client with the
same publication and parameters shares that subscription's key and registry row.

A capture records what writers send: the server and this process say DDP["CAPTURE"] =
"signals", so that this process's writes are what the capture records (with "auto" the
server would read them from the database and announce them itself, signed with its key).
"""

import io
import json
import signal
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import override_settings

from bookstore.models import Author, Book
from ddp.bus import signing
from ddp.bus.recording import Record, read
from ddp.testing import WebSocketDDPClient
from tests.live import SIGNALS, ServerProcess, wait_until
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("capture_signals")]


@pytest.fixture(scope="module")
def server(start_server):
    return start_server(ddp=SIGNALS)


def _ctrl_c_stops_it():
    """In the child: SIGINT's default, as in a terminal. A suite started in the background
    has SIGINT ignored (bash does that to ``&`` jobs), the child would inherit it, and
    the capture the test stops with SIGINT would never stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Capture:
    """``manage.py ddp_capture`` in a subprocess, as an operator runs it next to servers."""

    def __init__(self, path, *args):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "ddp_capture", str(path), *args],
            env=ServerProcess().environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_ctrl_c_stops_it,
        )
        first = self.process.stdout.readline()
        assert first.startswith("Listening on "), first + self.process.stderr.read()

    def wait(self, timeout=30):
        """Its exit code and the rest of its output (stdout, stderr)."""
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


def book_messages(client, pk):
    return [m for m in client.messages if m.get("collection") == "bookstore.book" and m["id"] == pk]


def replay(path, *args):
    out = io.StringIO()
    call_command("ddp_replay", str(path), "--speed", "0", *args, stdout=out)
    return out.getvalue().splitlines()[-1]


def books_of(client):
    return client.collection("bookstore.book")


def records_on(path, channel):
    """The complete records of ``channel`` in a capture file still being written."""
    with open(path, "rb") as stream:
        return [r for r in read(stream) if isinstance(r, Record) and r.channel == channel]


def test_replayed_changes_reach_clients_exactly_as_the_originals_did(server, tmp_path):
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    first = WebSocketDDPClient(server.ws_url)
    first.subscribe("AllBooks")
    path = tmp_path / "books.jsonl"
    capture = Capture(path)

    book = Book.objects.create(title="Hot Six", author=janet)
    pk = str(book.pk)
    book.title = "Seven Up"
    book.save()
    book.delete()
    first.wait_for(lambda c: len(book_messages(c, pk)) == 3)
    originals = book_messages(first, pk)
    assert [m["msg"] for m in originals] == ["added", "changed", "removed"]
    # Stopped with Ctrl-C once it has the three; other channels may carry other writers'.
    wait_until(lambda: len(records_on(path, "ddp_bookstore.book")) >= 3, what="three records")
    capture.process.send_signal(signal.SIGINT)
    code, out, err = capture.wait()
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].endswith(f" s to {path} (stopped by Ctrl-C).")
    assert len(records_on(path, "ddp_bookstore.book")) == 3

    # The book is gone from the database: a new subscriber starts without it.
    second = WebSocketDDPClient(server.ws_url)
    second.subscribe("AllBooks")
    assert pk not in second.collection("bookstore.book")
    before = len(first.messages)
    summary = replay(path, "--filter-channel", "ddp_bookstore.book")
    assert summary.startswith(f"Replayed 3 events (3 notifications) from {path} in ")
    second.wait_for(lambda c: len(book_messages(c, pk)) == 3)
    first.wait_for(lambda c: len(book_messages(c, pk)) == 6)
    assert book_messages(second, pk) == originals
    # The first client gets the same again, and nothing else.
    assert [m for m in first.messages[before:] if m["msg"] != "ping"] == originals
    first.close()
    second.close()


def test_a_chunked_event_is_replayed_from_its_original_chunks(server, tmp_path):
    first = WebSocketDDPClient(server.ws_url)
    first.subscribe("Articles")
    path = tmp_path / "article.jsonl"
    capture = Capture(path, "--count", "1")
    body = "é" * 30_000  # 180,000 bytes once escaped: about two dozen chunks
    article = Article.objects.create(title="big", body=body)
    pk = str(article.pk)
    first.wait_for(lambda c: pk in c.collection("testapp.article"))
    code, out, err = capture.wait()
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith("Captured 1 event in ")
    [record] = records_on(path, "ddp_testapp.article")
    assert len(record.chunks) > 20
    assert json.loads(record.payload)["f"]["body"] == body

    # Gone without a notification, so only the replay can bring it back.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Article._meta.db_table} WHERE id = %s", [article.pk])
    second = WebSocketDDPClient(server.ws_url)
    second.subscribe("Articles")
    assert pk not in second.collection("testapp.article")
    assert replay(path).startswith(f"Replayed 1 event ({len(record.chunks)} notifications) ")
    second.wait_for(lambda c: pk in c.collection("testapp.article"))
    assert second.collection("testapp.article")[pk] == first.collection("testapp.article")[pk]
    assert second.collection("testapp.article")[pk]["body"] == body
    first.close()
    second.close()


def test_a_capture_signed_under_another_key_is_replayed_under_this_one(server, tmp_path):
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    first = WebSocketDDPClient(server.ws_url)
    first.subscribe("AllBooks")
    path = tmp_path / "elsewhere.jsonl"
    capture = Capture(path)
    # Written by a process with another SECRET_KEY: this server refuses its change...
    with override_settings(SECRET_KEY="another machine's key"):
        other = Book.objects.create(title="From elsewhere", author=janet)
    pk = str(other.pk)
    after = Book.objects.create(title="From here", author=janet)
    first.wait_for(lambda c: str(after.pk) in books_of(c))
    assert pk not in books_of(first)
    wait_until(lambda: len(records_on(path, "ddp_bookstore.book")) >= 2, what="two records")
    capture.process.send_signal(signal.SIGINT)
    assert capture.wait()[0] == 0
    # ...and the capture holds it as it was sent, tag and all.
    record = records_on(path, "ddp_bookstore.book")[0]
    with override_settings(SECRET_KEY="another machine's key"):
        assert record.tags == (signing.tag("ddp_bookstore.book", record.payload),)

    # Replayed with this project's settings, it is signed with this key and delivered.
    assert replay(path, "--filter-channel", "ddp_bookstore.book").startswith("Replayed 2 events")
    first.wait_for(lambda c: pk in books_of(c))
    assert books_of(first)[pk]["title"] == "From elsewhere"
    first.close()
