"""Session resumption (Meteor 3.4, meteor/meteor#14051) and ``disconnect`` on a live server."""

import pytest
from django.db import connection

from bookstore.models import Author, Book
from ddp.testing.live import ServerProcess
from tests.resuming import ResumingClient, call, messages_until_result, metric, wait_metric

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def book(db):
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    return Book.objects.create(title="Hot Six", author=janet)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = ServerProcess().start()
    yield server
    server.stop()


def held(server):
    return metric(server, "ddp_held_sessions")


def subscribed(server):
    client = ResumingClient(server.ws_url)
    sub_id, messages = client.sub("AllBooks")
    assert messages[-1] == {"msg": "ready", "subs": [sub_id]}
    return client, sub_id


def registry_rows():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ddp_subscription")
        return cursor.fetchone()[0]


def test_a_dropped_client_resumes_and_gets_the_change_it_missed_and_nothing_again(server, book):
    client, sub_id = subscribed(server)
    session = client.session
    before = metric(server, "ddp_sessions_resumed_total")
    client.drop()
    wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
    rows = registry_rows()
    book.title = "Hot Six, second edition"
    book.save()
    wait_metric(server, "ddp_held_messages", lambda n: n == 1)  # queued, not yet sent

    assert client.reconnect()
    assert client.session == session
    # What Meteor's client sends at once on reconnect: the same sub again, a method.
    client.send({"msg": "sub", "id": sub_id, "name": "AllBooks", "params": []})
    method_id = call(client, "test.echo", "after")
    messages = messages_until_result(client, method_id)
    assert messages == [
        {
            "msg": "changed",
            "collection": "bookstore.book",
            "id": str(book.pk),
            "fields": {"title": "Hot Six, second edition"},
        },
        {"msg": "result", "id": method_id, "result": ["after"]},
    ]
    assert client.collections["bookstore.book"][str(book.pk)]["title"] == "Hot Six, second edition"
    assert held(server) == 0
    assert registry_rows() == rows  # the subscription stayed registered throughout
    assert metric(server, "ddp_sessions_resumed_total") == before + 1

    # Live changes go on reaching the resumed session.
    book.title = "Hot Six"
    book.save()
    client.wait_for(lambda c: c.collections["bookstore.book"][str(book.pk)]["title"] == "Hot Six")
    client.leave()


def test_a_second_drop_resumes_again(server, book):
    client, _ = subscribed(server)
    session = client.session
    for _ in range(2):
        client.drop()
        wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
        assert client.reconnect()
        assert client.session == session
    method_id = call(client, "test.echo", 1)
    assert messages_until_result(client, method_id)[-1]["result"] == [1]
    client.leave()


def test_a_count_that_does_not_match_gets_a_new_session(server, book):
    client, _ = subscribed(server)
    old = client.session
    client.drop()
    wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
    assert not client.reconnect(received=client.received - 1)
    assert client.session != old
    assert held(server) == 0  # the old one is torn down, not kept for its grace period
    # The new session is empty: the client subscribes again and gets everything.
    sub_id, messages = client.sub("AllBooks")
    assert str(book.pk) in {m["id"] for m in messages if m["msg"] == "added"}
    client.leave()


def test_after_disconnect_the_session_is_never_resumed(server, book):
    client, _ = subscribed(server)
    old = client.session
    client.send({"msg": "disconnect"})
    method_id = call(client, "test.echo", "still here")
    # Not answered with an error: the connection goes on until the client closes it.
    assert messages_until_result(client, method_id) == [
        {"msg": "result", "id": method_id, "result": ["still here"]}
    ]
    client.drop()
    wait_metric(server, "ddp_connections", lambda n: n == 0)
    assert held(server) == 0
    assert not client.reconnect()
    assert client.session != old
    client.leave()


def test_a_client_without_receivedcount_gets_a_new_session(server, book):
    # simpleddp and other clients before Meteor 3.4 send the session alone.
    client, _ = subscribed(server)
    old = client.session
    client.drop()
    wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
    client.ws = __import__("websocket").create_connection(server.ws_url, timeout=10)
    client.send({"msg": "connect", "version": "1", "support": ["1"], "session": old})
    reply = client.recv()
    assert reply["msg"] == "connected" and reply["session"] != old
    client.leave()


def test_after_the_grace_period_a_new_session_and_the_old_one_torn_down(book):
    with ServerProcess(ddp={"DISCONNECT_GRACE_PERIOD": 0.2}) as server:
        client, _ = subscribed(server)
        old = client.session
        rows = registry_rows()
        client.drop()
        wait_metric(server, "ddp_held_sessions_ended_total", lambda n: n == 1)
        assert held(server) == 0
        assert registry_rows() == rows - 1  # its subscription left the registry
        assert not client.reconnect()
        assert client.session != old
        client.leave()


def test_with_resumption_turned_off_no_session_is_held(book):
    with ServerProcess(ddp={"DISCONNECT_GRACE_PERIOD": 0}) as server:
        client, _ = subscribed(server)
        old = client.session
        client.drop()
        wait_metric(server, "ddp_connections", lambda n: n == 0)
        assert held(server) == 0
        assert not client.reconnect()
        assert client.session != old
        client.leave()


def test_a_full_queue_ends_the_hold(book):
    with ServerProcess(ddp={"MAX_MESSAGE_QUEUE_LENGTH": 2}) as server:
        client, _ = subscribed(server)
        old = client.session
        client.drop()
        wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
        for n in range(3):
            book.title = f"Edition {n}"
            book.save()
        wait_metric(server, "ddp_held_sessions_ended_total", lambda n: n == 1)
        assert held(server) == 0
        assert not client.reconnect()
        assert client.session != old
        client.leave()


def test_on_another_server_a_new_session(server, book):
    client, _ = subscribed(server)
    old = client.session
    client.drop()
    wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
    with ServerProcess() as other:
        assert not client.reconnect(url=other.ws_url)
        assert client.session != old
        client.leave()
    # The first server still holds the session until its grace period ends.
    assert held(server) == 1
