"""Session rules on the real server, where the real socket matters (PROTOCOL.md T7).

After sockjs-protocol's Protocol and HandlingClose: a request held on the server's socket,
and a client that drops its TCP connection mid-poll. The other session rules, and every
one that waits for a timeout, run in process on the fake clock (``test_session_clock.py``).
"""

import time

from tests.sockjs.wire import Connection, fetch, session_url

ANOTHER = 'c[2010,"Another connection still open"]\n'
GO_AWAY = 'c[3000,"Go away!"]\n'


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


def test_a_broken_off_poll_ends_the_session(port):
    url = session_url()
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    held = hold_poll(port, url)
    assert fetch(port, "POST", url + "/xhr").body == ANOTHER
    held.close()
    time.sleep(0.25)
    # A new session: sockjs-node forgets the old one at once.
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
