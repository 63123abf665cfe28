"""A ConnectionRuntime runs threads only while it has work: an idle client costs no thread.

The connection is driven here by a scheduler that runs what it is asked to spawn one at a
time, to completion, as green threads do when nothing blocks; the transport records frames.
"""

import functools
import json
import threading

import pytest
from django.db import OperationalError
from django.test import override_settings

from ddp import metrics
from ddp.bus.memory import InMemoryBus
from ddp.runtime.connection import ConnectionRuntime

pytestmark = pytest.mark.django_db

CONNECT = '{"msg":"connect","version":"1","support":["1"]}'


class Scheduler:
    """The driver: runs what it is asked to spawn one at a time when the test says, and
    its clock moves only when the test moves ``now``."""

    def __init__(self):
        self.pending = []
        self.started = []
        self.now = 1000.0

    def spawn(self, function, *args):
        self.pending.append(functools.partial(function, *args))
        self.started.append(function.__name__)

    def clock(self):
        return self.now

    def event(self):
        return threading.Event()

    def run(self):
        while self.pending:
            self.pending.pop(0)()


@pytest.fixture
def clock():
    """The scheduler whose clock a heartbeat test moves."""
    return Scheduler()


class Transport:
    def __init__(self):
        self.sent = []
        self.writes = 0
        self.closed = None
        self.full = False
        self.waited = []  # what a writer wrote after the socket was full
        self.pings = 0  # transport pings (pre1)
        self.pong = False

    def send_now(self, texts):
        """All of them, as a socket with room does; ``full`` sockets take nothing."""
        if self.full:
            return "".join(texts).encode()
        self.send_texts(texts)
        return b""

    def send_bytes(self, data):
        self.writes += 1
        self.waited.append(data)

    def send_texts(self, texts):
        self.writes += 1
        self.sent.extend(map(json.loads, texts))

    def close(self, code, reason):
        self.closed = (code, reason)

    def abort(self):
        self.closed = "aborted"

    def backlog(self):
        return 0, 0

    def ping(self):
        self.pings += 1
        return True

    def answered(self):
        return self.pong

    def keepalive(self, now):
        return None


def connection(bus=None, scheduler=None):
    scheduler, transport = scheduler or Scheduler(), Transport()
    conn = ConnectionRuntime(transport, lambda func, *args: func(*args), bus, scheduler)
    conn.open()
    return conn, scheduler, transport


def test_an_idle_connection_holds_no_thread_and_no_queue():
    conn, scheduler, transport = connection()
    conn.receive(CONNECT)
    conn.receive('{"msg":"sub","id":"s","name":"meteor.loginServiceConfiguration","params":[]}')
    conn.receive('{"msg":"method","id":"m","method":"test.echo","params":[1]}')
    scheduler.run()
    kinds = [message["msg"] for message in transport.sent]
    assert kinds[:2] == ["connected", "ready"]
    assert {"result", "updated"} <= set(kinds)
    assert scheduler.pending == []
    assert conn.inbox is None and conn.outbox is None
    conn.finish()
    scheduler.run()
    assert transport.closed == (1000, None)


def test_a_burst_is_run_by_one_worker_and_written_by_one_writer_in_one_write():
    conn, scheduler, transport = connection()
    conn.receive(CONNECT)
    scheduler.run()
    del scheduler.started[:]
    transport.writes = 0
    for n in range(50):
        conn.receive(json.dumps({"msg": "method", "id": str(n), "method": "test.echo"}))
    scheduler.run()
    assert scheduler.started == ["_work", "_flush"]
    assert transport.writes == 1  # 100 messages, one system call
    results = [message["id"] for message in transport.sent if message["msg"] == "result"]
    assert results == [str(n) for n in range(50)]


def test_what_a_full_socket_does_not_take_goes_to_a_writer_of_its_own_first():
    conn, scheduler, transport = connection()
    conn.receive(CONNECT)
    scheduler.run()
    transport.full = True
    sent = metrics.counters["ddp_messages_sent_total"]
    conn.receive('{"msg":"method","id":"1","method":"test.echo"}')
    scheduler.pending.pop(0)()  # the worker: result and updated are queued
    scheduler.pending.pop(0)()  # the flusher: the socket takes none of it
    assert scheduler.pending[0].func.__name__ == "_write"
    transport.full = False
    conn.receive('{"msg":"ping","id":"after"}')  # answered at once, queued behind them
    scheduler.run()
    result = b'{"msg":"result","id":"1","result":[]}'
    assert transport.waited == [result + b'{"msg":"updated","methods":["1"]}']
    assert transport.sent[-1] == {"msg": "pong", "id": "after"}
    assert conn.outbox is None and conn.queued_bytes == 0 and conn.queued_messages == 0
    # Result, updated and pong, each counted once, though two went out in two writes.
    assert metrics.counters["ddp_messages_sent_total"] - sent == 3


def test_requests_after_shut_down_are_not_run_and_the_close_comes_last():
    conn, scheduler, transport = connection()
    conn.receive(CONNECT)
    conn.receive('{"msg":"method","id":"before","method":"test.echo"}')
    conn.shut_down(1001, "Server shutting down")
    conn.receive('{"msg":"method","id":"after","method":"test.echo"}')
    scheduler.run()
    ids = [message.get("id") for message in transport.sent if message["msg"] == "result"]
    assert ids == ["before"]
    assert transport.closed == (1001, "Server shutting down")


