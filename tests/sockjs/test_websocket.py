"""The SockJS websocket transport: handshake refusals, framing, closing, reused ids.

After sockjs-protocol's WebsocketHttpErrors, Websocket and WebsocketHybi10 (RFC 6455 and
its draft version 8, T1; Hixie-76 is not served), with sockjs-node 0.3.24's close codes
(PROTOCOL.md 10.2).
"""

import base64
import hashlib

import pytest
import websocket

from tests.sockjs.checks import close_status
from tests.sockjs.wire import Connection, fetch, session_url


def connect(server, service="echo", url=None, version="13"):
    ws = websocket.create_connection(
        server.ws_url(url or session_url(service) + "/websocket"),
        header={"Sec-WebSocket-Version": version},
    )
    ws.settimeout(10)
    return ws


def test_a_plain_get_is_refused(port):
    r = fetch(port, "GET", "/echo/0/0/websocket")
    assert r.status == 400
    assert r.body == "Not a valid websocket request"


def test_a_rewritten_connection_header_is_refused(port):
    r = fetch(
        port,
        "GET",
        "/echo/0/0/websocket",
        headers={"Upgrade": "WebSocket", "Connection": "close"},
    )
    assert r.status == 400
    assert r.body == "Not a valid websocket request"


def test_a_hixie_76_handshake_is_refused(port):
    # The 2010 draft (Key1, Key2 and a nonce after the headers) is not served: a clear 400,
    # not a socket left waiting for the nonce.
    headers = {
        "Upgrade": "WebSocket",
        "Connection": "Upgrade",
        "Origin": f"http://127.0.0.1:{port}",
        "Sec-WebSocket-Key1": "4 @1  46546xW%0l 1 5",
        "Sec-WebSocket-Key2": "12998 5 Y3 1  .P00",
    }
    r = fetch(port, "GET", session_url() + "/websocket", headers=headers)
    assert r.status == 400
    assert r.body == "Not a valid websocket request"


@pytest.mark.parametrize("version", ["7", "14", ""])
def test_only_rfc_6455(port, version):
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "x3JJHMbDL1EzLkh9GBhXDw==",
        "Sec-WebSocket-Version": version,
    }
    r = fetch(port, "GET", "/echo/0/0/websocket", headers=headers)
    assert r.status == 400
    assert r.body == "Only supported WebSocket protocol is RFC 6455."


@pytest.mark.parametrize("headers", [{"Upgrade": "WebSocket", "Connection": "Upgrade"}, {}])
def test_only_get(port, headers):
    r = fetch(port, "POST", "/echo/0/0/websocket", headers=headers)
    assert r.status == 405
    assert r["allow"] == "GET"
    assert r["content-type"] is None
    assert r.body == ""


def test_disabled(port):
    assert fetch(port, "GET", "/disabled_websocket_echo/0/0/websocket").status == 404
    assert fetch(port, "POST", "/disabled_websocket_echo/0/0/websocket").status == 405


@pytest.mark.parametrize("version", ["8", "13"])
@pytest.mark.parametrize("connection", ["Upgrade", "keep-alive, Upgrade"])
def test_handshake(port, connection, version):
    # Version 8 (hybi-08, as early Chrome and Firefox sent it) frames as RFC 6455 does.
    key = "x3JJHMbDL1EzLkh9GBhXDw=="
    with Connection(port) as c:
        r = c.request(
            "GET",
            session_url() + "/websocket",
            headers={
                "Upgrade": "websocket",
                "Connection": connection,
                "Sec-WebSocket-Version": version,
                "Sec-WebSocket-Origin": "http://asd",
                "Sec-WebSocket-Key": key,
            },
        )
        assert r.status == 101
        accept = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
        assert r["sec-websocket-accept"] == base64.b64encode(accept.digest()).decode()
        assert r["connection"].lower() == "upgrade"
        assert r["upgrade"].lower() == "websocket"
        assert r["content-length"] is None


def test_version_8_echo_and_close(sockjs_server):
    ws = connect(sockjs_server, version="8")
    assert ws.recv() == "o"
    ws.send("")
    ws.send('["a"]')
    assert ws.recv() == 'a["a"]'
    ws.close()
    ws = connect(sockjs_server, "close", version="8")
    assert ws.recv() == "o"
    assert ws.recv() == 'c[3000,"Go away!"]'
    assert close_status(ws) == (1000, "Normal closure")
    ws.close()


def test_echo(sockjs_server):
    ws = connect(sockjs_server)
    assert ws.recv() == "o"
    ws.send('["a"]')
    assert ws.recv() == 'a["a"]'
    ws.send('["b", "c"]')
    assert ws.recv() == 'a["b","c"]'
    # A single JSON string is a message too.
    ws.send('"d"')
    assert ws.recv() == 'a["d"]'
    ws.close()


def test_empty_frames_are_ignored(sockjs_server):
    ws = connect(sockjs_server)
    assert ws.recv() == "o"
    ws.send("")
    ws.send("[]")
    ws.send('["a"]')
    assert ws.recv() == 'a["a"]'
    ws.close()


def test_close(sockjs_server):
    ws = connect(sockjs_server, "close")
    assert ws.recv() == "o"
    assert ws.recv() == 'c[3000,"Go away!"]'
    assert close_status(ws) == (1000, "Normal closure")
    ws.close()


@pytest.mark.parametrize("payload", ['["a', "{}", "[1]", "3"])
def test_broken_framing_closes_the_socket(sockjs_server, payload):
    ws = connect(sockjs_server)
    assert ws.recv() == "o"
    ws.send(payload)
    assert close_status(ws) == (3000, "Broken framing.")
    ws.close()


def test_a_session_id_may_be_reused(sockjs_server):
    url = session_url() + "/websocket"
    first, second = connect(sockjs_server, url=url), connect(sockjs_server, url=url)
    assert first.recv() == "o"
    assert second.recv() == "o"
    first.send('["a"]')
    assert first.recv() == 'a["a"]'
    second.send('["b"]')
    assert second.recv() == 'a["b"]'
    first.close()
    second.close()
    again = connect(sockjs_server, url=url)
    assert again.recv() == "o"
    again.send('["a"]')
    assert again.recv() == 'a["a"]'
    again.close()


def test_a_websocket_session_is_not_reachable_by_xhr(sockjs_server, port):
    url = session_url()
    ws = connect(sockjs_server, url=url + "/websocket")
    assert ws.recv() == "o"
    assert fetch(port, "POST", url + "/xhr_send", '["a"]').status == 404
    ws.close()


def test_unicode_and_lone_surrogates_round_trip(sockjs_server):
    ws = connect(sockjs_server)
    assert ws.recv() == "o"
    ws.send('["caf\\u00e9 \\u2028 \\ud800 \\ud83d\\ude00"]')
    # Escaped on the way out: ASCII only, and the surrogates survive.
    assert ws.recv() == 'a["caf\\u00e9 \\u2028 \\ud800 \\ud83d\\ude00"]'
    ws.close()
