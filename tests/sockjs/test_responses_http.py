"""HTTP/1.0 and HTTP/1.1 framing of plain and streaming answers (sockjs-protocol's Http10
and Http11): a streaming answer must reach the client frame by frame, never buffered."""

from tests.sockjs.wire import Connection, session_url


def test_http10_plain(port):
    with Connection(port) as c:
        r = c.request("GET", "/echo", headers={"Connection": "Keep-Alive"}, version="1.0")
        assert r.status == 200
        assert r.version in ("1.0", "1.1")
        assert r["transfer-encoding"] is None
        assert int(r["content-length"]) == 19
        assert c.read(19) == "Welcome to SockJS!\n"
        if (r["connection"] or "close").lower() == "close":
            assert c.closed()
        else:
            assert r["connection"].lower() == "keep-alive"
            assert c.request("GET", "/echo", version="1.0").status == 200


def test_http10_streaming(port):
    with Connection(port) as c:
        r = c.request(
            "POST",
            session_url("close") + "/xhr_streaming",
            headers={"Connection": "Keep-Alive"},
            version="1.0",
        )
        assert r.status == 200
        assert r["transfer-encoding"] is None
        assert r["content-length"] is None
        assert c.read(2049)[0] == "h"
        assert c.read(2) == "o\n"
        assert c.read(19) == 'c[3000,"Go away!"]\n'
        assert c.closed()


def test_http11_keep_alive(port):
    with Connection(port) as c:
        r = c.request("GET", "/echo", headers={"Connection": "Keep-Alive"})
        assert (r["connection"] or "keep-alive").lower() == "keep-alive"
        assert r.read_body() == "Welcome to SockJS!\n"
        assert c.request("GET", "/echo").status == 200


def test_http11_streaming(port):
    with Connection(port) as c:
        r = c.request("POST", session_url("close") + "/xhr_streaming")
        assert r.status == 200
        assert r.chunked
        assert r["content-length"] is None
        assert c.read_chunk()[0] == "h"
        assert c.read_chunk() == "o\n"
        assert c.read_chunk() == 'c[3000,"Go away!"]\n'
        assert c.read_chunk() == ""
