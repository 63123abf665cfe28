"""Valid, mutated and random DDP, EJSON and SockJS input fed to the sans-I/O core.

Whatever a client sends, :meth:`ServerConnection.receive` must not raise, and everything it
returns must be something the server can act on: a server message that encodes to JSON a
client reads (with the exact reasons of PROTOCOL.md 4.2), ``CLOSE`` after ``failed``, or a
well-typed request for the session. Valid requests must reach the session with their EJSON
parameters intact. The strategies are shared with ``tests/server/test_fuzz_live.py``, which
sends the same frames to a real server.
"""

import datetime
import json
import string
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ddp.protocol import (
    CLOSE,
    MISSING,
    Connected,
    ConnectionState,
    Error,
    Failed,
    Method,
    ObjectId,
    Pong,
    Regexp,
    ServerConnection,
    Sub,
    Unsub,
    encode,
    loads,
    to_ejson,
)
from ddp.protocol.ejson import MAX_SAFE_INTEGER
from ddp.sockjs.framing import FramingError, client_messages, messages_frame

pytestmark = pytest.mark.quick

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Every ``msg`` a DDP server may send.
SERVER_MESSAGES = frozenset(
    {"connected", "failed", "ping", "pong", "error", "added", "changed", "removed", "ready"}
    | {"nosub", "result", "updated"}
)
#: The reasons of a top-level ``error`` (PROTOCOL.md 4.2), and nothing else.
ERROR_REASONS = frozenset(
    {"Bad request", "Parse error", "Must connect first", "Already connected"}
    | {"Malformed subscription", "Malformed method invocation"}
)
#: How much deeper than the core a caller may encode its replies: the session (send,
#: encode_counted, encode), the SockJS adapter and logging all add frames of their own.
HEADROOM = 20

CONNECT = {"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}

# -- EJSON values -----------------------------------------------------------------------

#: Names a converter uses, so that plain data shaped like one gets generated (J1, J2).
_DOLLAR_KEYS = ["$date", "$binary", "$InfNaN", "$escape", "$regexp", "$flags", "$type"]
_DOLLAR_KEYS += ["$value", "$foo", "_id"]
_KEYS = st.sampled_from(_DOLLAR_KEYS) | st.text(max_size=6)

_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
#: Text, including lone surrogates: legal in JavaScript strings and in JSON escapes (B7).
TEXT = st.text(max_size=12) | st.text(st.characters() | _SURROGATES, max_size=4)

_DATES = st.datetimes(
    min_value=datetime.datetime(1, 1, 2),
    max_value=datetime.datetime(9999, 12, 30),
    timezones=st.just(datetime.timezone.utc),
).map(lambda value: value.replace(microsecond=value.microsecond // 1000 * 1000))
_FLAGS = st.sets(st.sampled_from("gimuy")).map(
    lambda kept: "".join(f for f in "gimuy" if f in kept)
)

#: Python values EJSON carries exactly (no NaN, which equals nothing): each comes back
#: from ``from_ejson(to_ejson(value))`` as itself.
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False)
    | TEXT
    | _DATES
    | st.binary(max_size=16)
    | st.builds(Regexp, TEXT, _FLAGS)
    | st.builds(ObjectId, st.text("0123456789abcdef", min_size=24, max_size=24)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=4),
    max_leaves=16,
)

#: EJSON a client may get wrong: converters with bad payloads, unknown types (J3).
_BAD_EJSON = st.sampled_from(
    [
        {"$date": "2020-01-01"},
        {"$date": 1e300},
        {"$binary": "%%%"},
        {"$binary": 5},
        {"$InfNaN": "x"},
        {"$escape": 5},
        {"$type": "bogus", "$value": 1},
        {"$type": "oid", "$value": "xyz"},
        {"$regexp": 1, "$flags": "g"},
    ]
)

#: Any JSON, much of it EJSON-shaped, valid or not.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | _BAD_EJSON
    | VALUES.map(to_ejson),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=12,
)

# -- DDP messages ---------------------------------------------------------------------

_IDS = st.text(string.ascii_letters + string.digits, min_size=1, max_size=8)
_PARAMS = st.lists(VALUES, max_size=4).map(to_ejson)

#: Client messages as a well-behaved client sends them (plain JSON-able dicts).
VALID_MESSAGES = st.one_of(
    st.just(CONNECT),
    st.builds(
        lambda version: {"msg": "connect", "version": version, "support": [version]},
        st.sampled_from(["1", "pre2", "pre1"]),
    ),
    st.just({"msg": "ping"}),
    st.builds(lambda id: {"msg": "ping", "id": id}, _IDS),
    st.just({"msg": "pong"}),
    st.builds(
        lambda id, name, params: {"msg": "sub", "id": id, "name": name, "params": params},
        _IDS,
        TEXT,
        _PARAMS,
    ),
    st.builds(lambda id: {"msg": "unsub", "id": id}, _IDS),
    st.builds(
        lambda id, method, params: {"msg": "method", "id": id, "method": method, "params": params},
        _IDS,
        TEXT,
        _PARAMS,
    ),
    st.builds(
        lambda id, seed: {
            "msg": "method",
            "id": id,
            "method": "m",
            "params": [],
            "randomSeed": seed,
        },
        _IDS,
        st.text("0123456789abcdef", min_size=20, max_size=20),
    ),
)

