"""Session resumption (Meteor 3.4, meteor/meteor#14051) and ``disconnect`` on a live server."""

import http.client
import json
import socket

import pytest
import websocket
from django.db import connection

from bookstore.models import Author, Book
from ddp.testing.live import ServerProcess
from tests.live import metric, wait_metric
from tests.resuming import ResumingClient, call, messages_until_result

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def book(db):
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    return Book.objects.create(title="Hot Six", author=janet)


@pytest.fixture(scope="module")
def server(start_server):
    return start_server()


def held(server):
    return metric(server, "ddp_held_sessions")


def subscribed(server):
    client = ResumingClient(server.ws_url)
    sub_id, messages = client.sub("AllBooks")
    assert messages[-1] == {"msg": "ready", "subs": [sub_id]}
    return client, sub_id


def retitled_live(client, book, title):
    """Save ``book`` under ``title`` and wait until ``client`` has the change live."""
    book.title = title
    book.save()
    client.wait_for(lambda c: c.collection("bookstore.book")[str(book.pk)]["title"] == title)


def registry_rows():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ddp_subscription")
        return cursor.fetchone()[0]


def test_a_dropped_client_resumes_and_gets_the_change_it_missed_and_nothing_again(server, book):
    client, sub_id = subscribed(server)
    session = client.session_id
    before = metric(server, "ddp_sessions_resumed_total")
    client.drop()
    wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
    rows = registry_rows()
    book.title = "Hot Six, second edition"
    book.save()
    wait_metric(server, "ddp_held_messages", lambda n: n == 1)  # queued, not yet sent

    assert client.reconnect()
    assert client.session_id == session
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
    assert client.collection("bookstore.book")[str(book.pk)]["title"] == "Hot Six, second edition"
    assert held(server) == 0
    assert registry_rows() == rows  # the subscription stayed registered throughout
    assert metric(server, "ddp_sessions_resumed_total") == before + 1

    # Live changes go on reaching the resumed session.
    retitled_live(client, book, "Hot Six")
    client.leave()


def test_a_second_drop_resumes_again(server, book):
    client, _ = subscribed(server)
    session = client.session_id
    for _ in range(2):
        client.drop()
        wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
        assert client.reconnect()
        assert client.session_id == session
    method_id = call(client, "test.echo", 1)
    assert messages_until_result(client, method_id)[-1]["result"] == [1]
    client.leave()


def test_a_count_that_does_not_match_gets_a_new_session(server, book):
    client, _ = subscribed(server)
    old = client.session_id
    client.drop()
    wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
    assert not client.reconnect(received=client.received - 1)
    assert client.session_id != old
    assert held(server) == 0  # the old one is torn down, not kept for its grace period
    # The new session is empty: the client subscribes again and gets everything.
    sub_id, messages = client.sub("AllBooks")
    assert str(book.pk) in {m["id"] for m in messages if m["msg"] == "added"}
    client.leave()


def test_after_disconnect_the_session_is_never_resumed(server, book):
    client, _ = subscribed(server)
    old = client.session_id
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
    assert client.session_id != old
    client.leave()


def test_a_client_without_receivedcount_gets_a_new_session(server, book):
    # simpleddp and other clients before Meteor 3.4 send the session alone.
    client, _ = subscribed(server)
    old = client.session_id
    client.drop()
    wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
    client.reopen()
    client.send({"msg": "connect", "version": "1", "support": ["1"], "session": old})
    reply = client.recv()
    assert reply["msg"] == "connected" and reply["session"] != old
    # As Meteor does with a session it does not hand back: torn down now, not in 15 s.
    wait_metric(server, "ddp_held_sessions", lambda n: n == 0, timeout=5)
    client.leave()


def test_after_the_grace_period_a_new_session_and_the_old_one_torn_down(book):
    with ServerProcess(ddp={"DISCONNECT_GRACE_PERIOD": 0.2}) as server:
        client, _ = subscribed(server)
        old = client.session_id
        rows = registry_rows()
        client.drop()
        wait_metric(server, "ddp_held_sessions_ended_total", lambda n: n == 1)
        assert held(server) == 0
        assert registry_rows() == rows - 1  # its subscription left the registry
        assert not client.reconnect()
        assert client.session_id != old
        client.leave()


