"""The connection state machine: handshake (C1-C7), heartbeats (H1, H6), section 4.2, B2, B6."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddp.protocol.connection import (
    CLOSE,
    SUPPORTED_VERSIONS,
    ConnectionState,
    Resume,
    ServerConnection,
)
from ddp.protocol.ejson import EPOCH, loads
from ddp.protocol.ids import UNMISTAKABLE_CHARS
from ddp.protocol.messages import (
    MISSING,
    Connected,
    Error,
    Failed,
    Method,
    Pong,
    Sub,
    Unsub,
    encode,
)

pytestmark = pytest.mark.quick

CONNECT = {"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}


def send(connection, message):
    return connection.receive(json.dumps(message))


def connected(version="1"):
    connection = ServerConnection("SESSION")
    assert send(connection, {"msg": "connect", "version": version, "support": [version]}) == [
        Connected("SESSION")
    ]
    return connection


def awaiting():
    return ServerConnection("SESSION")


BOTH_STATES = pytest.mark.parametrize("make", [awaiting, connected], ids=["before", "after"])


# -- handshake ----------------------------------------------------------------------


def test_new_connection_state():
    connection = ServerConnection()
    assert connection.state is ConnectionState.AWAITING_CONNECT
    assert connection.version is None
    assert connection.heartbeat_enabled
    assert SUPPORTED_VERSIONS == ("1", "pre2", "pre1")


def test_session_id_is_a_random_id():
    # C5
    session_id = ServerConnection().session_id
    assert len(session_id) == 17
    assert set(session_id) <= set(UNMISTAKABLE_CHARS)
    assert ServerConnection().session_id != session_id


@pytest.mark.parametrize(
    ("version", "support", "agreed"),
    [
        ("1", ["1", "pre2", "pre1"], "1"),
        ("1", ["1"], "1"),
        ("pre2", ["pre2", "pre1"], "pre2"),
        ("pre2", ["2", "pre2"], "pre2"),
        ("pre1", ["pre1"], "pre1"),
        ("1", ["3", "1"], "1"),
    ],
)
def test_handshake_succeeds(version, support, agreed):
    # C3
    connection = ServerConnection("abc")
    assert send(connection, {"msg": "connect", "version": version, "support": support}) == [
        Connected("abc")
    ]
    assert connection.state is ConnectionState.CONNECTED
    assert connection.version == agreed


@pytest.mark.parametrize(
    ("connect", "suggested"),
    [
        # C3: the client listed "1" first, so "1" is what it should propose.
        ({"version": "pre1", "support": ["1", "pre1"]}, "1"),
        ({"version": "1", "support": ["pre2", "1"]}, "pre2"),
        ({"version": "2", "support": ["2"]}, "1"),
        ({"version": "_", "support": ["_"]}, "1"),
        # C2: malformed proposals.
        ({"support": ["1"]}, "1"),
        ({"version": "1"}, "1"),
        ({"version": "1", "support": ["pre1"]}, "1"),
        ({"version": "1", "support": []}, "1"),
        ({"version": 1, "support": [1]}, "1"),
        ({"version": None, "support": [None]}, "1"),
        ({"version": "1", "support": "1"}, "1"),
        ({"version": "1", "support": {"1": 1}}, "1"),
        ({"version": "1", "support": ["1", 2]}, "1"),
        ({"version": "1", "support": None}, "1"),
        ({}, "1"),
    ],
)
def test_handshake_fails_and_closes(connect, suggested):
    connection = awaiting()
    assert send(connection, {"msg": "connect", **connect}) == [Failed(suggested), CLOSE]
    assert connection.state is ConnectionState.CLOSED
    assert connection.version is None


def test_client_retries_with_the_suggested_version():
    # C3: the Meteor client reconnects proposing the version from ``failed``.
    first = send(awaiting(), {"msg": "connect", "version": "pre1", "support": ["1", "pre1"]})
    suggested = first[0].version
    connection = awaiting()
    reply = send(connection, {"msg": "connect", "version": suggested, "support": ["1", "pre1"]})
    assert reply == [Connected("SESSION")]


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(CONNECT),
        json.dumps({"msg": "sub", "id": "1", "name": "all"}),
        json.dumps({"msg": "method", "id": "1", "method": "m"}),
        json.dumps({"msg": "ping"}),
        "not json",
        "",
    ],
)
def test_everything_after_a_failed_handshake_is_ignored(text):
    # C7: the requests a client sends behind its connect must not run.
    connection = awaiting()
    send(connection, {"msg": "connect", "version": "2", "support": ["2"]})
    assert connection.receive(text) == []
    assert connection.state is ConnectionState.CLOSED


def test_connect_session_without_count_asks_to_resume_with_no_count():
    # A client older than Meteor 3.4 (simpleddp) names its session but no count: it cannot
    # be checked for what it missed, so it will get the connection's own new id, and the
    # session it named is ended (as Meteor's server does).
    connection = ServerConnection()
    reply = send(connection, {**CONNECT, "session": "4hDmBgTzW6bE3t2kq"})
    assert reply == [Resume("4hDmBgTzW6bE3t2kq", None, Connected(connection.session_id))]
    assert connection.session_id != "4hDmBgTzW6bE3t2kq"


@pytest.mark.parametrize("count", [0, 7, 7.0])
def test_connect_with_session_and_count_asks_to_resume(count):
    # Meteor 3.4 (meteor/meteor#14051): session and receivedCount on reconnect.
    connection = awaiting()
    reply = send(connection, {**CONNECT, "session": "4hDmBgTzW6bE3t2kq", "receivedCount": count})
    assert reply == [Resume("4hDmBgTzW6bE3t2kq", int(count), Connected("SESSION"))]
    assert connection.state is ConnectionState.CONNECTED
    assert connection.resumable


@pytest.mark.parametrize("count", [-1, 1.5, "7", None, True, [7]])
def test_connect_with_a_count_that_is_no_count_resumes_nothing(count):
    reply = send(awaiting(), {**CONNECT, "session": "old", "receivedCount": count})
    assert reply == [Resume("old", None, Connected("SESSION"))]


@pytest.mark.parametrize("session", [None, 7, ["old"]])
def test_connect_with_a_session_that_is_no_id_gets_a_new_session(session):
    reply = send(awaiting(), {**CONNECT, "session": session, "receivedCount": 3})
    assert reply == [Connected("SESSION")]


def test_a_failed_handshake_resumes_nothing():
    message = {"msg": "connect", "version": "2", "support": ["2"], "session": "old"}
    assert send(awaiting(), {**message, "receivedCount": 3}) == [Failed("1"), CLOSE]


def test_disconnect_is_not_answered_and_makes_the_session_unresumable():
    # Meteor 3.4 clients send it before closing; it used to get "Bad request".
    connection = connected()
    assert connection.resumable
    assert send(connection, {"msg": "disconnect"}) == []
    assert not connection.resumable
    assert connection.state is ConnectionState.CONNECTED


def test_disconnect_before_connect_must_connect_first():
    message = {"msg": "disconnect"}
    assert send(awaiting(), message) == [Error("Must connect first", message)]
    assert not awaiting().resumable


def test_requests_right_behind_connect_are_served():
    # C7
    connection = awaiting()
    assert connection.receive(json.dumps(CONNECT)) == [Connected("SESSION")]
    assert send(connection, {"msg": "sub", "id": "a", "name": "x", "params": []}) == [Sub("a", "x")]
    assert send(connection, {"msg": "method", "id": "1", "method": "login", "params": []}) == [
        Method("1", "login")
    ]


@pytest.mark.parametrize(
    "message",
    [
        {"msg": "ping"},
        {"msg": "ping", "id": "1"},
        {"msg": "pong"},
        {"msg": "sub", "id": "1", "name": "all", "params": []},
        {"msg": "unsub", "id": "1"},
        {"msg": "method", "id": "1", "method": "m", "params": []},
        {"msg": "connected", "session": "x"},
        {"msg": "foo"},
        {"msg": 5},
        {"msg": ["connect"]},
        {"msg": {"connect": 1}},
        {"msg": True},
    ],
)
def test_must_connect_first(message):
    # C1: the socket stays open and a connect still works afterwards.
    connection = awaiting()
    assert send(connection, message) == [Error("Must connect first", message)]
    assert connection.state is ConnectionState.AWAITING_CONNECT
    assert send(connection, CONNECT) == [Connected("SESSION")]


@pytest.mark.parametrize(
    "message",
    [
        CONNECT,
        {"msg": "connect", "version": "2", "support": ["2"]},
        {"msg": "connect"},
    ],
)
def test_already_connected(message):
    # C6: no renegotiation, no close.
    connection = connected("pre2")
    assert send(connection, message) == [Error("Already connected", message)]
    assert connection.state is ConnectionState.CONNECTED
    assert connection.version == "pre2"


# -- heartbeats ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ping", "pong"),
    [
        ({"msg": "ping"}, Pong()),
        ({"msg": "ping", "id": "a1b2"}, Pong("a1b2")),
        ({"msg": "ping", "id": ""}, Pong("")),
        # B5: only a string goes out as an id.
        ({"msg": "ping", "id": None}, Pong()),
        ({"msg": "ping", "id": 5}, Pong()),
        ({"id": "z", "msg": "ping", "extra": [1]}, Pong("z")),
    ],
)
@pytest.mark.parametrize("version", ["1", "pre2"])
def test_ping_is_answered(version, ping, pong):
    # H1
    assert send(connected(version), ping) == [pong]


def test_ping_wire_text():
    assert [encode(m) for m in send(connected(), {"msg": "ping", "id": "a1b2"})] == [
        '{"msg":"pong","id":"a1b2"}'
    ]
    assert [encode(m) for m in send(connected(), {"msg": "ping"})] == ['{"msg":"pong"}']


@pytest.mark.parametrize(
    "pong", [{"msg": "pong"}, {"msg": "pong", "id": "x"}, {"id": None, "msg": "pong"}]
)
def test_pong_needs_no_answer(pong):
    # H3: ddp_asyncio's pong carries "id": null.
    assert send(connected(), pong) == []


@pytest.mark.parametrize("message", [{"msg": "ping"}, {"msg": "ping", "id": "1"}, {"msg": "pong"}])
def test_pre1_has_no_heartbeats(message):
    # H6
    connection = connected("pre1")
    assert not connection.heartbeat_enabled
    assert send(connection, message) == [Error("Bad request", message)]


@pytest.mark.parametrize("version", ["1", "pre2"])
def test_heartbeats_after_pre1(version):
    assert connected(version).heartbeat_enabled


# -- section 4.2 ---------------------------------------------------------------------


@BOTH_STATES
@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "x",
        "{",
        "{'msg': 'ping'}",
        '{"msg": "ping"} trailing',
        "NaN",
        "Infinity",
        '{"msg": "ping", "id": NaN}',
        '"x"',
        "5",
        "1.5",
        "null",
        "true",
        '"{\\"msg\\":\\"ping\\"}"',
        "[" * 100_000,
        "1" * 5000,
    ],
)
def test_not_json_or_not_an_object(make, text):
    # Nothing could be parsed, so there is nothing to quote.
    assert make().receive(text) == [Error("Bad request")]


@BOTH_STATES
@pytest.mark.parametrize(
    "message",
    [
        {},
        {"id": "1", "name": "all"},
        [],
        [{"msg": "ping"}],
        ["connect"],
        {"msg": None},
        {"msg": ""},
        {"msg": 0},
        {"msg": 0.0},
        {"msg": False},
        {"MSG": "ping"},
        {"params": [{"$date": 0}]},
    ],
)
def test_no_msg(make, message):
    connection = make()
    state = connection.state
    expected = message
    if "params" in message:
        expected = {"params": [EPOCH]}
    assert send(connection, message) == [Error("Bad request", expected)]
    assert connection.state is state


@BOTH_STATES
@pytest.mark.parametrize(
    "message",
    [
        {"msg": "method", "id": "1", "method": "m", "params": [{"$type": "bogus", "$value": 1}]},
        {"msg": "sub", "id": "1", "name": "n", "params": [{"a": {"$date": "2020-01-01"}}]},
        {"msg": "sub", "id": "1", "name": "n", "params": [{"$binary": "%%%"}]},
        {"msg": "method", "id": "1", "method": "m", "params": {"$escape": 5}},
        {"msg": "connect", "version": "1", "support": ["1"], "params": [{"$InfNaN": "x"}]},
        # Decoding comes before any other check, as in Meteor's parser.
        {"params": [{"$type": "bogus", "$value": 1}]},
        {"msg": "unknown", "params": {"$type": "Decimal", "$value": "1"}},
    ],
)
def test_ejson_decoding_fails(make, message):
    connection = make()
    assert send(connection, message) == [Error("Parse error")]
    assert connection.state is not ConnectionState.CLOSED


@pytest.mark.parametrize(
    "message",
    [
        {"msg": "foo"},
        {"msg": "connected", "session": "x"},
        {"msg": "added", "collection": "c", "id": "x", "fields": {}},
        {"msg": "result", "id": "1"},
        {"msg": 5},
        {"msg": True},
        {"msg": ["sub"]},
        {"msg": {"a": 1}},
        {"msg": "Sub", "id": "1", "name": "n"},
        {"msg": "foo", "params": [{"$date": 0}]},
    ],
)
def test_unknown_msg(message):
    expected = dict(message)
    if "params" in message:
        expected["params"] = [EPOCH]
    assert send(connected(), message) == [Error("Bad request", expected)]


@pytest.mark.parametrize(
    "message",
    [
        {"msg": "sub", "name": "n"},
        {"msg": "sub", "id": 1, "name": "n"},
        {"msg": "sub", "id": None, "name": "n"},
        {"msg": "sub", "id": ["1"], "name": "n"},
        {"msg": "sub", "id": "1"},
        {"msg": "sub", "id": "1", "name": None},
        {"msg": "sub", "id": "1", "name": 7},
        {"msg": "sub", "id": "1", "name": "n", "params": None},
        {"msg": "sub", "id": "1", "name": "n", "params": {}},
        {"msg": "sub", "id": "1", "name": "n", "params": "x"},
        {"msg": "sub", "id": "1", "name": "n", "params": 1},
    ],
)
def test_malformed_subscription(message):
    assert send(connected(), message) == [Error("Malformed subscription", message)]


def test_malformed_subscription_quotes_decoded_params():
    # A params object that decodes to a date is not an array; the quote holds the date.
    connection = connected()
    message = {"msg": "sub", "id": "1", "name": "n", "params": {"$date": 0}}
    reply = send(connection, message)
    assert reply == [Error("Malformed subscription", {**message, "params": EPOCH})]
    assert encode(reply[0]) == (
        '{"msg":"error","reason":"Malformed subscription","offendingMessage":'
        '{"msg":"sub","id":"1","name":"n","params":{"$date":0}}}'
    )


@pytest.mark.parametrize(
    "message",
    [
        {"msg": "method", "method": "m"},
        {"msg": "method", "id": 1, "method": "m"},
        {"msg": "method", "id": None, "method": "m"},
        {"msg": "method", "id": "1"},
        {"msg": "method", "id": "1", "method": None},
        {"msg": "method", "id": "1", "method": ["m"]},
        {"msg": "method", "id": "1", "method": "m", "params": None},
        {"msg": "method", "id": "1", "method": "m", "params": {"a": 1}},
        {"msg": "method", "id": "1", "method": "m", "params": "x"},
        {"msg": "method", "id": "1", "method": "m", "randomSeed": None},
        {"msg": "method", "id": "1", "method": "m", "randomSeed": 5},
        {"msg": "method", "id": "1", "method": "m", "params": [], "randomSeed": ["x"]},
    ],
)
def test_malformed_method_invocation(message):
    assert send(connected(), message) == [Error("Malformed method invocation", message)]


def test_malformed_method_quotes_decoded_params():
    message = {"msg": "method", "method": "m", "params": [{"$date": 0}, {"$binary": "YQ=="}]}
    reply = send(connected(), message)
    assert reply == [Error("Malformed method invocation", {**message, "params": [EPOCH, b"a"]})]
    assert loads(encode(reply[0]))["offendingMessage"] == message


def test_connection_stays_open_after_errors():
    connection = connected()
    for text in ["x", "{}", '{"msg":"foo"}', '{"msg":"sub"}', '{"msg":"method"}']:
        assert CLOSE not in connection.receive(text)
    assert send(connection, {"msg": "ping"}) == [Pong()]


@pytest.mark.parametrize("depth", [300, 600, 900, 2000, 50_000])
def test_deep_nesting_still_gets_a_sendable_answer(depth):
    connection = connected()
    nested = "[" * depth + "]" * depth
    for text in [
        '{"msg":"method","id":"1","method":"m","params":[' + nested + "]}",
        '{"msg":"foo","x":' + nested + "}",
        '{"msg":"sub","id":1,"x":' + nested + "}",
    ]:
        replies = connection.receive(text)
        assert len(replies) == 1
        if isinstance(replies[0], Error):
            assert replies[0].reason in {"Bad request", "Parse error", "Malformed subscription"}
            encode(replies[0])
        else:
            assert isinstance(replies[0], Method)


def test_receive_wants_text():
    with pytest.raises(TypeError):
        ServerConnection().receive(json.dumps(CONNECT).encode())


# -- valid requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "request_"),
    [
        ({"msg": "sub", "id": "1", "name": "all"}, Sub("1", "all")),
        ({"msg": "sub", "id": "1", "name": "all", "params": []}, Sub("1", "all")),
        (
            {"msg": "sub", "id": "cK4", "name": "books", "params": [{"author": "x"}, 2]},
            Sub("cK4", "books", ({"author": "x"}, 2)),
        ),
        (
            {
                "msg": "sub",
                "id": "1",
                "name": "n",
                "params": [{"$date": 0}, {"$escape": {"$date": 1}}],
            },
            Sub("1", "n", (EPOCH, {"$date": 1})),
        ),
        ({"msg": "sub", "id": "", "name": ""}, Sub("", "")),
        ({"msg": "unsub", "id": "1"}, Unsub("1")),
        # S6: answered with a bare nosub; B5 keeps a non-string id off the wire.
        ({"msg": "unsub"}, Unsub()),
        ({"msg": "unsub", "id": None}, Unsub()),
        ({"msg": "unsub", "id": 5}, Unsub()),
        ({"msg": "method", "id": "1", "method": "m"}, Method("1", "m")),
        (
            {"msg": "method", "id": "1", "method": "bookstore.add", "params": [{"title": "Dune"}]},
            Method("1", "bookstore.add", ({"title": "Dune"},)),
        ),
        (
            {"msg": "method", "id": "2", "method": "m", "params": [], "randomSeed": "8f1c0e"},
            Method("2", "m", (), "8f1c0e"),
        ),
        (
            {"msg": "method", "id": "3", "method": "m", "params": [{"$InfNaN": -1}]},
            Method("3", "m", (float("-inf"),)),
        ),
    ],
)
def test_valid_requests(message, request_):
    assert send(connected(), message) == [request_]


def test_method_without_seed_has_missing_seed():
    (method,) = send(connected(), {"msg": "method", "id": "1", "method": "m"})
    assert method.random_seed is MISSING


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # B6: ddp_asyncio sends keys sorted.
        ('{"support": ["1"], "version": "1", "msg": "connect"}', Connected("SESSION")),
        (
            '{"version":"1","support":["1"],"msg":"connect","session":"old","x":{}}',
            Resume("old", None, Connected("SESSION")),
        ),
    ],
)
def test_connect_in_any_key_order_with_extras(text, expected):
    assert awaiting().receive(text) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"id": "576544", "msg": "sub", "name": "x", "params": []}', Sub("576544", "x")),
        ('{"params":[1],"name":"x","id":"1","msg":"sub","extra":true}', Sub("1", "x", (1,))),
        (
            '{"randomSeed":"s","params":[],"method":"m","msg":"method","id":"1","x":null}',
            Method("1", "m", (), "s"),
        ),
        ('{"id": null, "msg": "pong"}', None),
        ('{"id": "1", "msg": "unsub", "session": "x"}', Unsub("1")),
    ],
)
def test_requests_in_any_key_order_with_extras(text, expected):
    # B2, B6
    assert connected().receive(text) == ([] if expected is None else [expected])


# -- never raises --------------------------------------------------------------------

_CLIENT_REQUESTS = (Sub, Unsub, Method)
_SERVER_REPLIES = (Connected, Failed, Pong, Error)


def _resume(reply, connection):
    assert isinstance(reply.session, str)
    assert type(reply.received_count) is int and reply.received_count >= 0
    assert reply.connected == Connected(connection.session_id)


def _check(replies, connection):
    for position, reply in enumerate(replies):
        if reply is CLOSE:
            assert position == len(replies) - 1
            assert connection.state is ConnectionState.CLOSED
        elif isinstance(reply, _SERVER_REPLIES):
            assert loads(encode(reply))["msg"] in {"connected", "failed", "pong", "error"}
        elif isinstance(reply, Resume):
            _resume(reply, connection)
        elif isinstance(reply, Sub):
            assert isinstance(reply.id, str)
            assert isinstance(reply.name, str)
            assert isinstance(reply.params, tuple)
        elif isinstance(reply, Unsub):
            assert reply.id is MISSING or isinstance(reply.id, str)
        elif isinstance(reply, Method):
            assert isinstance(reply.id, str)
            assert isinstance(reply.method, str)
            assert isinstance(reply.params, tuple)
            assert reply.random_seed is MISSING or isinstance(reply.random_seed, str)
        else:
            pytest.fail(f"unexpected output {reply!r}")
        if isinstance(reply, _CLIENT_REQUESTS):
            assert connection.state is ConnectionState.CONNECTED
            encode(reply)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["1", "pre1", "pre2", "$date", "oid"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["$date", "$binary", "$InfNaN", "$escape", "$type", "$value", "a"])
            | st.text(max_size=4),
            children,
            max_size=3,
        )
    ),
    max_leaves=12,
)

_MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "msg": st.sampled_from(
            [
                "connect",
                "ping",
                "pong",
                "sub",
                "unsub",
                "method",
                "connected",
                "disconnect",
                "",
                "x",
            ]
        )
        | _JSON,
        "id": st.text(max_size=4) | _JSON,
        "name": st.text(max_size=4) | _JSON,
        "method": st.text(max_size=4) | _JSON,
        "params": st.lists(_JSON, max_size=3) | _JSON,
        "randomSeed": st.text(max_size=4) | _JSON,
        "version": st.sampled_from(SUPPORTED_VERSIONS) | _JSON,
        "support": st.lists(st.sampled_from(["1", "pre1", "pre2", "2"]), max_size=3) | _JSON,
        "session": _JSON,
        "receivedCount": st.integers(min_value=-1, max_value=3) | _JSON,
    },
)

_TEXTS = st.text() | _MESSAGES.map(json.dumps) | _JSON.map(json.dumps)


@settings(max_examples=300)
@given(st.lists(_TEXTS, min_size=1, max_size=6), st.sampled_from(["none", "1", "pre1"]))
def test_never_raises_on_any_text(texts, start):
    connection = ServerConnection() if start == "none" else connected(start)
    for text in texts:
        _check(connection.receive(text), connection)


@settings(max_examples=300)
@given(st.lists(_MESSAGES, min_size=1, max_size=6), st.sampled_from(["none", "1", "pre1"]))
def test_never_raises_on_any_message(messages, start):
    connection = ServerConnection() if start == "none" else connected(start)
    for message in messages:
        _check(send(connection, message), connection)
