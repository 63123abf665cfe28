"""The ddpserver process itself: start-up, the traps of its stack, limits, shutdown."""

import json
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import websocket
from django.db import connection

from bookstore.models import Author
from ddp.testing import WebSocketDDPClient
from ddp.testing.database import database_url
from tests.live import ROOT, ServerProcess
from tests.testapp.models import Article

pytestmark = pytest.mark.django_db(transaction=True)


def handshake_headers(port, extra=""):
    """Do a WebSocket upgrade by hand and return the response's header block."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            (
                "GET /websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
    return data.split(b"\r\n\r\n")[0].decode().lower()


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "django", "ddpserver", "--noreload"],
        [sys.executable, str(ROOT / "testproject" / "manage.py"), "ddpserver", "--noreload"],
    ],
    ids=["django-admin", "manage.py"],
)
def test_eventlet_patches_before_django_opens_anything(command):
    with ServerProcess(command=command) as server, WebSocketDDPClient(server.ws_url) as client:
        result, _ = client.method("test.runtime")
        assert result["result"] == {
            "socket_green": True,
            "socket_class": "eventlet.greenio.base.GreenSocket",
            "thread_green": True,
            "psycopg_wait_callback": True,
            "threading_local": "eventlet.corolocal",
        }
        output = server.output()
    # eventlet complains when it finds locks made before it patched.
    assert "not greened" not in output
    assert "Eventlet is deprecated" not in output


#: The ``application_name`` of :func:`three_workers`' connections to PostgreSQL.
POOL_BOUND = "ddp-pool-bound"


@pytest.fixture(scope="module")
def three_workers(start_server):
    """A server with three database workers, its connections named :data:`POOL_BOUND`."""
    url = database_url({**connection.settings_dict, "OPTIONS": {"application_name": POOL_BOUND}})
    return start_server("--db-pool", "3", env={"DATABASE_URL": url})


def test_each_database_worker_has_its_own_connection(three_workers):
    server = three_workers
    clients = [WebSocketDDPClient(server.ws_url) for _ in range(12)]
    for client in clients:
        client.send({"msg": "method", "id": "pid", "method": "test.backendPid", "params": []})
    pids = set()
    for client in clients:
        pids.add(client.recv_until(lambda m: m["msg"] == "result")[-1]["result"])
        client.close()
    assert 1 < len(pids) <= 3


def test_two_hundred_subscribers_use_at_most_the_pool_the_listener_and_the_reader(
    three_workers,
):
    count_sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    seen = []
    server = three_workers
    clients = [WebSocketDDPClient(server.ws_url) for _ in range(200)]
    for n, client in enumerate(clients):
        client.send({"msg": "sub", "id": f"s{n}", "name": "SlowBooks", "params": []})
    readies = 0
    with connection.cursor() as cursor:
        for client in clients:
            cursor.execute(count_sql, [POOL_BOUND])
            seen.append(cursor.fetchone()[0])
            client.recv_until(lambda m: m["msg"] == "ready")
            readies += 1
    for client in clients:
        client.close()
    assert readies == 200
    # The pool, the bus listener, and the replication reader ("auto" capture on a
    # database that allows it): its advisory lock's connection and its stream.
    assert max(seen) <= 3 + 1 + 2
    assert max(seen) >= 1


def test_sigterm_and_sigint_close_clients_and_exit_zero():
    for signum in (signal.SIGTERM, signal.SIGINT):
        server = ServerProcess().start()
        client = WebSocketDDPClient(server.ws_url)
        server.send_signal(signum)
        assert client.close_code() == 1001
        assert server.stop(signum) == 0, server.output()


@pytest.fixture(scope="module")
def heartbeat_server(start_server):
    """A server that pings after 0.3 s of silence and closes 0.3 s later."""
    return start_server(ddp={"HEARTBEAT_INTERVAL": 0.3, "HEARTBEAT_TIMEOUT": 0.3})


def test_heartbeat_pings_then_closes_a_silent_client(heartbeat_server):
    server = heartbeat_server
    silent = WebSocketDDPClient(server.ws_url)
    assert silent.recv() == {"msg": "ping"}
    assert silent.close_code() == 1001
    lively = WebSocketDDPClient(server.ws_url)
    for _ in range(3):
        assert lively.recv() == {"msg": "ping"}
        lively.send({"msg": "pong"})
    lively.send({"msg": "ping", "id": "still"})
    assert lively.recv_until(lambda m: m["msg"] == "pong")[-1] == {"msg": "pong", "id": "still"}
    lively.close()


def pre1_client(server):
    client = WebSocketDDPClient(server.ws_url, connect=False)
    client.send({"msg": "connect", "version": "pre1", "support": ["pre1"]})
    assert client.recv()["msg"] == "connected"
    return client


def test_no_ping_before_the_handshake_nor_in_pre1(heartbeat_server):
    server = heartbeat_server
    never_connects = WebSocketDDPClient(server.ws_url, connect=False)
    # Closed for silence, without a DDP ping: no message comes before the close frame.
    assert never_connects.close_code() == 1001
    assert never_connects.messages == []
    old = pre1_client(server)
    # Five heartbeat intervals of DDP silence; the socket answers WebSocket pings, as
    # every WebSocket client does by itself while it reads.
    pings = 0
    deadline = time.monotonic() + 1.5
    old.ws.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            opcode, _ = old.ws.recv_data_frame(True)
        except websocket.WebSocketTimeoutException:
            continue
        assert opcode == websocket.ABNF.OPCODE_PING
        pings += 1
    assert pings >= 2
    result, messages = old.method("test.echo", "pre1")
    assert result["result"] == ["pre1"]
    assert [m for m in old.messages if m["msg"] == "ping"] == []
    old.close()


def test_a_dead_pre1_peer_is_closed(heartbeat_server):
    server = heartbeat_server
    dead = pre1_client(server)
    # recv_frame reads frames as they come and answers none: a peer that stopped.
    frames = [dead.ws.recv_frame() for _ in range(2)]
    assert [frame.opcode for frame in frames] == [
        websocket.ABNF.OPCODE_PING,
        websocket.ABNF.OPCODE_CLOSE,
    ]
    assert frames[1].data[:2] == (1001).to_bytes(2, "big")
    assert frames[1].data[2:] == b"Heartbeat timeout"
    dead.ws.shutdown()


def test_four_megabyte_document_reaches_a_paused_reader_whole(ddp_live_server):
    body = "x" * (4 * 1024 * 1024)
    article = Article.objects.create(title="huge", body=body)
    with WebSocketDDPClient(ddp_live_server.ws_url) as client:
        client.send({"msg": "sub", "id": "big", "name": "Articles", "params": []})
        time.sleep(1.5)  # the server's writes block on a full socket meanwhile
        messages = client.recv_until(lambda m: m["msg"] == "ready", timeout=30)
    docs = [m for m in messages if m["msg"] == "added" and m["collection"] == "testapp.article"]
    assert docs[0]["id"] == str(article.pk)
    assert docs[0]["fields"]["body"] == body


def test_more_than_1024_simultaneous_connections(ddp_live_server):
    clients = []
    try:
        for _ in range(1100):
            clients.append(WebSocketDDPClient(ddp_live_server.ws_url))
        assert len({client.session_id for client in clients}) == 1100
        clients[-1].send({"msg": "ping", "id": "last"})
        assert clients[-1].recv() == {"msg": "pong", "id": "last"}
    finally:
        for client in clients:
            client.close()


def test_compression_is_off_unless_enabled(ddp_live_server):
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    assert "permessage-deflate" not in handshake_headers(ddp_live_server.port, offer)
    with ServerProcess(ddp={"WEBSOCKET_COMPRESSION": True}) as server:
        assert "permessage-deflate" in handshake_headers(server.port, offer)


def test_oversized_frame_closes_with_1009_and_others_keep_working(ddp_live_server):
    with (
        WebSocketDDPClient(ddp_live_server.ws_url) as victim,
        WebSocketDDPClient(ddp_live_server.ws_url) as other,
    ):
        victim.send_raw(json.dumps({"msg": "ping", "id": "x" * (1024 * 1024 + 10)}))
        assert victim.close_code() == 1009
        other.send({"msg": "ping", "id": "fine"})
        assert other.recv() == {"msg": "pong", "id": "fine"}


def test_max_message_size_option():
    with (
        ServerProcess("--max-message-size", "100") as server,
        WebSocketDDPClient(server.ws_url) as client,
    ):
        client.send({"msg": "ping", "id": "y" * 200})
        assert client.close_code() == 1009


def test_burst_of_ten_thousand_messages(ddp_live_server):
    authors = Author.objects.count()
    with (
        WebSocketDDPClient(ddp_live_server.ws_url) as noisy,
        WebSocketDDPClient(ddp_live_server.ws_url) as other,
    ):
        frames = []
        for n in range(10_000):
            frames.append(json.dumps({"msg": "ping", "id": str(n)}) if n % 2 else "{oops")
        sender = threading.Thread(target=lambda: [noisy.send_raw(f) for f in frames])
        sender.start()
        replies = [noisy.recv(timeout=30) for _ in range(10_000)]
        sender.join()
        assert replies.count({"msg": "error", "reason": "Bad request"}) == 5_000
        assert [r["id"] for r in replies if r["msg"] == "pong"] == [
            str(n) for n in range(1, 10_000, 2)
        ]
        other.send({"msg": "ping", "id": "other"})
        assert other.recv() == {"msg": "pong", "id": "other"}
    assert Author.objects.count() == authors


def test_django_views_share_the_port(ddp_live_server):
    Author.objects.create(name="Visible Author", email="visible@example.com")
    with urllib.request.urlopen(ddp_live_server.url, timeout=10) as response:
        assert response.status == 200
        assert "Visible Author" in response.read().decode()


@pytest.mark.parametrize(
    ("method", "status", "body"),
    [("GET", 400, b"Not a valid websocket request"), ("POST", 405, b"")],
)
def test_plain_http_on_websocket_path(ddp_live_server, method, status, body):
    request = urllib.request.Request(ddp_live_server.ws_url.replace("ws:", "http:"), method=method)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == status
    assert info.value.read() == body


def test_startup_lists_publications_at_verbosity_2():
    server = ServerProcess("-v", "2").start()
    assert server.stop() == 0
    output = server.output()
    assert "publication AllBooks" in output
    assert "publication BooksByAuthorEmail" in output


def test_server_id_welcome_only_when_asked():
    with ServerProcess(ddp={"SEND_SERVER_ID": True}) as server:
        client = WebSocketDDPClient(server.ws_url, connect=False)
        assert client.recv() == {"server_id": "0"}
        client.close()


@pytest.mark.parametrize(
    "headers",
    [
        # A proxy that rewrote the Connection header: no upgrade can follow.
        b"Upgrade: websocket\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        # The 2010 draft (hixie-76): keys 1 and 2 and a nonce, no Sec-WebSocket-Key.
        b"Upgrade: WebSocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n",
    ],
    ids=["connection-close", "hixie-76"],
)
def test_a_handshake_that_cannot_upgrade_gets_the_same_400_as_over_sockjs(ddp_live_server, headers):
    """/websocket and SockJS's websocket refuse a bad handshake with one check (T1)."""
    with socket.create_connection(("127.0.0.1", ddp_live_server.port), timeout=10) as sock:
        sock.sendall(b"GET /websocket HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n")
        reply = b""
        while not reply.endswith(b"Not a valid websocket request"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert reply.endswith(b"\r\n\r\nNot a valid websocket request"), reply


@pytest.mark.parametrize("version", [b"7", b"14"])
def test_websocket_versions_other_than_8_and_13_get_400(ddp_live_server, version):
    with socket.create_connection(("127.0.0.1", ddp_live_server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: " + version + b"\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("path", ["/websocket", "/sockjs/websocket"])
def test_websocket_version_8_is_served_as_13(ddp_live_server, path):
    # A draft of RFC 6455 that some clients still send; its frames are RFC 6455's.
    url = f"ws://127.0.0.1:{ddp_live_server.port}{path}"
    with WebSocketDDPClient(url, header={"Sec-WebSocket-Version": "8"}) as client:
        result, _ = client.method("test.echo", "hi")
        assert result["result"] == ["hi"]
