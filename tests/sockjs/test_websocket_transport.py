"""A SockJS websocket is a transport the host's runtime drives: its frames, and pings on
SockJS's own schedule from the runtime's heartbeat beat; driven here without sockets."""

import pytest

from ddp.sockjs import websocket_transport
from ddp.sockjs.framing import messages_frame
from ddp.sockjs.websocket_transport import SockJSWebSocket, message_frame

pytestmark = pytest.mark.quick


class FakeWebSocket:
    def __init__(self):
        self.environ = {}
        self.texts = []
        self.pings = 0
        self.socket_full = False
        self.pong_received = True
        self.closed = None

    def ping_nowait(self):
        if self.socket_full:
            return False
        self.pong_received = False
        self.pings += 1
        return True

    def send_texts(self, texts):
        self.texts.extend(texts)

    def send_now(self, texts):
        self.texts.extend(texts)
        return b""

    def close_with(self, code, reason):
        self.closed = (code, reason)


@pytest.fixture
def transport():
    ws = FakeWebSocket()
    return SockJSWebSocket(ws, 1.0), ws


def test_what_is_written_at_once_is_one_a_frame_and_the_close_a_c_frame(transport):
    transport, ws = transport
    assert transport.send_now(["one", 'two "2"']) == b""
    transport.send_texts(["\u2028"])
    assert ws.texts == ['a["one","two \\"2\\""]', 'a["\\u2028"]']
    assert message_frame("one") is message_frame("one")  # built once for every client
    transport.close(1000, None)
    assert ws.texts[-1] == 'c[1000,"Normal closure"]'
    assert ws.closed == (1000, "Normal closure")


def test_a_batch_to_many_clients_is_framed_once_as_each_client_alone_would_frame_it():
    # A fan-out's texts are the same objects in every client's outbox; each client's
    # writer hands the transport a list of its own.
    texts = ['{"n":1}', 'two "2"', "\u2028"]
    sockets = [FakeWebSocket() for _ in range(3)]
    for ws in sockets:
        assert SockJSWebSocket(ws, 1.0).send_now(list(texts)) == b""
    frame = sockets[0].texts[0]
    assert sockets[0].texts == [messages_frame(texts)]
    assert frame == 'a["{\\"n\\":1}","two \\"2\\"","\\u2028"]'
    # One frame object for all: the host's frame cache then finds it by identity.
    assert all(ws.texts == [frame] and ws.texts[0] is frame for ws in sockets)


def test_pings_every_delay_one_at_a_time_and_an_unanswered_one_closes(transport):
    transport, ws = transport
    now = 100.0
    assert transport.keepalive(now) is None  # the schedule starts
    assert transport.keepalive(now + 0.9) is None
    assert ws.pings == 0
    assert transport.keepalive(now + 1.0) is None
    assert ws.pings == 1 and not ws.pong_received
    ws.pong_received = True  # the client answered
    assert transport.keepalive(now + 1.5) is None
    assert transport.keepalive(now + 2.0) is None  # the next ping, never answered
    assert ws.pings == 2
    assert transport.keepalive(now + 3.0) is None  # one ping in flight at a time
    assert ws.pings == 2
    assert transport.keepalive(now + 2.0 + websocket_transport.PONG_TIMEOUT - 0.1) is None
    closing = transport.keepalive(now + 2.0 + websocket_transport.PONG_TIMEOUT)
    assert closing == (3000, "No response from heartbeat")


def test_a_ping_a_full_socket_does_not_take_is_tried_at_the_next_beat(transport):
    transport, ws = transport
    transport.keepalive(100.0)
    ws.socket_full = True
    assert transport.keepalive(101.0) is None
    assert ws.pings == 0
    ws.socket_full = False
    transport.keepalive(101.25)
    assert ws.pings == 1
