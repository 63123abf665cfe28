"""Session rules: one receiving request at a time, closing, broken-off requests, timeouts.

After sockjs-protocol's Protocol and HandlingClose (PROTOCOL.md T7). The test server uses
sockjs-node's default ``disconnect_delay`` of 5 s, so two tests wait that long.
"""

import time

from tests.sockjs.wire import Connection, fetch, session_url

ANOTHER = 'c[2010,"Another connection still open"]\n'
GO_AWAY = 'c[3000,"Go away!"]\n'
DISCONNECT_DELAY = 5.0


def hold_poll(port, url):
    """A poll left waiting on the server; close it to break it off."""
    held = Connection(port)
    held.send_request("POST", url + "/xhr")
    time.sleep(0.25)
    return held


def test_one_receiving_request_at_a_time(port):
    url = session_url()
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    held = hold_poll(port, url)
    r = fetch(port, "POST", url + "/xhr")
    assert (r.status, r.body) == (200, ANOTHER)
    # The first request still holds the session and gets what comes next.
    assert fetch(port, "POST", url + "/xhr_send", '["a"]').status == 204
    assert held.read_head().read_body() == 'a["a"]\n'
    held.close()


def test_a_closed_session_answers_with_its_close_frame(port):
    url = session_url("close")
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    assert fetch(port, "POST", url + "/xhr").body == GO_AWAY
    assert fetch(port, "POST", url + "/xhr").body == GO_AWAY
    # Messages to a closing session are accepted and dropped.
    assert fetch(port, "POST", url + "/xhr_send", '["a"]').status == 204
    assert fetch(port, "POST", url + "/xhr").body == GO_AWAY


def test_streaming_ends_with_the_close_frame(port):
    url = session_url("close")
    with Connection(port) as first, Connection(port) as second:
        r1 = first.request("POST", url + "/xhr_streaming")
        r1.read_frame()  # prelude
        assert r1.read_frame() == "o\n"
        assert r1.read_frame() == GO_AWAY
        # The closing session let go of the first request: the next gets the close frame.
        r2 = second.request("POST", url + "/xhr_streaming")
        r2.read_frame()
        assert r2.read_frame() == GO_AWAY
        assert r1.read_frame() == ""
        assert r2.read_frame() == ""


def test_streaming_refuses_a_second_receiver(port):
    url = session_url()
    with Connection(port) as first, Connection(port) as second:
        r1 = first.request("POST", url + "/xhr_streaming")
        r1.read_frame()
        assert r1.read_frame() == "o\n"
        r2 = second.request("POST", url + "/xhr_streaming")
        r2.read_frame()
        assert r2.read_frame() == ANOTHER
        assert r2.read_frame() == ""


def test_a_broken_off_stream_ends_the_session(port):
    url = session_url()
    first = Connection(port)
    r1 = first.request("POST", url + "/xhr_streaming")
    r1.read_frame()
    assert r1.read_frame() == "o\n"
    first.close()
    time.sleep(0.25)
    with Connection(port) as again:
        r = again.request("POST", url + "/xhr_streaming")
        r.read_frame()
        assert r.read_frame() == "o\n"


def test_a_broken_off_poll_ends_the_session(port):
    url = session_url()
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    held = hold_poll(port, url)
    assert fetch(port, "POST", url + "/xhr").body == ANOTHER
    held.close()
    time.sleep(0.25)
    # A new session: sockjs-node forgets the old one at once.
    assert fetch(port, "POST", url + "/xhr").body == "o\n"


def test_a_session_without_receiver_expires_after_the_disconnect_delay(port):
    url = session_url()
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    time.sleep(DISCONNECT_DELAY - 2)
    # Sending is no receiving request: it keeps no session alive.
    assert fetch(port, "POST", url + "/xhr_send", '["a"]').status == 204
    time.sleep(3)
    assert fetch(port, "POST", url + "/xhr_send", '["a"]').status == 404


def test_a_closed_session_answers_until_it_expires(port):
    url = session_url("close")
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    assert fetch(port, "POST", url + "/xhr").body == GO_AWAY
    time.sleep(DISCONNECT_DELAY + 1)
    # Expired: the same id opens a new session (which the service closes again).
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
