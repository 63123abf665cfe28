"""``<prefix>/websocket``: a plain WebSocket for the hosted app, no SockJS framing.

After sockjs-protocol's RawWebsocket (PROTOCOL.md 10.1, T1): no open frame, no ``a[...]``,
no heartbeat frames; the app's texts go out as they are, its close is the socket's close.
"""

import pytest
import websocket

from tests.sockjs.checks import close_status
from tests.sockjs.wire import fetch

UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "x3JJHMbDL1EzLkh9GBhXDw==",
}


def connect(server, path, version="13"):
    ws = websocket.create_connection(
        server.ws_url(path), header={"Sec-WebSocket-Version": version}, timeout=10
    )
    ws.settimeout(10)
    return ws


@pytest.mark.parametrize("version", ["8", "13"])
@pytest.mark.parametrize("path", ["/echo/websocket", "/echo/websocket/"])
def test_echo_without_framing(sockjs_server, path, version):
    ws = connect(sockjs_server, path, version)
    # No open frame: the first text is the echo of the first message.
    ws.send("Hello world!\uffff")
    assert ws.recv() == "Hello world!\uffff"
    # What looks like SockJS framing is a message like any other.
    ws.send('["a"]')
    assert ws.recv() == '["a"]'
    ws.send("")
    ws.send("after an empty one")
    assert ws.recv() == ""
    assert ws.recv() == "after an empty one"
    ws.close()


@pytest.mark.parametrize("version", ["8", "13"])
def test_the_apps_close_is_the_sockets(sockjs_server, version):
    ws = connect(sockjs_server, "/close/websocket", version)
    # No text at all: the close frame carries the app's code and reason.
    assert close_status(ws) == (3000, "Go away!")
    ws.close()


def test_a_plain_get_is_refused(port):
    r = fetch(port, "GET", "/echo/websocket")
    assert r.status == 400
    assert r.body == "Not a valid websocket request"


@pytest.mark.parametrize("version", ["7", "14", ""])
def test_other_versions_are_refused(port, version):
    r = fetch(port, "GET", "/echo/websocket", headers={**UPGRADE, "Sec-WebSocket-Version": version})
    assert r.status == 400
    assert r.body == "Only supported WebSocket protocol is RFC 6455."


def test_only_get(port):
    r = fetch(port, "POST", "/echo/websocket", headers=UPGRADE)
    assert r.status == 405
    assert r["allow"] == "GET"
    assert r["content-type"] is None
    assert r.body == ""


def test_disabled(port):
    assert fetch(port, "GET", "/disabled_websocket_echo/websocket", headers=UPGRADE).status == 404
    assert fetch(port, "POST", "/disabled_websocket_echo/websocket").status == 405


def test_a_binary_frame_is_refused_with_1003(sockjs_server):
    ws = connect(sockjs_server, "/echo/websocket")
    ws.send_binary(b"\x00\x01")
    assert close_status(ws) == (1003, "Text frames only")
    ws.close()
