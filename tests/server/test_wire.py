"""Every DDP message and every malformed-input reply, against a real ddpserver."""

import json

import pytest

from ddp.testing import WebSocketDDPClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.quick]

CONNECT = {"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}


def test_connect_gets_a_17_character_session(raw):
    raw.send(CONNECT)
    reply = raw.recv()
    assert reply["msg"] == "connected"
    assert len(reply["session"]) == 17


@pytest.mark.parametrize(
    ("version", "support", "reply"),
    [
        ("1", ["1", "pre2", "pre1"], {"msg": "connected"}),
        ("1", ["1"], {"msg": "connected"}),
        ("pre2", ["pre2", "pre1"], {"msg": "connected"}),
        ("pre1", ["1", "pre1"], {"msg": "failed", "version": "1"}),
        ("2", ["2"], {"msg": "failed", "version": "1"}),
        ("_", ["_"], {"msg": "failed", "version": "1"}),
    ],
)
def test_version_negotiation(raw, version, support, reply):
    raw.send({"msg": "connect", "version": version, "support": support})
    got = raw.recv()
    assert {k: got[k] for k in reply} == reply
    if reply["msg"] == "failed":
        # The server closes the transport after "failed".
        assert raw.close_code() == 1000


def test_failed_then_reconnect_with_the_offered_version(ddp_live_server):
    with WebSocketDDPClient(ddp_live_server.ws_url, connect=False) as first:
        first.send({"msg": "connect", "version": "pre1", "support": ["1", "pre1"]})
        assert first.recv() == {"msg": "failed", "version": "1"}
    with WebSocketDDPClient(ddp_live_server.ws_url, connect=False) as second:
        second.send({"msg": "connect", "version": "1", "support": ["1", "pre1"]})
        assert second.recv()["msg"] == "connected"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ({"msg": "ping"}, {"msg": "pong"}),
        ({"msg": "ping", "id": "a1b2"}, {"msg": "pong", "id": "a1b2"}),
    ],
)
def test_ping_pong(client, sent, expected):
    client.send(sent)
    assert client.recv() == expected


def test_client_pong_needs_no_reply(client):
    client.send({"id": None, "msg": "pong"})
    client.send({"msg": "ping", "id": "after"})
    assert client.recv() == {"msg": "pong", "id": "after"}


def test_pre1_has_no_heartbeat(raw):
    raw.send({"msg": "connect", "version": "pre1", "support": ["pre1"]})
    assert raw.recv()["msg"] == "connected"
    raw.send({"msg": "ping"})
    assert raw.recv() == {
        "msg": "error",
        "reason": "Bad request",
        "offendingMessage": {"msg": "ping"},
    }


MALFORMED_BEFORE_CONNECT = [
    ("not json", {"msg": "error", "reason": "Bad request"}),
    ('"x"', {"msg": "error", "reason": "Bad request"}),
    ("5", {"msg": "error", "reason": "Bad request"}),
    ("null", {"msg": "error", "reason": "Bad request"}),
    ('{"foo": 1}', {"msg": "error", "reason": "Bad request", "offendingMessage": {"foo": 1}}),
    (
        '{"msg": "ping"}',
        {"msg": "error", "reason": "Must connect first", "offendingMessage": {"msg": "ping"}},
    ),
]


@pytest.mark.parametrize(("text", "expected"), MALFORMED_BEFORE_CONNECT)
def test_malformed_before_connect(raw, text, expected):
    raw.send_raw(text)
    assert raw.recv() == expected
    raw.send(CONNECT)
    assert raw.recv()["msg"] == "connected"


MALFORMED_AFTER_CONNECT = [
    ("[1, 2]", {"msg": "error", "reason": "Bad request", "offendingMessage": [1, 2]}),
    ('{"foo": 1}', {"msg": "error", "reason": "Bad request", "offendingMessage": {"foo": 1}}),
    (
        json.dumps(CONNECT),
        {"msg": "error", "reason": "Already connected", "offendingMessage": CONNECT},
    ),
    (
        '{"msg": "nonsense"}',
        {"msg": "error", "reason": "Bad request", "offendingMessage": {"msg": "nonsense"}},
    ),
    (
        json.dumps(
            {
                "msg": "method",
                "id": "1",
                "method": "test.echo",
                "params": [{"$type": "no", "$value": 1}],
            }
        ),
        {"msg": "error", "reason": "Parse error"},
    ),
]
for sub in (
    {"msg": "sub", "id": 1, "name": "AllBooks"},
    {"msg": "sub", "id": "1", "name": 5},
    {"msg": "sub", "id": "1", "name": "AllBooks", "params": {"a": 1}},
    {"msg": "sub", "id": "1", "name": "AllBooks", "params": "x"},
):
    MALFORMED_AFTER_CONNECT.append(
        (
            json.dumps(sub),
            {"msg": "error", "reason": "Malformed subscription", "offendingMessage": sub},
        )
    )
for method in (
    {"msg": "method", "id": 1, "method": "test.echo", "params": []},
    {"msg": "method", "id": "1", "method": None, "params": []},
    {"msg": "method", "id": "1", "method": "test.echo", "params": {"a": 1}},
    {"msg": "method", "id": "1", "method": "test.echo", "params": [], "randomSeed": 5},
):
    MALFORMED_AFTER_CONNECT.append(
        (
            json.dumps(method),
            {"msg": "error", "reason": "Malformed method invocation", "offendingMessage": method},
        )
    )


@pytest.mark.parametrize(("text", "expected"), MALFORMED_AFTER_CONNECT)
def test_malformed_after_connect_keeps_the_connection(client, text, expected):
    client.send_raw(text)
    assert client.recv() == expected
    client.send({"msg": "ping", "id": "still-here"})
    assert client.recv() == {"msg": "pong", "id": "still-here"}


def test_binary_frame_is_a_bad_request(client):
    client.ws.send_binary(b"\x00\x01binary")
    assert client.recv() == {"msg": "error", "reason": "Bad request"}
    client.send({"msg": "ping"})
    assert client.recv() == {"msg": "pong"}


def test_unknown_fields_and_any_key_order_are_accepted(raw):
    raw.send_raw('{"support": ["1"], "version": "1", "session": "old", "msg": "connect"}')
    assert raw.recv()["msg"] == "connected"
    raw.send_raw(
        '{"id": "1", "msg": "method", "extra": true, "method": "test.echo", "params": [1]}'
    )
    messages = raw.recv_until(lambda m: m["msg"] == "updated")
    assert {"msg": "result", "id": "1", "result": [1]} in messages


def test_a_sockjs_client_gets_the_failed_reply_before_the_close(ddp_live_server):
    """As over raw ``/websocket``: the ``failed`` (in SockJS's ``a`` frame), then the close."""
    url = ddp_live_server.ws_url.replace("/websocket", "/sockjs/000/failed/websocket")
    with WebSocketDDPClient(url, connect=False, sockjs=True) as client:
        client.send({"msg": "connect", "version": "2", "support": ["2"]})
        assert client.close_code() == 1000
        assert client.messages == [{"msg": "failed", "version": "1"}]
