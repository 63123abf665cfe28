"""On a real ddpserver: a role that can NOTIFY but holds no SECRET_KEY changes nothing.

Each forgery is sent by a plain psycopg2 connection, as another database role would send
it, built from a genuine notification heard with LISTEN, which any role may do.
"""

import json
import select
import time
import urllib.request

import psycopg2
import psycopg2.extensions
import pytest
from django.contrib.auth.models import User
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from bookstore.models import Author, Book
from ddp.accounts.models import LoginToken
from ddp.accounts.tokens import hash_token
from ddp.bus import payload, signing
from ddp.testing import ServerProcess, WebSocketDDPClient
from tests.testapp.models import Shelf

pytestmark = pytest.mark.django_db(transaction=True)

BOOKS = "ddp_bookstore.book"


class Intruder:
    """Another role's connection: it may LISTEN and NOTIFY, and knows no SECRET_KEY."""

    def __init__(self, *channels):
        self.conn = psycopg2.connect(**connection.get_connection_params())
        self.conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        for name in channels:
            self.execute(f"LISTEN {psycopg2.extensions.quote_ident(name, self.conn)}")

    def execute(self, sql, params=()):
        with self.conn.cursor() as cursor:
            cursor.execute(sql, params)

    def notify(self, channel, text):
        self.execute("SELECT pg_notify(%s, %s)", [channel, text])

    def hear(self, timeout=10):
        """The next notification heard, as sent."""
        deadline = time.monotonic() + timeout
        while not self.conn.notifies and time.monotonic() < deadline:
            select.select([self.conn], [], [], 0.2)
            self.conn.poll()
        return self.conn.notifies.pop(0)

    def close(self):
        self.conn.close()


def refused(server):
    """The server's ``ddp_listener_refused_payloads_total``."""
    text = urllib.request.urlopen(server.url + "metrics", timeout=10).read().decode()
    [value] = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ddp_listener_refused_payloads_total"
    ]
    return value


def test_forged_changes_reach_no_client_and_are_counted():
    author = Author.objects.create(name="Janet", email="janet@evanovich.com")
    intruder = Intruder(BOOKS)
    with ServerProcess() as server:
        client = WebSocketDDPClient(server.ws_url)
        client.subscribe("AllBooks")
        genuine = Book.objects.create(title="Hot Six", author=author)
        client.assert_added("bookstore.book", str(genuine.pk), title="Hot Six")
        tag, text = payload.untag(intruder.hear().payload)
        assert tag is not None
        # The heard event, made to add a book that does not exist, for the same subscribers.
        forged = {**json.loads(text), "e": "forged", "i": "999999", "f": {"title": "Forged"}}
        forged = json.dumps(forged)
        intruder.notify(BOOKS, forged)  # no tag
        intruder.notify(BOOKS, payload.tagged(tag, forged))  # the genuine event's tag
        # A tag that is right, but for another channel.
        intruder.notify(BOOKS, signing.sign("ddp_bookstore.author", forged))
        after = Book.objects.create(title="Seven Up", author=author)
        client.assert_added("bookstore.book", str(after.pk), title="Seven Up")
        assert "999999" not in client.collection("bookstore.book")
        assert refused(server) == 3
        client.close()
    intruder.close()
    output = server.output()
    assert output.count("Refused 1 notification(s) without a valid signature") == 1
    assert "Forged" not in output and "Traceback" not in output


def test_a_forged_logout_notice_logs_no_one_out():
    alice = User.objects.create_user("alice", password="pw")
    Shelf.objects.create(owner=alice, name="hers")
    intruder = Intruder()
    with ServerProcess() as server:
        client = WebSocketDDPClient(server.ws_url)
        client.subscribe("MyShelves")
        token = client.call("login", {"user": {"username": "alice"}, "password": "pw"})["token"]
        assert len(client.collection("testapp.shelf")) == 1
        token_hash = hash_token(token)
        intruder.notify("ddp_logout", token_hash)
        intruder.notify("ddp_logout", signing.sign("ddp_fence_x", token_hash))
        # Committed after the forgeries, so heard after them: they have been handled.
        second = Shelf.objects.create(owner=alice, name="also hers")
        client.assert_added("testapp.shelf", str(second.pk), name="also hers")
        assert client.call("test.echo", "still here") == ["still here"]
        assert refused(server) == 2
        # A genuine revocation still closes the connection.
        LoginToken.objects.filter(hashed_token=token_hash).delete()
        with pytest.raises(AssertionError, match="closed the connection"):
            client.assert_added("never", "sent")
    intruder.close()
    assert "Traceback" not in server.output()