_FIELDS = ["msg", "id", "name", "method", "params", "randomSeed", "version", "support", "session"]


@st.composite
def mangled_messages(draw):
    """A valid message with fields removed or set to any JSON: wrong types, bad EJSON."""
    message = dict(draw(VALID_MESSAGES))
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(_FIELDS))
        if draw(st.booleans()):
            message.pop(field, None)
        else:
            message[field] = draw(JSON)
    return message


def _dump(message, ascii_only):
    return json.dumps(message, ensure_ascii=ascii_only)


VALID_TEXTS = st.builds(_dump, VALID_MESSAGES, st.booleans())

#: Characters that matter to a JSON parser, to insert into valid text.
_NASTY = st.sampled_from(list('{}[]",:\\0-e.') + ["\x00", "\ud800", "\u2028", "\ufeff", "é"])


@st.composite
def mutated_texts(draw):
    """Valid message text, cut, with characters dropped, inserted, replaced or repeated."""
    text = draw(VALID_TEXTS)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["cut", "drop", "insert", "replace", "repeat"]))
        if action == "cut":
            text = text[:at]
        elif action == "drop":
            text = text[:at] + text[at + 1 :]
        elif action == "insert":
            text = text[:at] + draw(_NASTY) + text[at:]
        elif action == "replace":
            text = text[:at] + draw(_NASTY) + text[at + 1 :]
        else:
            text = text[:at] + text[at : at + draw(st.integers(1, 8))] * 2 + text[at + 8 :]
    return text


def nested(depth, kind):
    """Text of a message whose ``x`` (or ``params``) is nested ``depth`` levels deep."""
    if kind == "array":
        inner = "[" * depth + "]" * depth
        return '{"msg":"nope","x":' + inner + "}"
    if kind == "object":
        return '{"msg":"nope","x":' + '{"a":' * depth + "1" + "}" * depth + "}"
    if kind == "params":
        return '{"msg":"method","id":"1","method":5,"params":[' + "[" * depth + "]" * depth + "]"
    return "[" * depth  # unterminated


