"""Websocket heartbeats (RFC 6455 pings, T8) and slow clients, on short limits."""

import time
import uuid

import pytest
import websocket
from websocket import ABNF

from tests.live import SockJSTestServer
from tests.sockjs.checks import close_status
from tests.sockjs.wire import Connection, fetch, session_url


@pytest.fixture(scope="module")
def server():
    server = SockJSTestServer("tests.sockjs.tuned_server").start()
    yield server
    server.stop()
    assert "Traceback" not in server.output(), server.output()


def connect(server, service="echo"):
    ws = websocket.create_connection(server.ws_url(session_url(service) + "/websocket"), timeout=10)
    assert ws.recv() == "o"
    return ws


def test_a_client_that_answers_pings_stays(server):
    ws = connect(server)
    pings = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        # recv_data_frame answers each ping with a pong, as browsers do.
        opcode, _ = ws.recv_data_frame(True)
        assert opcode == ABNF.OPCODE_PING
        pings += 1
    assert pings >= 4
    ws.send('["still here"]')
    while (opcode_frame := ws.recv_data_frame(True))[0] == ABNF.OPCODE_PING:
        pass
    assert opcode_frame[1].data == b'a["still here"]'
    ws.close()


def test_a_client_that_never_answers_is_closed(server):
    ws = connect(server)
    time.sleep(1)
    # recv_frame reads frames as they are, answering nothing.
    frames = [ws.recv_frame() for _ in range(3)]
    assert [frame.opcode for frame in frames] == [
        ABNF.OPCODE_PING,
        ABNF.OPCODE_TEXT,
        ABNF.OPCODE_CLOSE,
    ]
    assert frames[1].data == b'c[3000,"No response from heartbeat"]'
    assert frames[2].data[:2] == (1000).to_bytes(2, "big")
    ws.shutdown()


def test_a_websocket_client_that_stops_reading_is_cut_off(server):
    ws = connect(server, "flood")
    ws.send('["flood"]')
    deadline = time.monotonic() + 10
    while "Disconnecting slow SockJS client" not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    # What the kernel held is still there to read; then the connection ends, no close frame.
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while ws.recv_frame().opcode == ABNF.OPCODE_TEXT:
            pass


def test_xhr_session_ids_stay_out_of_the_logs(server):
    secret = f"s3cret{uuid.uuid4().hex}"
    url = f"/flood/000/{secret}"
    assert fetch(server.port, "POST", url + "/xhr").body == "o\n"
    # A request line the HTTP server cannot parse, which it reports with the line.
    with Connection(server.port) as connection:
        connection.send_request("POST", url + "/xhr_send HTTP/1.1 extra")
        assert "400 - Bad request syntax" in connection.read()
    # A client that stops polling is cut off when it overflows: a warning.
    assert fetch(server.port, "POST", url + "/xhr_send", '["flood"]').status == 204
    deadline = time.monotonic() + 10
    while "Disconnecting slow SockJS client" not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    output = server.output()
    assert "Bad request syntax" in output
    assert "/flood/000/~" in output
    assert secret not in output


def test_a_raw_websocket_has_no_heartbeats(server):
    ws = websocket.create_connection(server.ws_url("/echo/websocket"), timeout=10)
    # Five heartbeat delays: a SockJS-framed websocket would have had four pings by now.
    ws.settimeout(1)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv_frame()
    ws.settimeout(10)
    ws.send("still here")
    assert ws.recv() == "still here"
    ws.close()


def test_a_raw_websocket_client_that_stops_reading_is_cut_off(server):
    """The app's texts wait in the same bounded outbox as on any transport."""
    cut_off = server.output().count("Disconnecting slow SockJS client")
    ws = websocket.create_connection(server.ws_url("/flood/websocket"), timeout=10)
    ws.send("flood")
    deadline = time.monotonic() + 10
    while server.output().count("Disconnecting slow SockJS client") == cut_off:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    # What the kernel held is still there to read; then the connection ends.
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while ws.recv_frame().opcode == ABNF.OPCODE_TEXT:
            pass


def test_a_raw_websocket_message_over_the_limit_closes_with_1009(server):
    ws = websocket.create_connection(server.ws_url("/flood/websocket"), timeout=10)
    ws.send("x" * 1000)
    assert ws.recv() == "x" * 1000
    ws.send("x" * 1001)
    assert close_status(ws)[0] == 1009
    ws.close()
