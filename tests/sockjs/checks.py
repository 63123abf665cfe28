"""Assertions several SockJS test modules share: CORS, caching, content types."""

import re
import struct

import websocket

from tests.sockjs.wire import fetch

NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"


def content_type(response):
    return response["content-type"].replace(" ", "")


def assert_not_cached(response):
    """A private answer no cache keeps (iOS 6 caches POST answers)."""
    assert response["cache-control"] == NO_CACHE
    assert response["expires"] is None
    assert response["last-modified"] is None


def assert_cors(response, origin=None):
    if origin:
        assert response["access-control-allow-origin"] == origin
        assert response["access-control-allow-credentials"] == "true"
    else:
        assert response["access-control-allow-origin"] == "*"
        assert response["access-control-allow-credentials"] is None


def assert_preflight(port, path, methods):
    """A browser's preflight for ``path``: cacheable for long, allowing ``methods``; a page
    opened from a file (origin ``null``) is echoed like any other, as sockjs-node does."""
    for origin in ("test", "null"):
        headers = {"Origin": origin, "Access-Control-Request-Method": methods}
        r = fetch(port, "OPTIONS", path, headers=headers)
        assert r.status == 204
        assert "public" in r["cache-control"]
        assert re.search("max-age=[1-9][0-9]{6}", r["cache-control"])
        assert r["expires"]
        assert int(r["access-control-max-age"]) > 1000000
        assert r["access-control-allow-methods"] == methods
        assert r.body == ""
        assert_cors(r, origin)


def close_status(ws):
    """Read up to the server's close frame: its code and reason."""
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            (code,) = struct.unpack("!H", frame.data[:2])
            return code, frame.data[2:].decode()
