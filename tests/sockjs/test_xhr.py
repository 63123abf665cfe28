"""XHR polling, ``xhr_send``, XHR streaming and JSESSIONID cookies.

After sockjs-protocol's XhrPolling, XhrStreaming and JsessionidCookie (PROTOCOL.md T5,
T6, T9, T10).
"""

import pytest

from tests.sockjs.checks import assert_cors, assert_not_cached, assert_preflight, content_type
from tests.sockjs.wire import Connection, fetch, session_url


@pytest.mark.parametrize("transport", ["xhr", "xhr_send", "xhr_streaming"])
def test_preflight(port, transport):
    assert_preflight(port, f"/echo/abc/abc/{transport}", "OPTIONS, POST")


def test_polling(port):
    url = session_url()
    r = fetch(port, "POST", url + "/xhr", headers={"Origin": "test"})
    assert r.status == 200
    assert r.body == "o\n"
    assert content_type(r) == "application/javascript;charset=UTF-8"
    assert_cors(r, "test")
    assert_not_cached(r)

    r = fetch(port, "POST", url + "/xhr_send", '["x"]', headers={"Origin": "test"})
    assert r.status == 204
    assert r.body == ""
    # Firefox takes a 204 without a content type for XML.
    assert content_type(r) == "text/plain;charset=UTF-8"
    assert_cors(r, "test")
    assert_not_cached(r)

    r = fetch(port, "POST", url + "/xhr")
    assert r.status == 200
    assert r.body == 'a["x"]\n'


def test_sending_to_an_unknown_session(port):
    assert fetch(port, "POST", session_url() + "/xhr_send", '["x"]').status == 404


def test_broken_payloads(port):
    url = session_url()
    assert fetch(port, "POST", url + "/xhr").body == "o\n"

    r = fetch(port, "POST", url + "/xhr_send", '["x')
    assert r.status == 500
    assert "Broken JSON encoding." in r.body
    r = fetch(port, "POST", url + "/xhr_send", "")
    assert r.status == 500
    assert "Payload expected." in r.body
    r = fetch(port, "POST", url + "/xhr_send", '{"not": "an array"}')
    assert r.status == 500
    assert "Payload expected." in r.body
    r = fetch(port, "POST", url + "/xhr_send", b'["\xff"]')
    assert r.status == 500
    assert "Broken JSON encoding." in r.body

    r = fetch(port, "POST", url + "/xhr_send", '["a"]')
    assert (r.status, r.body) == (204, "")
    assert fetch(port, "POST", url + "/xhr").body == 'a["a"]\n'


def test_content_types_and_batching(port):
    url = session_url()
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    types = [
        "text/plain",
        "T",
        "application/json",
        "application/xml",
        "",
        "application/json; charset=utf-8",
        "text/xml; charset=utf-8",
        "text/xml",
    ]
    for kind in types:
        r = fetch(port, "POST", url + "/xhr_send", '["a"]', headers={"Content-Type": kind})
        assert (r.status, r.body) == (204, "")
    # Everything queued goes out in one frame.
    assert fetch(port, "POST", url + "/xhr").body == "a[" + ",".join(['"a"'] * len(types)) + "]\n"


