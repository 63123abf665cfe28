"""Changes made through the ORM anywhere reach the right clients on every ddpserver.

The signals path: what the writer pays, ``notify_changed``, the receivers' cost. So the
servers and this process say DDP["CAPTURE"] = "signals": with "auto" a server would read
the database's changes, writers here would leave theirs to it, and a change announced by
the reader could hide one the writer failed to send. tests/replication covers that path.
"""

import os
import signal
import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from bookstore.models import Author, Book
from ddp.bus import signing
from ddp.testing import WebSocketDDPClient
from ddp.testing.database import database_url
from tests.live import SIGNALS, ServerProcess, wait_until
from tests.testapp.models import Article

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("capture_signals")]

JANET = "janet@evanovich.com"


@pytest.fixture(scope="module")
def servers(start_server):
    """Three ddpserver processes on the one test database."""
    return [start_server(ddp=SIGNALS) for _ in range(3)]


@pytest.fixture
def authors():
    return (
        Author.objects.create(name="Janet", email=JANET),
        Author.objects.create(name="Lee", email="lee@child.com"),
    )


def books_of(client):
    return client.collection("bookstore.book")


def test_create_update_move_delete_reach_exactly_the_right_clients(servers, authors):
    janet, lee = authors
    everyone, janets = [], []
    for server in servers:
        all_client = WebSocketDDPClient(server.ws_url)
        all_client.subscribe("AllBooks")
        janet_client = WebSocketDDPClient(server.ws_url)
        janet_client.subscribe("BooksByAuthorEmail", JANET)
        everyone.append(all_client)
        janets.append(janet_client)

    book = Book.objects.create(title="Hot Six", author=janet)
    pk = str(book.pk)
    for client in everyone + janets:
        client.wait_for(lambda c: pk in books_of(c))
        assert books_of(client)[pk] == {"title": "Hot Six", "author_id": str(janet.pk)}
        assert client.messages[-1] == {
            "msg": "added",
            "collection": "bookstore.book",
            "id": pk,
            "fields": {"title": "Hot Six", "author_id": str(janet.pk)},
        }

    book.title = "Seven Up"
    book.save()
    for client in everyone + janets:
        client.wait_for(lambda c: books_of(c)[pk]["title"] == "Seven Up")
        # Only the field that changed travels.
        assert client.messages[-1] == {
            "msg": "changed",
            "collection": "bookstore.book",
            "id": pk,
            "fields": {"title": "Seven Up"},
        }

    book.author = lee  # moves out of BooksByAuthorEmail(janet)
    book.save()
    for client in janets:
        client.wait_for(lambda c: pk not in books_of(c))
        assert client.messages[-1] == {"msg": "removed", "collection": "bookstore.book", "id": pk}
    for client in everyone:
        client.wait_for(lambda c: books_of(c)[pk]["author_id"] == str(lee.pk))

    book.author = janet  # and back in
    book.save()
    for client in janets:
        client.wait_for(lambda c: pk in books_of(c))
        assert client.messages[-1]["msg"] == "added"

    book.delete()
    for client in everyone + janets:
        client.wait_for(lambda c: pk not in books_of(c))
        assert client.messages[-1] == {"msg": "removed", "collection": "bookstore.book", "id": pk}
    for client in everyone + janets:
        client.close()


def marker_arrives_next(client, author):
    """Commit a change that must arrive, and check it is the first thing that does."""
    before = len(client.messages)
    marker = Book.objects.create(title="marker", author=author)
    client.wait_for(lambda c: str(marker.pk) in books_of(c))
    return client.messages[before:]


def test_rollbacks_send_nothing_and_commits_exactly_one_message(servers, authors):
    janet = authors[0]
    client = WebSocketDDPClient(servers[0].ws_url)
    client.subscribe("AllBooks")

    with pytest.raises(RuntimeError):
        with transaction.atomic():
            Book.objects.create(title="rolled back", author=janet)
            raise RuntimeError
    with transaction.atomic():
        kept = Book.objects.create(title="kept", author=janet)
        try:
            with transaction.atomic():
                Book.objects.create(title="savepoint rolled back", author=janet)
                kept.title = "kept, renamed in a rolled back savepoint"
                kept.save()
                raise RuntimeError
        except RuntimeError:
            pass
    arrived = marker_arrives_next(client, janet)
    titles = [m["fields"]["title"] for m in arrived if m["msg"] in ("added", "changed")]
    assert titles == ["kept", "marker"]
    client.close()


def test_one_megabyte_document_arrives_intact(servers):
    client = WebSocketDDPClient(servers[1].ws_url)
    client.subscribe("Articles")
    body = "ü" * (1024 * 1024)
    article = Article.objects.create(title="big", body=body)
    client.wait_for(lambda c: str(article.pk) in c.collection("testapp.article"))
    assert client.collection("testapp.article")[str(article.pk)]["body"] == body
    client.close()