@override_settings(DDP={"HEARTBEAT_INTERVAL": 10, "HEARTBEAT_TIMEOUT": 5})
def test_beat_pings_after_the_interval_and_closes_after_the_timeout(clock):
    conn, scheduler, transport = connection(scheduler=clock)
    conn.receive(CONNECT)
    scheduler.run()
    connected = len(transport.sent)
    clock.now += 9
    conn.beat(clock.now)
    assert len(transport.sent) == connected
    clock.now += 1
    conn.beat(clock.now)
    scheduler.run()
    assert transport.sent[connected:] == [{"msg": "ping"}]
    clock.now += 4
    conn.receive('{"msg":"pong"}')  # an answer puts the probe off
    clock.now += 1
    conn.beat(clock.now)
    clock.now += 5
    conn.beat(clock.now)
    scheduler.run()
    assert transport.closed is None
    assert transport.sent[connected:] == [{"msg": "ping"}]
    clock.now += 4  # ten seconds of silence since the pong: a second ping
    conn.beat(clock.now)
    clock.now += 4.9
    conn.beat(clock.now)
    scheduler.run()
    assert transport.sent[connected:] == [{"msg": "ping"}, {"msg": "ping"}]
    assert transport.closed is None
    clock.now += 0.1
    conn.beat(clock.now)
    conn.beat(clock.now + 100)  # closed once
    scheduler.run()
    assert transport.closed == (1001, "Heartbeat timeout")
    assert transport.sent[connected:] == [{"msg": "ping"}, {"msg": "ping"}]


@override_settings(DDP={"HEARTBEAT_INTERVAL": 10, "HEARTBEAT_TIMEOUT": 5})
def test_beat_closes_a_socket_that_never_connects_without_a_ping(clock):
    conn, scheduler, transport = connection(scheduler=clock)
    clock.now += 10
    conn.beat(clock.now)
    clock.now += 5
    conn.beat(clock.now)
    scheduler.run()
    assert transport.sent == []
    assert transport.closed == (1001, "Heartbeat timeout")


@override_settings(DDP={"HEARTBEAT_INTERVAL": 10, "HEARTBEAT_TIMEOUT": 5})
def test_beat_pings_pre1_through_its_transport_only(clock):
    conn, scheduler, transport = connection(scheduler=clock)
    conn.receive('{"msg":"connect","version":"pre1","support":["pre1"]}')
    transport.pong = True  # a peer that answers every ping
    for _ in range(10):
        clock.now += 10
        conn.beat(clock.now)
    scheduler.run()
    assert [message["msg"] for message in transport.sent] == ["connected"]
    assert transport.closed is None
    assert transport.pings == 5  # every other beat: one probes, the next sees the answer
    transport.pong = False  # the peer died
    clock.now += 10
    conn.beat(clock.now)
    clock.now += 5
    conn.beat(clock.now)
    scheduler.run()
    assert transport.closed == (1001, "Heartbeat timeout")


class UnreachableRegistry(InMemoryBus):
    """A bus whose database went away: unsubscribing fails, as mid-restart PostgreSQL."""

    def unsubscribe(self, session, key, collections):
        raise OperationalError("server closed the connection unexpectedly")


def test_a_database_error_in_unsub_still_gets_its_nosub_and_the_connection_goes_on():
    conn, scheduler, transport = connection(UnreachableRegistry())
    conn.receive(CONNECT)
    for sub_id in ("gone", "kept"):
        conn.receive(json.dumps({"msg": "sub", "id": sub_id, "name": "AllBooks", "params": []}))
    conn.receive('{"msg":"unsub","id":"gone"}')
    conn.receive('{"msg":"method","id":"m","method":"test.echo","params":[1]}')
    scheduler.run()
    replies = [(m["msg"], m.get("id")) for m in transport.sent if m["msg"] in ("nosub", "result")]
    assert replies == [("nosub", "gone"), ("result", "m")]
    assert "error" not in next(m for m in transport.sent if m["msg"] == "nosub")
    # Its teardown fails to unsubscribe "kept" too, and still ends.
    conn.finish()
    scheduler.run()
    assert transport.closed == (1000, None)


def test_a_request_the_session_cannot_answer_closes_with_1011_and_finish_returns():
    conn, scheduler, transport = connection()
    conn.receive(CONNECT)
    scheduler.run()

    def broken(request):
        raise RuntimeError("a bug below the session's own error handling")

    conn.session.handle = broken
    conn.receive('{"msg":"method","id":"m","method":"test.echo","params":[1]}')
    conn.receive('{"msg":"method","id":"n","method":"test.echo","params":[2]}')
    scheduler.run()
    assert transport.closed == (1011, "Internal error")
    assert not [m for m in transport.sent if m["msg"] == "result"]
    assert conn.inbox is None
    conn.finish()
    scheduler.run()


class NoFence(InMemoryBus):
    """A bus whose fence cannot be sent: the database went away after the COMMIT."""

    def fence(self):
        super().fence()
        raise OperationalError("server closed the connection unexpectedly")


def test_a_fence_that_fails_still_answers_the_method_whose_writes_committed():
    from ddp.bus.producer import use_backend

    bus = NoFence()
    previous = use_backend(bus)
    try:
        conn, scheduler, transport = connection(bus)
        conn.receive(CONNECT)
        conn.receive('{"msg":"sub","id":"s","name":"AllBooks","params":[]}')
        call = {"msg": "method", "id": "m", "method": "bookstore.addBook"}
        conn.receive(json.dumps({**call, "params": ["Fenced", "fence@example.com"]}))
        scheduler.run()
    finally:
        use_backend(previous)
    kinds = [(m["msg"], m.get("id") or m.get("methods")) for m in transport.sent]
    assert ("result", "m") in kinds and ("updated", ["m"]) in kinds
    assert transport.closed is None
