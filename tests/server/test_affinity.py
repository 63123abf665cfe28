"""Which worker of ``ddpserver --workers`` serves a request, from its first line."""

import zlib

from ddp.server.affinity import HEAD_LIMIT, complete, owner


def test_a_sockjs_session_belongs_to_the_stable_hash_of_its_id():
    for transport in ("xhr", "xhr_send", "xhr_streaming", "websocket"):
        head = f"POST /sockjs/123/abcdefgh/{transport} HTTP/1.1\r\nHost: x\r\n".encode()
        assert owner(head, 3) == zlib.crc32(b"abcdefgh") % 3
    assert owner(b"POST /sockjs/1/s1/xhr?t=5 HTTP/1.1\r\n", 7) == zlib.crc32(b"s1") % 7


def test_metrics_of_one_worker_belong_to_it():
    assert owner(b"GET /metrics/1 HTTP/1.1\r\n", 2) == 1
    assert owner(b"GET /metrics/2 HTTP/1.1\r\n", 2) is None  # no such worker
    assert owner(b"GET /metrics HTTP/1.1\r\n", 2) is None


def test_anything_else_is_served_where_it_was_accepted():
    for head in (
        b"GET /websocket HTTP/1.1\r\n",
        b"GET /sockjs/info HTTP/1.1\r\n",
        b"GET /sockjs/websocket HTTP/1.1\r\n",
        b"GET /admin/ HTTP/1.1\r\n",
        b"\x16\x03\x01 not http at all\r\n",
        b"GET /sockjs/1/s1/xhr",  # incomplete
    ):
        assert owner(head, 2) is None, head


def test_a_head_is_complete_at_its_first_line_or_the_limit():
    assert not complete(b"GET /sockjs/1/s1/x")
    assert complete(b"GET / HTTP/1.1\r\n")
    assert complete(b"G" * HEAD_LIMIT)