def test_a_thousand_changes_arrive_complete_and_in_commit_order(servers, authors):
    clients = [WebSocketDDPClient(server.ws_url) for server in servers]
    for client in clients:
        client.subscribe("AllBooks")
    created = [str(Book.objects.create(title=f"b{n}", author=authors[0]).pk) for n in range(1000)]
    for client in clients:
        client.wait_for(lambda c: len(books_of(c)) == 1000, timeout=60)
        order = [
            m["id"]
            for m in client.messages
            if m["msg"] == "added" and m["collection"] == "bookstore.book"
        ]
        assert order == created
        client.close()


def writer_queries(author):
    """Statements of one save once the writer knows the registry: the first save after
    subscriptions were added also reads their rows (once, not per save)."""
    Book.objects.create(title="catching up", author=author)
    with CaptureQueriesContext(connection) as queries:
        Book.objects.create(title="counted", author=author)
    return [query["sql"] for query in queries]


def test_writer_queries_grow_with_nothing_subscribed(servers, authors):
    """Neither clients, servers nor distinct subscriptions add statements to a save."""
    janet = authors[0]
    clients = []
    counts = {}
    for total in (1, 10, 100):
        while len(clients) < total:
            client = WebSocketDDPClient(servers[len(clients) % 3].ws_url)
            client.subscribe("AllBooks")
            clients.append(client)
        counts[total] = writer_queries(janet)
    assert len(counts[1]) == len(counts[10]) == len(counts[100]), counts
    # Forty distinct subscriptions of a publication with a parameter: one statement still.
    for n in range(40):
        client = WebSocketDDPClient(servers[n % 3].ws_url)
        client.subscribe("BooksByAuthorEmail", JANET if n == 0 else f"reader{n}@example.com")
        clients.append(client)
    assert len(writer_queries(janet)) == len(counts[1])
    matching = [sql for sql in counts[1] if "m.template = " in sql]
    assert len(matching) == 1, counts[1]
    for client in clients:
        client.close()


def test_receivers_run_no_query_per_change(authors):
    env = {"DDP_TEST_COUNT_QUERIES": "1"}
    with ServerProcess(ddp={**SIGNALS, "SERVER_HEARTBEAT": 3600}, env=env) as server:
        client = WebSocketDDPClient(server.ws_url)
        client.subscribe("AllBooks")
        before, _ = client.method("test.queryCount")
        assert before["result"] > 0  # the counter sees the subscription's own queries
        books = [Book.objects.create(title=f"q{n}", author=authors[0]) for n in range(10)]
        for book in books:
            book.title += "!"
            book.save()
        client.wait_for(
            lambda c: all(
                books_of(c).get(str(b.pk), {}).get("title", "").endswith("!") for b in books
            )
        )
        after, _ = client.method("test.queryCount")
        assert after["result"] == before["result"]
        client.close()


def test_method_writes_reach_the_caller_before_updated(servers, authors):
    client = WebSocketDDPClient(servers[2].ws_url)
    client.subscribe("AllBooks")
    result, messages = client.method("bookstore.addBook", "From a method", JANET)
    kinds = [(m["msg"], m.get("id")) for m in messages]
    added = kinds.index(("added", result["result"]))
    updated = next(n for n, m in enumerate(messages) if m["msg"] == "updated")
    assert added < updated
    client.close()


def test_lost_listener_reconnects_and_clients_converge(authors):
    name = "ddp-listener-loss"
    url = database_url({**connection.settings_dict, "OPTIONS": {"application_name": name}})
    janet = authors[0]
    with ServerProcess(ddp=SIGNALS, env={"DATABASE_URL": url}) as server:
        client = WebSocketDDPClient(server.ws_url)
        client.subscribe("AllBooks")
        stop = threading.Event()

        def write():
            n = 0
            while not stop.is_set() and n < 400:
                book = Book.objects.create(title=f"w{n}", author=janet)
                if n % 3 == 0:
                    book.delete()
                elif n % 3 == 1:
                    Book.objects.filter(pk=book.pk).update(title=f"w{n} renamed")
                    Book.objects.get(pk=book.pk).save()
                n += 1
            connection.close()

        writer = threading.Thread(target=write)
        writer.start()
        client.wait_for(lambda c: len(books_of(c)) > 20)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND query LIKE 'LISTEN%%'",
                [name],
            )
            assert cursor.fetchall() == [(True,)]
        writer.join()

        def equal_to_database(c):
            wanted = {
                str(b.pk): {"title": b.title, "author_id": str(b.author_id)}
                for b in Book.objects.all()
            }
            return books_of(c) == wanted

        client.wait_for(equal_to_database, timeout=30)
        client.close()
    output = server.output()
    assert "Listener lost its connection" in output
    assert "Listener reconnected: re-running 1 sessions" in output