def test_with_resumption_turned_off_no_session_is_held(book):
    with ServerProcess(ddp={"DISCONNECT_GRACE_PERIOD": 0}) as server:
        client, _ = subscribed(server)
        old = client.session_id
        client.drop()
        wait_metric(server, "ddp_connections", lambda n: n == 0)
        assert held(server) == 0
        assert not client.reconnect()
        assert client.session_id != old
        client.leave()


def test_a_full_queue_ends_the_hold(book):
    # A grace period the test never reaches: only the full queue can end the hold.
    ddp = {"MAX_MESSAGE_QUEUE_LENGTH": 2, "DISCONNECT_GRACE_PERIOD": 600}
    with ServerProcess(ddp=ddp) as server:
        client, _ = subscribed(server)
        old = client.session_id
        client.drop()
        wait_metric(server, "ddp_held_sessions", lambda n: n == 1)
        # Three documents, three messages: database capture may fold changes to one
        # document read together into one message.
        for n in range(3):
            Book.objects.create(title=f"Edition {n}", author=book.author)
        wait_metric(server, "ddp_held_sessions_ended_total", lambda n: n == 1)
        assert held(server) == 0
        assert not client.reconnect()
        assert client.session_id != old
        client.leave()


def test_on_another_server_a_new_session(book):
    with ServerProcess() as first, ServerProcess() as other:
        client, _ = subscribed(first)
        old = client.session_id
        client.drop()
        wait_metric(first, "ddp_held_sessions", lambda n: n == 1)
        assert not client.reconnect(url=other.ws_url)
        assert client.session_id != old
        client.leave()
        # The first server still holds the session until its grace period ends.
        assert held(first) == 1


# -- over SockJS -----------------------------------------------------------------------


def sockjs_frames(text):
    """The DDP messages of one SockJS frame (none for ``o`` and ``h``)."""
    if not text.startswith("a"):
        return []
    return [json.loads(message) for message in json.loads(text[1:])]


def quoted(*messages):
    return json.dumps([json.dumps(message) for message in messages])


class SockJSWebSocket:
    """A SockJS websocket-transport client that counts what it receives, as Meteor's."""

    def __init__(self, server, session_id, resume=None, received=0):
        url = f"ws://127.0.0.1:{server.port}/sockjs/000/{session_id}/websocket"
        self.ws = websocket.create_connection(url, timeout=10)
        assert self.ws.recv() == "o"
        self.received = received
        connect = {"msg": "connect", "version": "1", "support": ["1"]}
        if resume is not None:
            connect.update(session=resume, receivedCount=received)
        self.ws.send(quoted(connect))

    def recv(self):
        messages = []
        while not messages:
            messages = sockjs_frames(self.ws.recv())
        self.received += sum(m.get("msg") not in ("ping", "pong") for m in messages)
        return messages

    def until(self, predicate):
        received = []
        while not any(predicate(m) for m in received):
            received += self.recv()
        return received


def test_sockjs_websocket_client_resumes(server, book):
    first = SockJSWebSocket(server, "sockone")
    (connected,) = first.recv()
    session = connected["session"]
    first.ws.send(quoted({"msg": "sub", "id": "s", "name": "AllBooks", "params": []}))
    first.until(lambda m: m == {"msg": "ready", "subs": ["s"]})
    baseline = held(server)
    queued = metric(server, "ddp_held_messages")
    first.ws.shutdown()
    wait_metric(server, "ddp_held_sessions", lambda n: n == baseline + 1)
    book.title = "Hot Six, by SockJS"
    book.save()
    wait_metric(server, "ddp_held_messages", lambda n: n == queued + 1)

    second = SockJSWebSocket(server, "socktwo", resume=session, received=first.received)
    second.ws.send(quoted({"msg": "sub", "id": "s", "name": "AllBooks", "params": []}))
    second.ws.send(quoted({"msg": "method", "id": "1", "method": "test.echo", "params": []}))
    messages = second.until(lambda m: m.get("msg") == "result")
    # ``updated`` may come in the same SockJS frame as ``result``.
    assert [m["msg"] for m in messages if m["msg"] != "updated"] == [
        "connected",
        "changed",
        "result",
    ]
    assert messages[0] == {"msg": "connected", "session": session}
    assert messages[1]["fields"] == {"title": "Hot Six, by SockJS"}
    second.ws.send(quoted({"msg": "disconnect"}))
    second.ws.close()


def xhr(server, session_id, kind, body=b""):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", f"/sockjs/000/{session_id}/{kind}", body=body)
    response = conn.getresponse()
    data = response.read().decode()
    conn.close()
    return data.strip()


