"""The URLs under a SockJS prefix: greeting, ``/info``, session URLs, 404 and 405.

After sockjs-protocol's BaseUrlGreeting, InfoTest and SessionURLs, with sockjs-node
0.3.24's CORS answers (PROTOCOL.md T9).
"""

import json

import pytest

from tests.sockjs.checks import assert_cors, assert_not_cached, assert_preflight, content_type
from tests.sockjs.wire import fetch, session_url


@pytest.mark.parametrize("path", ["/echo", "/echo/"])
def test_greeting(port, path):
    r = fetch(port, "GET", path)
    assert r.status == 200
    assert content_type(r) == "text/plain;charset=UTF-8"
    assert r.body == "Welcome to SockJS!\n"
    assert r["set-cookie"] is None


@pytest.mark.parametrize("suffix", ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"])
def test_other_paths_are_not_found(port, suffix):
    assert fetch(port, "GET", "/echo" + suffix).status == 404


def test_a_path_outside_the_prefix_is_not_found(port):
    assert fetch(port, "GET", "/echoes").status == 404


@pytest.mark.parametrize(
    "suffix",
    ["/iframe.html", "/iframe-0.1.2.html", "/a/a/jsonp?c=x", "/a/a/eventsource"],
)
def test_transports_not_served_are_not_found(port, suffix):
    assert fetch(port, "GET", "/echo" + suffix).status == 404


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/echo", "GET"),
        ("POST", "/echo/info", "OPTIONS, GET"),
        ("GET", "/echo/a/a/xhr", "POST, OPTIONS"),
        ("PUT", "/echo/a/a/xhr_send", "POST, OPTIONS"),
    ],
)
def test_other_methods_are_not_allowed(port, method, path, allowed):
    r = fetch(port, method, path)
    assert r.status == 405
    assert r["allow"] == allowed
    assert r["content-type"] is None
    assert r.body == ""


def test_info(port):
    r = fetch(port, "GET", "/echo/info", headers={"Origin": "test"})
    assert r.status == 200
    assert content_type(r) == "application/json;charset=UTF-8"
    assert r["set-cookie"] is None
    assert_not_cached(r)
    assert r["vary"] == "Origin"
    assert_cors(r, "test")
    data = json.loads(r.body)
    assert data["websocket"] is True
    assert data["cookie_needed"] is False
    assert data["origins"] == ["*:*"]
    assert isinstance(data["entropy"], int) and 0 <= data["entropy"] < 2**32


def test_info_without_origin_allows_any_origin_without_credentials(port):
    assert_cors(fetch(port, "GET", "/echo/info"))


def test_info_entropy_changes(port):
    first = json.loads(fetch(port, "GET", "/echo/info").body)["entropy"]
    second = json.loads(fetch(port, "GET", "/echo/info").body)["entropy"]
    assert first != second


def test_info_preflight(port):
    assert_preflight(port, "/echo/info", "OPTIONS, GET")


def test_info_preflight_allows_the_requested_headers(port):
    r = fetch(
        port,
        "OPTIONS",
        "/echo/info",
        headers={"Origin": "test", "Access-Control-Request-Headers": "a, b, c"},
    )
    assert r["access-control-allow-headers"] == "a, b, c"


def test_info_with_websockets_disabled(port):
    assert (
        json.loads(fetch(port, "GET", "/disabled_websocket_echo/info").body)["websocket"] is False
    )


def test_info_with_cookies_needed(port):
    r = fetch(port, "GET", "/cookie_needed_echo/info")
    assert r.status == 200
    assert r["set-cookie"] is None
    assert json.loads(r.body)["cookie_needed"] is True


@pytest.mark.parametrize("ids", ["/a/a", "/_/_", "/1/1", "/abcdefgh_i-j%20/abcdefg_i-j%20"])
def test_any_server_and_session_value(port, ids):
    r = fetch(port, "POST", "/echo" + ids + "/xhr")
    assert r.status == 200
    assert r.body == "o\n"


@pytest.mark.parametrize("ids", ["//", "/a./a", "/a/a.", "/./.", "/", "///"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_invalid_session_paths(port, ids, method):
    assert fetch(port, method, "/echo" + ids + "/xhr").status == 404


def test_the_server_id_is_ignored(port):
    session = session_url().split("/")[-1]
    assert fetch(port, "POST", f"/echo/000/{session}/xhr").body == "o\n"
    assert fetch(port, "POST", f"/echo/000/{session}/xhr_send", '["a"]').status == 204
    assert fetch(port, "POST", f"/echo/999/{session}/xhr").body == 'a["a"]\n'
