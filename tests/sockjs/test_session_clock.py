"""Session rules over xhr requests, in process on the fake clock (PROTOCOL.md T7).

What ``test_session_live.py`` checks on the real server where the real socket matters; the
rest of sockjs-protocol's Protocol and HandlingClose cases run here, where the 5 s
``disconnect_delay`` passes in ``driver.advance()``.
"""

import pytest

from tests.sockjs.inprocess import Served
from tests.sockjs.test_server_options import Echo

pytestmark = pytest.mark.quick

ANOTHER = 'c[2010,"Another connection still open"]\n'
GO_AWAY = 'c[3000,"Go away!"]\n'
PRELUDE = "h" * 2048 + "\n"
URL = "/sockjs/000/s"


class Close(Echo):
    """The test server's ``/close``: each session is closed as soon as it opens (by the
    app's own thread, as a runtime closes)."""

    def __init__(self, driver):
        super().__init__()
        self.driver = driver

    def connect(self, session):
        self.driver.spawn(session.close, 3000, "Go away!")
        return super().connect(session)


@pytest.fixture
def served():
    served = Served(Echo(), disconnect_delay=5)
    yield served
    served.close()


@pytest.fixture
def closing():
    served = Served(None, disconnect_delay=5)
    served.server.app = Close(served.driver)
    yield served
    served.close()


def test_one_receiving_request_at_a_time(served):
    assert served.fetch("POST", URL + "/xhr").body == "o\n"
    held = served.start("POST", URL + "/xhr")
    assert served.fetch("POST", URL + "/xhr").body == ANOTHER
    # The first request still holds the session and gets what comes next.
    assert served.fetch("POST", URL + "/xhr_send", '["a"]').status == 204
    assert (held.done, held.body) == (True, 'a["a"]\n')


def test_streaming_refuses_a_second_receiver(served):
    first = served.start("POST", URL + "/xhr_streaming")
    assert first.chunks == [PRELUDE, "o\n"]
    second = served.fetch("POST", URL + "/xhr_streaming")
    assert second.chunks == [PRELUDE, ANOTHER]
    assert not first.done


def test_streaming_ends_with_the_close_frame(closing):
    first = closing.fetch("POST", URL + "/xhr_streaming")
    assert first.chunks == [PRELUDE, "o\n", GO_AWAY]
    # The closing session let go of the first request: the next gets the close frame.
    second = closing.fetch("POST", URL + "/xhr_streaming")
    assert second.chunks == [PRELUDE, GO_AWAY]


def test_a_broken_off_stream_ends_the_session(served):
    first = served.start("POST", URL + "/xhr_streaming")
    assert first.chunks == [PRELUDE, "o\n"]
    first.leave()
    served.driver.run()
    assert first.done
    assert served.server.connections == set()
    assert served.server.app.closed == 1
    # A new session: sockjs-node forgets the old one at once.
    again = served.start("POST", URL + "/xhr_streaming")
    assert again.chunks == [PRELUDE, "o\n"]


def test_a_broken_off_poll_ends_the_session(served):
    assert served.fetch("POST", URL + "/xhr").body == "o\n"
    held = served.start("POST", URL + "/xhr")
    held.leave()
    served.driver.run()
    assert (held.done, held.body) == (True, "")
    assert served.fetch("POST", URL + "/xhr").body == "o\n"
    assert len(served.server.app.sessions) == 2


def test_a_session_without_receiver_expires_after_the_disconnect_delay(served):
    assert served.fetch("POST", URL + "/xhr").body == "o\n"
    served.driver.advance(3)
    # Sending is no receiving request: it keeps no session alive.
    assert served.fetch("POST", URL + "/xhr_send", '["a"]').status == 204
    served.driver.advance(1.9)
    assert served.fetch("POST", URL + "/xhr_send", '["a"]').status == 204
    served.driver.advance(0.1)
    assert served.fetch("POST", URL + "/xhr_send", '["a"]').status == 404


def test_a_held_poll_keeps_the_session_past_the_disconnect_delay(served):
    assert served.fetch("POST", URL + "/xhr").body == "o\n"
    held = served.start("POST", URL + "/xhr")
    served.driver.advance(20)  # under the 25 s heartbeat: the poll is still held
    assert not held.done
    assert served.fetch("POST", URL + "/xhr_send", '["a"]').status == 204
    assert held.body == 'a["a"]\n'


def test_a_closed_session_answers_until_it_expires(closing):
    assert closing.fetch("POST", URL + "/xhr").body == "o\n"
    assert closing.fetch("POST", URL + "/xhr").body == GO_AWAY
    # Messages to a closing session are accepted and dropped.
    assert closing.fetch("POST", URL + "/xhr_send", '["a"]').status == 204
    closing.driver.advance(4.9)
    assert closing.fetch("POST", URL + "/xhr").body == GO_AWAY
    closing.driver.advance(4.9)  # each request starts the delay again
    assert closing.fetch("POST", URL + "/xhr").body == GO_AWAY
    closing.driver.advance(5)
    # Expired: the same id opens a new session (which the app closes again).
    assert closing.fetch("POST", URL + "/xhr").body == "o\n"
    assert len(closing.server.app.sessions) == 2