def servers_subscribed():
    """How many servers have a subscription in the registry."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT server_id) FROM ddp_match")
        return cursor.fetchone()[0]


def test_killed_server_stops_costing_the_writer(authors):
    janet = authors[0]
    server = ServerProcess(ddp={**SIGNALS, "SERVER_HEARTBEAT": 0.2}).start()
    client = WebSocketDDPClient(server.ws_url)
    client.subscribe("BooksByAuthorEmail", "killed@example.com")
    # Only this server's subscription costs the writer: the other tests' servers (the
    # module's) let go of theirs once their clients are gone, which takes a moment.
    wait_until(lambda: servers_subscribed() == 1, 30, what="other servers to let go")
    with override_settings(DDP={**SIGNALS, "SERVER_TIMEOUT": 1.0}):
        alive = writer_queries(janet)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(1.5)")
        dead = writer_queries(janet)
    assert len(dead) < len(alive), (dead, alive)


def test_bulk_writes_are_announced_with_notify_changed(servers, authors):
    import ddp

    janet = authors[0]
    client = WebSocketDDPClient(servers[0].ws_url)
    client.subscribe("AllBooks")
    made = Book.objects.bulk_create([Book(title=f"bulk{n}", author=janet) for n in range(3)])
    pks = [book.pk for book in made]
    with transaction.atomic():
        Book.objects.filter(pk__in=pks).update(title="bulk renamed")
        ddp.notify_changed(Book, pks)
    client.wait_for(lambda c: all(str(pk) in books_of(c) for pk in pks))
    assert {books_of(client)[str(pk)]["title"] for pk in pks} == {"bulk renamed"}
    with transaction.atomic():
        Book.objects.filter(pk=pks[0])._raw_delete(using="default")
        ddp.notify_changed(Book, [str(pks[0])])
    client.wait_for(lambda c: str(pks[0]) not in books_of(c))
    client.close()


def test_many_to_many_changes_update_the_id_lists(servers):
    from tests.testapp.models import Tag

    client = WebSocketDDPClient(servers[1].ws_url)
    client.subscribe("Articles")
    first, second = Article.objects.create(title="a1"), Article.objects.create(title="a2")
    tag = Tag.objects.create(name="t")
    articles = lambda c: c.collection("testapp.article")  # noqa: E731
    client.wait_for(lambda c: str(second.pk) in articles(c))
    first.tags.add(tag)
    client.wait_for(lambda c: articles(c)[str(first.pk)]["tag_ids"] == [str(tag.pk)])
    tag.article_set.add(second)  # from the other side
    client.wait_for(lambda c: articles(c)[str(second.pk)]["tag_ids"] == [str(tag.pk)])
    first.tags.clear()
    client.wait_for(lambda c: articles(c)[str(first.pk)]["tag_ids"] == [])
    client.close()


def test_many_first_subscribers_at_once_on_a_fresh_server(authors):
    """Each first subscriber to a collection asks the listener to LISTEN at the same time."""
    with ServerProcess(ddp=SIGNALS) as server:
        clients = [WebSocketDDPClient(server.ws_url) for _ in range(12)]
        for n, client in enumerate(clients):
            client.send({"msg": "sub", "id": f"s{n}", "name": "AllBooks", "params": []})
        for client in clients:
            reply = client.recv_until(lambda m: m["msg"] in ("ready", "nosub"))[-1]
            assert reply["msg"] == "ready", reply
            client.close()
    assert server.process.returncode == 0, server.output()
    assert "Traceback" not in server.output()


def test_hostile_notifications_do_not_stop_live_changes(authors):
    """Signed, as only a holder of SECRET_KEY could send them (a writer's bug, say): the
    decoder must survive them too (unsigned ones never reach it: test_signed_live.py)."""
    with ServerProcess(ddp=SIGNALS) as server:
        client = WebSocketDDPClient(server.ws_url)
        client.subscribe("AllBooks")
        # A well-formed event whose fields nest 900 deep: decoding it by recursion
        # once ended the listener's thread, and live changes with it, for good.
        deep = '{"a":' + "[" * 900 + "]" * 900 + "}"
        hostile = [
            "#broken",
            "#e:9:2:x",
            "not json",
            '{"v": 1, "c": ["a"]}',
            "{}",
            '{"v":1,"e":"x","c":"bookstore.book","i":"1","f":null,"s":[],"r":"9"}',
            '{"v":1,"e":"y","c":"bookstore.book","i":"1","f":' + deep + ',"s":[],"r":9}',
        ]
        with connection.cursor() as cursor:
            signing.notify(cursor, "ddp_bookstore.book", hostile)
        book = Book.objects.create(title="after the noise", author=authors[0])
        client.wait_for(lambda c: str(book.pk) in books_of(c))
        client.close()
    output = server.output()
    assert output.count("Ignoring a malformed payload") == 7
    assert "Traceback" not in output
