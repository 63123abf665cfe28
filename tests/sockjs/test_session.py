"""The session's rules without a server: a fake receiver, a recording app, real threads."""

import threading
import time

import pytest

from ddp.sockjs.server import SockJSOptions
from ddp.sockjs.session import ANOTHER_CONNECTION, SockJSSession, State, Sweeper

pytestmark = pytest.mark.quick


class Receiver:
    def __init__(self):
        self.wakes = 0
        self.cut_off = False

    def wake(self):
        self.wakes += 1

    def cut(self):
        self.cut_off = True


class Recorder:
    """An app that notes its calls, and whether two ``on_message`` ever overlapped."""

    def __init__(self, delay=0.0):
        self.calls = []
        self.delay = delay
        self.active = 0
        self.overlapped = False
        self.closed = threading.Event()

    def on_open(self, session):
        self.calls.append("open")

    def on_message(self, session, text):
        self.active += 1
        self.overlapped |= self.active > 1
        time.sleep(self.delay)
        self.calls.append(text)
        self.active -= 1

    def on_close(self, session):
        self.calls.append("close")
        self.closed.set()


def make_session(app=None, slow_client=None, **options):
    forgotten = []
    options.setdefault("disconnect_delay", 60.0)
    session = SockJSSession(
        "id",
        {"PATH_INFO": "/"},
        app or Recorder(),
        threading.Lock(),
        SockJSOptions(**options),
        forgotten.append,
        slow_client=slow_client,
    )
    return session, forgotten


def test_open_then_batched_messages():
    session, _ = make_session()
    receiver = Receiver()
    assert session.attach(receiver) == (["o"], True)
    session.send("a")
    session.send("b")
    assert receiver.wakes == 2
    assert session.take() == (['a["a","b"]'], False)
    assert session.take() == ([], False)


def test_one_receiver_at_a_time():
    session, _ = make_session()
    first = Receiver()
    session.attach(first)
    assert session.attach(Receiver()) == ([ANOTHER_CONNECTION], False)
    session.detach(first, aborted=False)
    session.send("a")
    assert session.attach(Receiver()) == (['a["a"]'], True)


def test_closing_sends_what_is_queued_then_the_close_frame_to_every_request():
    session, _ = make_session()
    receiver = Receiver()
    session.attach(receiver)
    session.send("a")
    session.close()
    session.send("dropped")
    assert session.take() == (['a["a"]', 'c[3000,"Go away!"]'], True)
    session.detach(receiver, aborted=False)
    assert session.attach(Receiver()) == (['c[3000,"Go away!"]'], False)
    assert session.state is State.CLOSING


def test_expires_after_the_disconnect_delay_and_calls_the_app_in_order():
    app = Recorder()
    session, forgotten = make_session(app, disconnect_delay=0.1)
    receiver = Receiver()
    session.attach(receiver)
    session.receive(["a", "b"])
    session.detach(receiver, aborted=False)
    assert app.closed.wait(5)
    assert session.state is State.CLOSED
    assert forgotten == [session]
    assert app.calls == ["open", "a", "b", "close"]
    assert session.attach(Receiver()) is None


def test_a_new_request_stops_the_countdown():
    app = Recorder()
    session, _ = make_session(app, disconnect_delay=0.2)
    receiver = Receiver()
    session.attach(receiver)
    session.detach(receiver, aborted=False)
    time.sleep(0.1)
    session.attach(receiver)
    time.sleep(0.3)
    assert session.state is State.OPEN


def test_an_aborted_request_ends_the_session_at_once():
    app = Recorder()
    session, forgotten = make_session(app)
    receiver = Receiver()
    session.attach(receiver)
    session.detach(receiver, aborted=True)
    assert forgotten == [session]
    assert app.closed.wait(5)


