"""DDP over SockJS at /sockjs, as Meteor's browser client speaks it."""

import http.client
import json

import pytest
import websocket

from bookstore.models import Author, Book
from ddp.testing import WebSocketDDPClient
from tests.live import ServerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def frames(text):
    """The DDP messages in one SockJS ``a[...]`` frame."""
    assert text.startswith("a"), text
    return [json.loads(message) for message in json.loads(text[1:])]


def quoted(*messages):
    return json.dumps([json.dumps(message) for message in messages])


def post(port, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=body, headers={"Content-Type": "text/plain", **(headers or {})})
    response = conn.getresponse()
    data = response.read().decode()
    conn.close()
    return response.status, data


@pytest.fixture(scope="module")
def server(start_server):
    """One server for the tests that need no settings of their own: each opens sessions
    of its own."""
    return start_server()


def test_info(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/sockjs/info", headers={"Origin": f"http://127.0.0.1:{server.port}"})
    response = conn.getresponse()
    info = json.loads(response.read())
    assert response.status == 200
    assert info["websocket"] is True
    assert response.getheader("Access-Control-Allow-Origin") == f"http://127.0.0.1:{server.port}"


def test_sockjs_websocket_subscription_and_live_change(server):
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/sockjs/123/abcdefgh/websocket", timeout=10
    )
    assert ws.recv() == "o"
    ws.send(quoted({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}))
    assert frames(ws.recv())[0]["msg"] == "connected"
    ws.send(quoted({"msg": "sub", "id": "s", "name": "AllBooks", "params": []}))
    received = []
    while {"msg": "ready", "subs": ["s"]} not in received:
        received += frames(ws.recv())
    assert {
        "msg": "added",
        "collection": "bookstore.author",
        "id": str(janet.pk),
        "fields": {"name": "Janet", "email": "janet@evanovich.com"},
    } in received
    book = Book.objects.create(title="Hot Six", author=janet)
    change = frames(ws.recv())
    assert change == [
        {
            "msg": "added",
            "collection": "bookstore.book",
            "id": str(book.pk),
            "fields": {"title": "Hot Six", "author_id": str(janet.pk)},
        }
    ]
    ws.close()


@pytest.mark.parametrize("path", ["/sockjs/websocket", "/sockjs/websocket/"])
def test_the_raw_websocket_under_the_prefix_is_ddp_as_on_websocket(server, path):
    # Meteor's server routes its /websocket here: plain DDP text frames, no SockJS framing.
    janet = Author.objects.create(name="Janet", email="janet@evanovich.com")
    client = WebSocketDDPClient(f"ws://127.0.0.1:{server.port}{path}")
    _, messages = client.sub("AllBooks")
    assert messages[-1]["msg"] == "ready"
    assert client.collection("bookstore.author") == {
        str(janet.pk): {"name": "Janet", "email": "janet@evanovich.com"}
    }
    book = Book.objects.create(title="Hot Six", author=janet)
    client.wait_for(lambda c: str(book.pk) in c.collection("bookstore.book"))
    result, _ = client.method("test.echo", "hi")
    assert result["result"] == ["hi"]
    client.close()


def test_the_raw_websocket_under_the_prefix_refuses_plain_http(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/sockjs/websocket")
    response = conn.getresponse()
    assert (response.status, response.read()) == (400, b"Not a valid websocket request")
    conn.request("POST", "/sockjs/websocket")
    response = conn.getresponse()
    assert (response.status, response.getheader("Allow"), response.read()) == (405, "GET", b"")
    conn.close()


def test_xhr_polling_method_call(server):
    base = "/sockjs/000/pollsess"
    assert post(server.port, f"{base}/xhr") == (200, "o\n")
    connect = quoted({"msg": "connect", "version": "1", "support": ["1"]})
    assert post(server.port, f"{base}/xhr_send", connect.encode())[0] == 204
    status, body = post(server.port, f"{base}/xhr")
    assert frames(body.strip())[0]["msg"] == "connected"
    call = quoted({"msg": "method", "id": "1", "method": "test.echo", "params": ["hi"]})
    assert post(server.port, f"{base}/xhr_send", call.encode())[0] == 204
    received = []
    while not any(m.get("msg") == "updated" for m in received):
        received += frames(post(server.port, f"{base}/xhr")[1].strip())
    assert {"msg": "result", "id": "1", "result": ["hi"]} in received


def test_foreign_pages_are_refused_on_sockjs_too():
    env = {"TEST_ALLOWED_HOSTS": "127.0.0.1"}
    with ServerProcess(env=env) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/sockjs/info", headers={"Origin": "https://evil.example"})
        assert conn.getresponse().status == 403


def test_behind_a_trusted_proxy_a_session_answers_only_its_forwarded_address():
    with ServerProcess(ddp={"TRUSTED_PROXIES": ["127.0.0.1"]}) as server:
        base = "/sockjs/000/boundsess"
        client = {"X-Forwarded-For": "10.0.0.1"}
        other = {"X-Forwarded-For": "10.0.0.2"}
        assert post(server.port, f"{base}/xhr", headers=client) == (200, "o\n")
        connect = quoted({"msg": "connect", "version": "1", "support": ["1"]})
        # The same proxy, another client behind it: no such session.
        assert post(server.port, f"{base}/xhr_send", connect.encode(), other)[0] == 404
        assert post(server.port, f"{base}/xhr", headers=other)[0] == 404
        assert post(server.port, f"{base}/xhr_send", connect.encode(), client)[0] == 204
        status, body = post(server.port, f"{base}/xhr", headers=client)
        assert [m["msg"] for m in frames(body.strip())] == ["connected"]
    assert "transport=sockjs remote=10.0.0.1" in server.output()


def connections_open(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return next(
        float(line.split()[1]) for line in text.splitlines() if line.startswith("ddp_connections ")
    )


def test_xhr_sessions_count_against_max_connections_with_websockets():
    with ServerProcess("--max-connections", "2") as server:
        raw = WebSocketDDPClient(server.ws_url)
        assert post(server.port, "/sockjs/000/second/xhr") == (200, "o\n")
        assert connections_open(server) == 2
        # Full: a close frame sockjs-client reports as is, and no session behind it.
        assert post(server.port, "/sockjs/000/third/xhr") == (200, 'c[1013,"Try again later"]\n')
        assert post(server.port, "/sockjs/000/third/xhr_send", b'["x"]')[0] == 404
        assert post(server.port, "/sockjs/000/third/xhr_streaming")[1].endswith(
            'c[1013,"Try again later"]\n'
        )
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(server.ws_url, timeout=10)
        assert refused.value.status_code == 503
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(
                f"ws://127.0.0.1:{server.port}/sockjs/000/fourth/websocket", timeout=10
            )
        assert refused.value.status_code == 503
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(
                f"ws://127.0.0.1:{server.port}/sockjs/websocket", timeout=10
            )
        assert refused.value.status_code == 503
        raw.close()
        wait_until(lambda: connections_open(server) == 1, 10, what="one connection open")
        assert post(server.port, "/sockjs/000/third/xhr") == (200, "o\n")
        assert connections_open(server) == 2
