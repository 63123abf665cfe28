"""A Node client speaking Meteor 3.4's session resumption against a real ``ddpserver``.

``tests/node/resuming_client.js`` subscribes, cuts its TCP connection, and (once this test
has changed a book meanwhile) reconnects with ``session`` and ``receivedCount``, sending its
``sub`` again and a method call at once, as Meteor's client does.
"""

import json
import subprocess
import tempfile

import pytest

from bookstore.models import Author, Book
from ddp.testing.live import ServerProcess
from tests.interop.test_node_clients import NODE_DIR, node_or_fail
from tests.live import wait_metric

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_node_client_resumes_and_gets_only_what_it_missed():
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    book = Book.objects.create(title="Hot Six", author=janet)
    with ServerProcess() as server, tempfile.TemporaryFile() as stderr:
        client = subprocess.Popen(
            [node_or_fail(), "resuming_client.js", str(server.port)],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert client.stdout.readline() == "DROPPED\n", stderr.seek(0) or stderr.read()
            wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
            book.title = "Hot Six, resumed"
            book.save()
            wait_metric(server, "ddp_held_messages", lambda n: n == 1)
            client.stdin.write("go\n")
            client.stdin.flush()
            output = json.loads(client.stdout.readline())
            assert client.wait(60) == 0
        finally:
            client.kill()
    assert output["connected"] == {"msg": "connected", "session": output["session"]}
    assert output["messages"] == [
        {
            "msg": "changed",
            "collection": "bookstore.book",
            "id": str(book.pk),
            "fields": {"title": "Hot Six, resumed"},
        },
        {"msg": "result", "id": "1", "result": ["back"]},
    ]
