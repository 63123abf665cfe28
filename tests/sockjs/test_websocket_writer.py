"""The SockJS websocket writer runs only while there is something to write, and its
heartbeat comes from one thread for all clients; driven here without sockets."""

import threading

import pytest

from ddp.sockjs import websocket
from ddp.sockjs.websocket import Writer

pytestmark = pytest.mark.quick


class Socket:
    def __init__(self):
        self.sent = []

    def send(self, data):
        self.sent.append(data)


class FakeWebSocket:
    def __init__(self):
        self.texts = []
        self.sock = Socket()
        self.ws = self  # wsproto's connection: ``send(Ping())`` gives the frame
        self.pong_received = True
        self.closed = None

    def send(self, event):
        return b"PING"

    def send_texts(self, texts):
        self.texts.extend(texts)

    def close_with(self, code, reason):
        self.closed = (code, reason)


class FakeSession:
    def __init__(self):
        self.waiting = []
        self.closing = False
        self.closed_with = None

    def take(self):
        frames, self.waiting = self.waiting, []
        return frames, self.closing

    def close(self, code, reason):
        self.closed_with = (code, reason)
        self.closing = True


@pytest.fixture
def writer(monkeypatch):
    # The module's heartbeat thread is not wanted here: beat() is called by hand.
    monkeypatch.setattr(websocket, "heartbeats", websocket.Heartbeats())
    monkeypatch.setattr(websocket.heartbeats, "_running", True)
    spawned = []
    ws, session = FakeWebSocket(), FakeSession()
    return Writer(ws, session, 1.0, spawned.append), ws, session, spawned


def run(spawned):
    while spawned:
        spawned.pop(0)()


def test_a_writer_runs_only_while_there_is_something_to_write(writer):
    writer, ws, session, spawned = writer
    writer.wake()  # before start: nothing is written before the open frame
    assert spawned == []
    writer.start(["o"])
    session.waiting = ['a["a"]']
    writer.wake()
    assert len(spawned) == 1  # one thread for both
    run(spawned)
    assert ws.texts == ["o", 'a["a"]']
    assert not writer._running
    session.waiting = ['a["b"]']
    writer.wake()
    run(spawned)
    assert ws.texts == ["o", 'a["a"]', 'a["b"]']


def test_pings_are_asked_for_by_the_heartbeat_and_an_unanswered_one_closes(writer):
    writer, ws, session, spawned = writer
    writer.start([])
    run(spawned)
    now = writer._next_ping
    writer.beat(now - 0.1)
    assert spawned == []
    writer.beat(now)
    run(spawned)
    assert ws.sock.sent == [b"PING"]
    assert not ws.pong_received
    ws.pong_received = True  # the client answered
    writer.beat(now + 0.5)
    writer.beat(now + 1.0)  # the next ping, never answered
    run(spawned)
    assert ws.sock.sent == [b"PING", b"PING"]
    writer.beat(now + 2.0)  # one ping in flight at a time
    run(spawned)
    assert ws.sock.sent == [b"PING", b"PING"]
    writer.beat(now + 1.0 + websocket.PONG_TIMEOUT - 0.1)
    assert session.closed_with is None
    writer.beat(now + 1.0 + websocket.PONG_TIMEOUT)
    assert session.closed_with == (3000, "No response from heartbeat")


def test_stop_waits_for_the_write_under_way(writer):
    writer, ws, session, spawned = writer
    writer.start(["o"])
    finished = []

    def stop():
        writer.stop()
        finished.append(True)

    writer._running = True  # as if a write were under way
    spawned.clear()
    thread = threading.Thread(target=stop)
    thread.start()
    thread.join(0.2)
    assert finished == []
    writer._running = False
    writer._idle.set()
    thread.join(5)
    assert finished == [True]
