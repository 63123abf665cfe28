"""The session's rules without a server: a fake receiver, a recording app, the fake clock."""

import pytest

from ddp.sockjs.server import SockJSOptions
from ddp.sockjs.session import ANOTHER_CONNECTION, SockJSSession, State, Sweeper
from ddp.testing.driver import FakeDriver

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
    """An app that notes what its sessions' clients send, and when it is told they ended."""

    def __init__(self):
        self.calls = []
        self.connected = []

    def connect(self, session):
        self.connected.append(session)
        self.calls.append("open")
        return self  # receives the client's messages

    def receive(self, text):
        self.calls.append(text)

    def disconnect(self, connection):
        assert connection is self
        self.calls.append("close")


@pytest.fixture
def driver():
    return FakeDriver()


def make_session(driver, app=None, **options):
    forgotten = []
    options.setdefault("disconnect_delay", 60.0)
    session = SockJSSession(
        "id",
        {"PATH_INFO": "/"},
        app or Recorder(),
        SockJSOptions(**options),
        forgotten.append,
        driver,
        Sweeper(driver),
    )
    return session, forgotten


def test_open_then_batched_messages(driver):
    app = Recorder()
    session, _ = make_session(driver, app)
    receiver = Receiver()
    assert session.attach(receiver) == (["o"], True)
    assert app.connected == [session]  # the first receiving request hands it to the app
    session.send_now(["a"])
    session.send_texts(["b", "c"])
    assert receiver.wakes == 2
    assert session.backlog() == (3, 3)
    assert session.take() == (['a["a","b","c"]'], False)
    assert session.backlog() == (0, 0)
    assert session.take() == ([], False)


def test_one_receiver_at_a_time(driver):
    app = Recorder()
    session, _ = make_session(driver, app)
    first = Receiver()
    session.attach(first)
    assert session.attach(Receiver()) == ([ANOTHER_CONNECTION], False)
    session.detach(first, aborted=False)
    session.send_now(["a"])
    assert session.attach(Receiver()) == (['a["a"]'], True)
    assert app.connected == [session]


def test_closing_sends_what_is_queued_then_the_close_frame_to_every_request(driver):
    app = Recorder()
    session, forgotten = make_session(driver, app)
    receiver = Receiver()
    session.attach(receiver)
    session.send_now(["a"])
    session.receive(["before"])
    session.close(3000, "Go away!")
    session.send_now(["dropped"])
    session.receive(["after"])
    assert session.take() == (['a["a"]', 'c[3000,"Go away!"]'], True)
    session.detach(receiver, aborted=False)
    assert session.attach(Receiver()) == (['c[3000,"Go away!"]'], False)
    assert session.state is State.CLOSING
    # The app is done with it at the close (in a thread of its own), not when SockJS
    # forgets it.
    assert app.calls == ["open", "before"]
    driver.run()
    assert app.calls == ["open", "before", "close"]
    assert forgotten == []


def test_expires_after_the_disconnect_delay_and_tells_the_app_once_in_order(driver):
    app = Recorder()
    session, forgotten = make_session(driver, app, disconnect_delay=5)
    receiver = Receiver()
    session.attach(receiver)
    session.receive(["a", "b"])
    session.detach(receiver, aborted=False)
    driver.advance(4.9)
    assert session.state is State.OPEN
    assert forgotten == []
    driver.advance(0.1)
    assert session.state is State.CLOSED
    assert forgotten == [session]
    session.close(3000, "Go away!")  # too late: nothing more to tell
    assert app.calls == ["open", "a", "b", "close"]
    assert session.attach(Receiver()) is None


def test_a_new_request_stops_the_countdown(driver):
    app = Recorder()
    session, _ = make_session(driver, app, disconnect_delay=5)
    receiver = Receiver()
    session.attach(receiver)
    session.detach(receiver, aborted=False)
    driver.advance(4)
    session.attach(receiver)
    driver.advance(60)
    assert session.state is State.OPEN
    # Detached again, it gets the whole delay anew.
    session.detach(receiver, aborted=False)
    driver.advance(4.9)
    assert session.state is State.OPEN
    driver.advance(0.1)
    assert session.state is State.CLOSED


def test_an_aborted_request_ends_the_session_at_once(driver):
    app = Recorder()
    session, forgotten = make_session(driver, app)
    receiver = Receiver()
    session.attach(receiver)
    session.detach(receiver, aborted=True)
    assert forgotten == [session]
    driver.run()
    assert app.calls == ["open", "close"]


def test_messages_go_straight_to_the_app_in_order_with_no_thread_of_the_sessions(driver):
    """The app's runtime orders and runs them (R7): the session starts nothing."""
    app = Recorder()
    session, _ = make_session(driver, app)
    session.attach(Receiver())
    session.receive(["a", "b"])
    session.receive(["c"])
    assert app.calls == ["open", "a", "b", "c"]
    assert driver.idle


def test_shut_down_waits_for_the_receiving_request(driver):
    app = Recorder()
    session, forgotten = make_session(driver, app)
    receiver = Receiver()
    session.attach(receiver)
    session.shut_down(1001, "Server shutting down")
    assert receiver.wakes == 1
    assert session.take() == (['c[1001,"Server shutting down"]'], True)
    assert forgotten == []
    session.detach(receiver, aborted=False)
    assert forgotten == [session]


def test_abort_cuts_the_request_and_ends_the_session_at_once(driver):
    """What the host's bounded outbox does to a client that stopped polling."""
    app = Recorder()
    session, forgotten = make_session(driver, app)
    receiver = Receiver()
    session.attach(receiver)
    session.send_now(["a"])
    session.abort()
    assert receiver.cut_off
    assert forgotten == [session]
    assert session.backlog() == (0, 0)
    assert session.take() == ([], True)
    session.detach(receiver, aborted=False)
    session.abort()
    driver.run()
    assert app.calls == ["open", "close"]


def test_detached_sessions_share_one_sweeper_thread_that_expires_them_in_turn(driver):
    """Not a timer thread per session between two polls: one, while any waits."""
    spawned, forgotten, told = [], [], []

    class Counting:
        """The driver, counting the threads started on it."""

        def __getattr__(self, name):
            return getattr(driver, name)

        def spawn(self, function, *args):
            spawned.append(function)
            driver.spawn(function, *args)

    counting = Counting()
    sweeper = Sweeper(counting)
    options = SockJSOptions(disconnect_delay=5)
    sessions = []
    for n in range(3):
        app = Recorder()
        app.disconnect = told.append
        session = SockJSSession(str(n), {}, app, options, forgotten.append, counting, sweeper)
        receiver = Receiver()
        session.attach(receiver)
        session.detach(receiver, aborted=False)
        sessions.append(session)
        driver.advance(1)
    polling = Receiver()
    sessions[1].attach(polling)  # polled again: it stays
    assert [getattr(f, "__self__", None) for f in spawned] == [sweeper]
    driver.advance(2.5)  # the first is due 5 s after its detach
    assert [s.state for s in sessions] == [State.CLOSED, State.OPEN, State.OPEN]
    driver.advance(2)
    assert [s.state for s in sessions] == [State.CLOSED, State.OPEN, State.CLOSED]
    assert forgotten == [sessions[0], sessions[2]]
    # The app hears of each expired session, in a thread of its own.
    assert len(told) == 2
    assert len(spawned) == 3
    # The sweeper ended, none being left to wait: the next detach starts it again.
    sessions[1].detach(polling, aborted=False)
    assert [getattr(f, "__self__", None) for f in spawned[3:]] == [sweeper]