def xhr_until(server, session_id, predicate):
    received = []
    while not any(predicate(m) for m in received):
        received += sockjs_frames(xhr(server, session_id, "xhr"))
    return received


def break_off_a_poll(server, session_id):
    """Start a poll and cut its socket: the client went away while it waited."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    request = f"POST /sockjs/000/{session_id}/xhr HTTP/1.1\r\nHost: x\r\n"
    sock.sendall(f"{request}Content-Length: 0\r\n\r\n".encode())
    sock.close()


def test_sockjs_xhr_client_resumes(server, book):
    assert xhr(server, "xhrone", "xhr") == "o"
    connect = quoted({"msg": "connect", "version": "1", "support": ["1"]})
    xhr(server, "xhrone", "xhr_send", connect.encode())
    sub = quoted({"msg": "sub", "id": "s", "name": "AllBooks", "params": []})
    xhr(server, "xhrone", "xhr_send", sub.encode())
    messages = xhr_until(server, "xhrone", lambda m: m == {"msg": "ready", "subs": ["s"]})
    session = messages[0]["session"]
    received = sum(m["msg"] not in ("ping", "pong") for m in messages)
    baseline = held(server)
    queued = metric(server, "ddp_held_messages")
    break_off_a_poll(server, "xhrone")
    wait_metric(server, "ddp_held_sessions", lambda n: n == baseline + 1)
    book.title = "Hot Six, by xhr"
    book.save()
    wait_metric(server, "ddp_held_messages", lambda n: n == queued + 1)

    assert xhr(server, "xhrtwo", "xhr") == "o"
    resume = {"msg": "connect", "version": "1", "support": ["1"]}
    resume.update(session=session, receivedCount=received)
    again = {"msg": "sub", "id": "s", "name": "AllBooks", "params": []}
    call = {"msg": "method", "id": "1", "method": "test.echo", "params": []}
    xhr(server, "xhrtwo", "xhr_send", quoted(resume, again, call).encode())
    messages = xhr_until(server, "xhrtwo", lambda m: m.get("msg") == "result")
    # ``updated`` may come in the same SockJS frame as ``result``.
    assert [m["msg"] for m in messages if m["msg"] != "updated"] == [
        "connected",
        "changed",
        "result",
    ]
    assert messages[0] == {"msg": "connected", "session": session}
    assert messages[1]["fields"] == {"title": "Hot Six, by xhr"}
    xhr(server, "xhrtwo", "xhr_send", quoted({"msg": "disconnect"}).encode())


def test_a_client_back_before_its_old_connection_was_seen_to_go_resumes(server, book):
    # Meteor's client retries within milliseconds, and a load balancer cuts both sides at
    # once: the old connection may still look open when the client comes back.
    client, sub_id = subscribed(server)
    # The book's own change may reach the server while the subscription queries: its
    # connection then re-queries after ``ready``, and a connection running anything is
    # not handed over. What this test is about is an idle one: a method's answer comes
    # once everything before it has run (and the client must have all of it, ``updated``
    # too, for its count to match).
    client.method("test.echo", "idle")
    session, stale = client.session_id, client.ws
    assert client.reconnect()
    assert client.session_id == session
    # The old connection is closed by the server, and its socket serves nobody.
    stale.settimeout(10)
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            stale.recv()
    retitled_live(client, book, "Hot Six, on the new connection")
    client.leave()


def test_a_busy_connection_keeps_its_session_and_the_client_gets_a_new_one(server, book):
    client, _ = subscribed(server)
    session = client.session_id
    stale = client.ws
    call(client, "test.slow", 2)  # its connection is running a method
    assert not client.reconnect()
    assert client.session_id != session
    client.leave()
    stale.close()


@pytest.mark.parametrize("received", [-1, None])
def test_naming_a_live_session_with_another_count_leaves_its_connection_alone(
    server, book, received
):
    # Only a client that got exactly what was sent may take a live connection's session:
    # anyone else naming it gets a new session, and the connection goes on.
    client, _ = subscribed(server)
    other = websocket.create_connection(server.ws_url, timeout=10)
    connect = {"msg": "connect", "version": "1", "support": ["1"], "session": client.session_id}
    if received is not None:
        connect["receivedCount"] = client.received + received
    other.send(json.dumps(connect))
    reply = json.loads(other.recv())
    assert reply["msg"] == "connected" and reply["session"] != client.session_id
    other.close()
    retitled_live(client, book, "Hot Six, still live")
    client.leave()