_LIMIT = sys.getrecursionlimit()
DEEP_TEXTS = st.builds(
    nested,
    st.integers(0, 60)
    | st.integers(_LIMIT // 2 - 40, _LIMIT // 2 + 10)
    | st.integers(0, 3 * _LIMIT),
    st.sampled_from(["array", "object", "params", "open"]),
)

#: JSON number forms Python and JavaScript disagree on, or that Python refuses.
ODD_TEXTS = st.sampled_from(
    [
        '{"msg":"ping","id":NaN}',
        '{"msg":"ping","id":Infinity}',
        '{"msg":"ping","id":1e999}',
        '{"msg":"ping","id":' + "9" * 5000 + "}",
        '{"msg":"ping","msg":"sub","id":"1","name":"n"}',
        '\ufeff{"msg":"ping"}',
        '{"msg":"ping"} {"msg":"ping"}',
        "",
        " ",
        "null",
        "[]",
        '"connect"',
    ]
)

#: Any frame a client could send: valid, mangled, mutated, deep, odd or random text.
FRAMES = st.one_of(
    VALID_TEXTS,
    st.builds(_dump, mangled_messages(), st.booleans()),
    mutated_texts(),
    DEEP_TEXTS,
    ODD_TEXTS,
    st.builds(_dump, JSON, st.booleans()),
    TEXT,
    st.text(),
)

# -- what a reply must look like ------------------------------------------------------


def deeper(depth, func, *args):
    """Call ``func`` ``depth`` frames deeper than here, as a caller of the core would."""
    if depth == 0:
        return func(*args)
    return deeper(depth - 1, func, *args)


def check_reply_to(connection, text):
    """Feed ``text`` and check everything the connection returns; return it."""
    before = connection.state
    replies = connection.receive(text)
    if before is ConnectionState.CLOSED:
        assert replies == []
        return replies
    for position, reply in enumerate(replies):
        if reply is CLOSE:
            assert position == len(replies) - 1
            assert isinstance(replies[position - 1], Failed)
            assert connection.state is ConnectionState.CLOSED
        elif isinstance(reply, (Connected, Failed, Pong, Error)):
            wire = loads(deeper(HEADROOM, encode, reply))
            assert wire["msg"] in SERVER_MESSAGES
            if isinstance(reply, Error):
                assert wire["reason"] in ERROR_REASONS
        else:
            assert before is ConnectionState.CONNECTED
            assert isinstance(reply, (Sub, Unsub, Method)), reply
            check_request(reply)
    if before is ConnectionState.CONNECTED:
        # One answer per frame (PROTOCOL.md 4.2), except a pong, which needs none.
        assert len(replies) == 1 or (replies == [] and _is_pong(text, connection))
    else:
        assert len(replies) == 1 or (len(replies) == 2 and replies[1] is CLOSE)
    return replies


def check_request(request):
    if isinstance(request, Unsub):
        assert request.id is MISSING or isinstance(request.id, str)
        return
    assert isinstance(request.id, str)
    assert isinstance(request.name if isinstance(request, Sub) else request.method, str)
    assert isinstance(request.params, tuple)
    if isinstance(request, Method):
        assert request.random_seed is MISSING or isinstance(request.random_seed, str)


def _is_pong(text, connection):
    return connection.heartbeat_enabled and json.loads(text).get("msg") == "pong"


def connection_in(state):
    connection = ServerConnection("SESSION")
    if state != "awaiting":
        connection.receive(json.dumps({"msg": "connect", "version": state, "support": [state]}))
    return connection


_STATES = st.sampled_from(["awaiting", "1", "pre1"])

# -- the properties -------------------------------------------------------------------


@FUZZ
@given(_STATES, st.lists(FRAMES, min_size=1, max_size=8))
@example("1", ["[" * 5_000])
def test_any_frames_get_readable_answers(state, frames):
    connection = connection_in(state)
    for text in frames:
        check_reply_to(connection, text)


@FUZZ
@given(_IDS, TEXT, st.lists(VALUES, max_size=5), st.booleans(), st.booleans())
def test_valid_requests_reach_the_session_with_their_ejson_intact(
    request_id, name, params, is_method, ascii_only
):
    connection = connection_in("1")
    if is_method:
        message = {"params": to_ejson(params), "method": name, "id": request_id, "msg": "method"}
        expected = Method(request_id, name, tuple(params))
    else:
        message = {"extra": True, "params": to_ejson(params), "name": name, "id": request_id}
        message["msg"] = "sub"
        expected = Sub(request_id, name, tuple(params))
    assert check_reply_to(connection, _dump(message, ascii_only)) == [expected]


@FUZZ
@given(mangled_messages(), st.booleans())
def test_mangled_messages_are_answered_and_the_connection_goes_on(message, ascii_only):
    connection = connection_in("1")
    check_reply_to(connection, _dump(message, ascii_only))
    assert check_reply_to(connection, '{"msg":"ping","id":"after"}') == [Pong("after")]


@pytest.mark.parametrize("kind", ["array", "object", "params"])
def test_every_reply_can_be_encoded_by_a_deeper_caller(kind):
    # The core leaves a message unquoted when quoting it would exhaust the recursion limit;
    # the reply must then still encode in its caller, a few frames deeper, at every depth.
    connection = connection_in("1")
    for depth in range(_LIMIT + 10):
        try:
            check_reply_to(connection, nested(depth, kind))
        except RecursionError:
            pytest.fail(f"the reply to {kind} nesting {depth} deep fails {HEADROOM} frames deeper")


# -- SockJS frames --------------------------------------------------------------------

SOCKJS_PAYLOADS = st.one_of(
    st.lists(FRAMES, max_size=4).map(json.dumps),
    FRAMES.map(json.dumps),
    st.lists(FRAMES, max_size=4)
    .map(json.dumps)
    .flatmap(lambda payload: st.builds(lambda at: payload[:at], st.integers(0, len(payload)))),
    st.builds(_dump, JSON, st.booleans()),
    DEEP_TEXTS,
    st.text(),
)


@FUZZ
@given(SOCKJS_PAYLOADS, st.booleans())
@example("[" * 5_000, True)
@example("[" * 5_000, False)
def test_sockjs_payloads_give_messages_or_a_framing_error(payload, single_allowed):
    try:
        messages = client_messages(payload, single_allowed=single_allowed)
    except FramingError:
        return
    connection = connection_in("awaiting")
    for message in messages:
        assert isinstance(message, str)
        check_reply_to(connection, message)


@FUZZ
@given(st.lists(FRAMES, max_size=4))
def test_replies_survive_sockjs_framing(frames):
    connection = connection_in("1")
    replies = [reply for text in frames for reply in connection.receive(text)]
    texts = [encode(reply) for reply in replies if isinstance(reply, (Pong, Error))]
    frame = messages_frame(texts)
    assert frame.isascii()
    assert json.loads(frame[1:]) == texts