def test_messages_reach_the_app_one_at_a_time_in_order():
    app = Recorder(delay=0.01)
    session, _ = make_session(app)
    receiver = Receiver()
    session.attach(receiver)
    senders = [
        threading.Thread(target=session.receive, args=([f"{n}a", f"{n}b"],)) for n in range(10)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    session.detach(receiver, aborted=True)
    assert app.closed.wait(5)
    assert not app.overlapped
    messages = app.calls[1:-1]
    assert len(messages) == 20
    for n in range(10):
        assert messages.index(f"{n}a") + 1 == messages.index(f"{n}b")


def test_a_failing_app_does_not_stop_the_session(caplog):
    class Failing(Recorder):
        def on_message(self, session, text):
            if text == "boom":
                raise ValueError(text)
            super().on_message(session, text)

    app = Failing()
    session, _ = make_session(app)
    receiver = Receiver()
    session.attach(receiver)
    session.receive(["boom", "after"])
    session.detach(receiver, aborted=True)
    assert app.closed.wait(5)
    assert app.calls == ["open", "after", "close"]
    assert "on_message" in caplog.text


def test_shut_down_waits_for_the_receiving_request():
    app = Recorder()
    session, forgotten = make_session(app)
    receiver = Receiver()
    session.attach(receiver)
    session.shut_down(1001, "Server shutting down")
    assert receiver.wakes == 1
    assert session.take() == (['c[1001,"Server shutting down"]'], True)
    assert forgotten == []
    session.detach(receiver, aborted=False)
    assert forgotten == [session]


def test_a_client_that_falls_behind_is_cut_off():
    app = Recorder()
    slow = []
    session, forgotten = make_session(app, lambda: slow.append(1), max_queued_messages=2)
    receiver = Receiver()
    session.attach(receiver)
    session.send("a")
    session.send("b")
    assert not receiver.cut_off
    session.send("c")
    assert receiver.cut_off
    assert forgotten == [session]
    assert slow == [1]  # the host is told, once: it counts
    assert session.take() == ([], True)
    session.detach(receiver, aborted=False)
    assert app.closed.wait(5)
    assert app.calls == ["open", "close"]


def test_taking_makes_room():
    session, forgotten = make_session(max_queued_bytes=3)
    session.attach(Receiver())
    session.send("ab")
    session.take()
    session.send("cd")
    assert forgotten == []
    session.send("ef")
    assert forgotten == [session]


def test_the_app_has_a_thread_only_while_it_has_events():
    spawned = []
    app = Recorder()
    session = SockJSSession(
        "id",
        {"PATH_INFO": "/"},
        app,
        threading.Lock(),
        SockJSOptions(disconnect_delay=60.0),
        lambda session: None,
        spawn=spawned.append,
    )
    session.attach(Receiver())
    session.receive(["a", "b"])
    assert len(spawned) == 1  # open, a and b: one thread, in order
    spawned.pop()()
    assert app.calls == ["open", "a", "b"]
    assert spawned == []  # idle: no thread waits for the next message
    session.receive(["c"])
    assert len(spawned) == 1
    spawned.pop()()
    assert app.calls == ["open", "a", "b", "c"]


def test_detached_sessions_share_one_sweeper_thread_that_expires_them_in_turn():
    """Not a timer thread per session between two polls: one, while any waits."""
    lock, spawned, forgotten = threading.Lock(), [], []
    sweeper = Sweeper(lock, spawned.append)
    options = SockJSOptions(disconnect_delay=0.05)
    sessions = []
    for n in range(3):
        session = SockJSSession(
            str(n),
            {},
            Recorder(),
            lock,
            options,
            forgotten.append,
            spawned.append,
            "",
            None,
            sweeper,
        )
        receiver = Receiver()
        session.attach(receiver)
        session.detach(receiver, aborted=False)
        sessions.append(session)
    sessions[1].attach(Receiver())  # polled again: it stays
    (sweeping,) = [thread for thread in spawned if getattr(thread, "__self__", None) is sweeper]
    sweeping()  # sleeps until each is due, then ends: none is left waiting
    assert [s.state for s in sessions] == [State.CLOSED, State.OPEN, State.CLOSED]
    assert forgotten == [sessions[0], sessions[2]]