def test_other_content_types_carry_no_payload(port):
    url = session_url()
    fetch(port, "POST", url + "/xhr")
    r = fetch(
        port,
        "POST",
        url + "/xhr_send",
        '["a"]',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status == 500
    assert "Payload expected." in r.body


@pytest.mark.parametrize(
    ("requested", "allowed"), [("a, b, c", "a, b, c"), ("", None), (None, None)]
)
def test_preflight_echoes_the_requested_headers(port, requested, allowed):
    headers = {"Origin": "test", "Access-Control-Request-Method": "POST"}
    if requested is not None:
        headers["Access-Control-Request-Headers"] = requested
    r = fetch(port, "OPTIONS", session_url() + "/xhr", headers=headers)
    assert r.status == 204
    assert_cors(r, "test")
    assert r["access-control-allow-headers"] == allowed


def test_sending_an_empty_frame(port):
    url = session_url()
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    assert fetch(port, "POST", url + "/xhr_send", "[]").status == 204
    assert fetch(port, "POST", url + "/xhr_send", '["a"]').status == 204
    assert fetch(port, "POST", url + "/xhr").body == 'a["a"]\n'


def test_a_held_poll_gets_the_message_when_it_comes(port):
    url = session_url()
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    with Connection(port) as held:
        held.send_request("POST", url + "/xhr")
        assert fetch(port, "POST", url + "/xhr_send", '["late"]').status == 204
        assert held.read_head().read_body() == 'a["late"]\n'


def test_a_session_answers_only_the_address_that_opened_it(port):
    url = session_url()
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    with Connection(port) as held:
        held.send_request("POST", url + "/xhr")
        # From another address, the id alone is worth nothing: no such session.
        for transport, body in [("xhr_send", '["stolen"]'), ("xhr", ""), ("xhr_streaming", "")]:
            r = fetch(port, "POST", f"{url}/{transport}", body, source="127.0.0.2")
            assert (r.status, r.body) == (404, "404 Error: Page not found\n")
        # And the session goes on for its own client, undisturbed.
        assert fetch(port, "POST", url + "/xhr_send", '["mine"]').status == 204
        assert held.read_head().read_body() == 'a["mine"]\n'
    assert fetch(port, "POST", url + "/xhr_send", '["again"]').status == 204
    assert fetch(port, "POST", url + "/xhr").body == 'a["again"]\n'


def test_streaming(port):
    url = session_url()
    with Connection(port) as c:
        r = c.request("POST", url + "/xhr_streaming", headers={"Origin": "test"})
        assert r.status == 200
        assert r.chunked
        assert content_type(r) == "application/javascript;charset=UTF-8"
        assert_cors(r, "test")
        assert_not_cached(r)
        # 2 KiB of h first: IE shows nothing of a stream before.
        assert r.read_frame() == "h" * 2048 + "\n"
        assert r.read_frame() == "o\n"
        assert fetch(port, "POST", url + "/xhr_send", '["x"]').status == 204
        assert r.read_frame() == 'a["x"]\n'
        assert fetch(port, "POST", url + "/xhr_send", '["y", "z"]').status == 204
        assert r.read_frame() == 'a["y","z"]\n'


def test_streaming_ends_after_the_response_limit(port):
    # /echo's response_limit is 4096 bytes of frames: o\n, then 31 frames of 134 bytes.
    url = session_url()
    message = '"' + "x" * 128 + '"'
    with Connection(port) as c:
        r = c.request("POST", url + "/xhr_streaming")
        assert r.read_frame().startswith("h")
        assert r.read_frame() == "o\n"
        for _ in range(31):
            assert fetch(port, "POST", url + "/xhr_send", f"[{message}]").status == 204
            assert r.read_frame() == f"a[{message}]\n"
        assert r.read_frame() == ""
    # The session lives on: the next request picks up where the last one ended.
    assert fetch(port, "POST", url + "/xhr_send", '["after"]').status == 204
    assert fetch(port, "POST", url + "/xhr").body == 'a["after"]\n'


def assert_cookie(response, value="dummy"):
    cookie, path = response["set-cookie"].split(";")
    assert cookie.strip() == f"JSESSIONID={value}"
    assert path.strip().lower() == "path=/"


def test_cookie_on_polling(port):
    url = session_url("cookie_needed_echo")
    r = fetch(port, "POST", url + "/xhr")
    assert r.body == "o\n"
    assert_cookie(r)
    assert_cookie(fetch(port, "POST", url + "/xhr_send", '["x"]'))


def test_cookie_is_echoed(port):
    url = session_url("cookie_needed_echo")
    r = fetch(port, "POST", url + "/xhr", headers={"Cookie": "a=b; JSESSIONID=abcdef"})
    assert r.body == "o\n"
    assert_cookie(r, "abcdef")


def test_cookie_on_streaming(port):
    with Connection(port) as c:
        r = c.request("POST", session_url("cookie_needed_echo") + "/xhr_streaming")
        assert r.status == 200
        assert_cookie(r)


def test_no_cookie_unless_needed(port):
    assert fetch(port, "POST", session_url() + "/xhr")["set-cookie"] is None


def test_chunked_xhr_send_as_sockjs_client_sends_it_from_node(port):
    import http.client

    base = "/echo/000/chunkeds"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", f"{base}/xhr")
    assert conn.getresponse().read() == b"o\n"
    conn.request(
        "POST",
        f"{base}/xhr_send",
        body=iter([b'["hel', b'lo"]']),
        headers={"Content-Type": "text/plain"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    response.read()
    assert response.status == 204
    conn.request("POST", f"{base}/xhr")
    assert conn.getresponse().read() == b'a["hello"]\n'
    conn.close()
