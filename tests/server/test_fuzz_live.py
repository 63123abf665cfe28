"""Fuzzed frames against a real ``ddpserver``: every reply is DDP, and the server keeps serving.

Hypothesis sends valid, mangled, mutated, deeply nested and random DDP messages, as raw
websocket frames (text, binary, fragmented, at the size limit), as SockJS websocket frames, and
as SockJS ``xhr_send`` bodies. Each example is one connection (or SockJS session), opened with a
successful ``connect`` (the states before it are fuzzed in-process, where a failed handshake's
close cannot race the frames still being sent), so that a failure shrinks to a sequence that
reproduces it.

Every DDP message the server sends must be ASCII, strict JSON and a DDP server message of the
right shape. A connection may close only for a documented reason: 1009 for a frame over
``--max-message-size``, 1007 for a text frame that is not UTF-8 (RFC 6455), and on SockJS 3000
"Broken framing." for a frame that is not a JSON string or array of strings (PROTOCOL.md 10.2).
The server logs no traceback, and afterwards a fresh client connects, subscribes and calls.
"""

import json
import secrets
import string
import urllib.error
import urllib.request

import pytest
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddp.protocol import loads, to_ejson
from ddp.sockjs.framing import MAX_NESTING
from ddp.testing import WebSocketDDPClient
from tests.protocol.test_fuzz import (
    CONNECT,
    ERROR_REASONS,
    FRAMES,
    JSON,
    SERVER_MESSAGES,
    VALUES,
    nested,
)

pytestmark = pytest.mark.django_db(transaction=True)

#: ``--max-message-size`` of the server under test, small so that frames reach it cheaply.
LIMIT = 8192
#: The call that ends every sequence: its result and updated come after every reply to what
#: was sent before it (R7), logs included.
SENTINEL = "~sentinel~"
SENTINEL_CALL = json.dumps({"msg": "method", "id": SENTINEL, "method": "test.nothing"})

LIVE = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture(scope="module")
def server(start_server):
    return start_server("--max-message-size", str(LIMIT))


# -- DDP messages -----------------------------------------------------------------------


def _sendable(text):
    # A websocket text frame is UTF-8, which lone surrogates have no form in; and only the
    # endings may go over the limit.
    return text.encode("utf-8", "replace").decode("utf-8")[:LIMIT]


#: Publications and methods that exist and log nothing when misused (``Failing`` and
#: ``test.writeThenFail`` log their exception by design, and are left out).
_PUBLICATIONS = ["AllBooks", "Articles", "Refusing", "meteor_autoupdate_clientVersions"]
_METHODS = ["test.echo", "test.nothing", "test.whoami", "test.refuse", "no.such.method"]
_IDS = st.text(string.ascii_letters + string.digits, min_size=1, max_size=4)

LIVE_REQUESTS = st.one_of(
    st.builds(
        lambda sub_id, name, params: {"msg": "sub", "id": sub_id, "name": name, "params": params},
        _IDS,
        st.sampled_from(_PUBLICATIONS),
        st.just([]) | st.lists(JSON, max_size=2),
    ),
    st.builds(lambda sub_id: {"msg": "unsub", "id": sub_id}, _IDS),
    st.builds(
        lambda call_id, method, params: {
            "msg": "method",
            "id": call_id,
            "method": method,
            "params": params,
        },
        _IDS,
        st.sampled_from(_METHODS),
        st.lists(VALUES, max_size=3).map(to_ejson),
    ),
).map(json.dumps)

#: One DDP message's text, as a client may get it right or wrong.
DDP_TEXTS = st.one_of(FRAMES.map(_sendable), LIVE_REQUESTS)


def _padded_ping(size):
    """A valid ``ping`` of exactly ``size`` characters: answered with a ``pong`` as long."""
    empty = '{"msg":"ping","id":""}'
    return empty[:-2] + "x" * (size - len(empty)) + '"}'


# -- raw websocket frames ---------------------------------------------------------------

TEXT_FRAMES = DDP_TEXTS.map(lambda text: ("text", text))
NEAR_LIMIT = st.integers(0, 64).map(lambda under: ("text", _padded_ping(LIMIT - under)))
BINARY = st.binary(max_size=64).map(lambda data: ("binary", data))
FRAGMENTED = st.tuples(st.just("fragments"), DDP_TEXTS, st.integers(2, 5))
RAW_FRAMES = st.one_of(TEXT_FRAMES, TEXT_FRAMES, NEAR_LIMIT, BINARY, FRAGMENTED)

_INVALID_UTF8 = b'{"msg":"ping","id":"\xff"}'

#: Frames that end a connection, and the close code each must get.
RAW_ENDINGS = st.one_of(
    st.integers(1, 64).map(lambda over: (("text", _padded_ping(LIMIT + over)), 1009)),
    st.integers(1, 64).map(lambda over: (("binary", b"\x00" * (LIMIT + over)), 1009)),
    st.just((("invalid-utf8", _INVALID_UTF8), 1007)),
)

# -- SockJS frames ----------------------------------------------------------------------


def is_sockjs_framing(payload):
    """Whether sockjs-node reads ``payload`` as messages: a JSON string, an array of strings,
    or nothing at all (PROTOCOL.md 10.2)."""
    if not payload:
        return True
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    )


_PAYLOADS = st.one_of(st.lists(DDP_TEXTS, max_size=4).map(json.dumps), DDP_TEXTS.map(json.dumps))
SOCKJS_FRAMES = st.one_of(
    _PAYLOADS.map(lambda payload: ("text", payload)),
    _PAYLOADS.map(lambda payload: ("binary", payload.encode())),
    st.tuples(st.just("fragments"), _PAYLOADS, st.integers(2, 5)),
    st.just(("text", "")),
).filter(lambda frame: len(frame[1]) <= LIMIT)

_BROKEN = st.one_of(FRAMES, st.builds(json.dumps, JSON), st.text()).map(_sendable)
SOCKJS_ENDINGS = st.one_of(
    _BROKEN.filter(lambda payload: not is_sockjs_framing(payload)).map(
        lambda payload: (("text", payload), 3000)
    ),
    st.just((("binary", _INVALID_UTF8), 3000)),
    st.just((("invalid-utf8", _INVALID_UTF8), 1007)),
    st.just((("text", json.dumps([_padded_ping(LIMIT)])), 1009)),
)


def send(ws, frame):
    kind, data = frame[0], frame[1]
    if kind == "text":
        ws.send(data)
    elif kind == "binary":
        ws.send_binary(data)
    elif kind == "invalid-utf8":
        ws.send(data, opcode=websocket.ABNF.OPCODE_TEXT)
    else:
        # One text message in ``parts`` frames, cut anywhere, even inside a UTF-8 sequence.
        data = data.encode("utf-8")
        size = -(-len(data) // frame[2]) or 1
        chunks = [data[at : at + size] for at in range(0, len(data), size)] or [b""]
        for index, chunk in enumerate(chunks):
            opcode = websocket.ABNF.OPCODE_TEXT if index == 0 else websocket.ABNF.OPCODE_CONT
            last = index == len(chunks) - 1
            ws.send_frame(websocket.ABNF.create_frame(chunk, opcode, fin=int(last)))


# -- what comes back --------------------------------------------------------------------


def check_meteor_error(error):
    assert error["errorType"] == "Meteor.Error" and error["isClientSafe"] is True, error
    assert isinstance(error["message"], str) and "Traceback" not in error["message"], error


def check_server_message(data):
    """Parse one DDP message from the server and check it is a server message."""
    assert data.isascii(), data[:200]  # B7
    message = loads(data.decode("ascii"))
    kind = message.get("msg") if isinstance(message, dict) else None
    assert kind in SERVER_MESSAGES, message
    if kind == "error":
        assert message["reason"] in ERROR_REASONS, message
    elif kind in ("result", "nosub"):
        assert isinstance(message.get("id", ""), str), message
        if "error" in message:
            check_meteor_error(message["error"])
    elif kind in ("updated", "ready"):
        ids = message["methods" if kind == "updated" else "subs"]
        assert ids and all(isinstance(i, str) for i in ids), message
    elif kind in ("added", "changed", "removed"):
        assert isinstance(message["collection"], str) and isinstance(message["id"], str)
    return message


def _next_frame(ws):
    """The next data frame ``(opcode, data)``, or ``(None, close code)``."""
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return None, int.from_bytes(data[:2], "big") if data else None
        if opcode not in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
            return opcode, data


def receive_raw(ws):
    """The DDP messages of the next frame on ``/websocket``, and the close code or None."""
    opcode, data = _next_frame(ws)
    if opcode is None:
        return [], data
    assert opcode == websocket.ABNF.OPCODE_TEXT, opcode  # T4: text only
    return [check_server_message(data)], None


def receive_sockjs(ws):
    """The DDP messages of the next SockJS frame, and the close code (of a ``c`` frame or
    of the socket) or None."""
    opcode, data = _next_frame(ws)
    if opcode is None:
        return [], data
    assert opcode == websocket.ABNF.OPCODE_TEXT, opcode
    frame = data.decode("ascii")  # sockjs-protocol's JSONEncoding: every frame is ASCII
    if frame == "h":
        return [], None
    if frame.startswith("c"):
        return [], json.loads(frame[1:])[0]
    assert frame.startswith("a"), frame
    messages = json.loads(frame[1:])
    assert isinstance(messages, list) and all(isinstance(m, str) for m in messages), frame
    return [check_server_message(m.encode()) for m in messages], None


def drain(ws, receive, until_close=False):
    """Read replies until the sentinel's result and updated (or, ``until_close``, until the
    server closes); return them and the close code, None if the server did not close."""
    replies, sentinel = [], set()
    while until_close or sentinel != {"result", "updated"}:
        messages, code = receive(ws)
        for message in messages:
            replies.append(message)
            if message["msg"] == "result" and message["id"] == SENTINEL:
                sentinel.add("result")
            elif message["msg"] == "updated" and SENTINEL in message["methods"]:
                sentinel.add("updated")
        if code is not None:
            return replies, code
    return replies, None


# -- the server, before and after ------------------------------------------------------


def logged_tracebacks(server, since):
    """Tracebacks the server logged after offset ``since`` of its output, with context."""
    log = server.output()[since:]
    return log[max(0, log.find("Traceback") - 300) :][:3000] if "Traceback" in log else ""


def assert_still_serving(server, since):
    """A fresh client connects, subscribes and calls; nothing was logged as a traceback."""
    assert server.process.poll() is None, server.output()[-3000:]
    client = WebSocketDDPClient(server.ws_url)
    try:
        client.subscribe("AllBooks")
        assert client.call("test.echo", "still", 1) == ["still", 1]
    finally:
        client.close()
    assert not logged_tracebacks(server, since)


@pytest.fixture
def since(server):
    """Where the server's output stood when the test began."""
    return len(server.output())


def connected(server):
    """A raw ``/websocket`` connection, past the DDP handshake."""
    ws = websocket.create_connection(server.ws_url, timeout=20)
    ws.send(json.dumps(CONNECT))
    assert receive_raw(ws)[0][0]["msg"] == "connected"
    return ws


def sockjs_connected(server):
    """A SockJS websocket session (``/sockjs/<server>/<session>/websocket``), past the DDP
    handshake."""
    url = f"ws://127.0.0.1:{server.port}/sockjs/000/{secrets.token_hex(4)}/websocket"
    ws = websocket.create_connection(url, timeout=20)
    assert ws.recv() == "o"
    ws.send(json.dumps([json.dumps(CONNECT)]))
    assert receive_sockjs(ws)[0][0]["msg"] == "connected"
    return ws


def exchange(server, connect, receive, frames, ending, sentinel):
    """Send ``frames``, then ``ending`` or ``sentinel``; check the close and the log."""
    last, expected = (sentinel, None) if ending is None else ending
    since = len(server.output())
    ws = connect(server)
    try:
        for frame in [*frames, last]:
            send(ws, frame)
        replies, code = drain(ws, receive, until_close=ending is not None)
    except (OSError, websocket.WebSocketException) as exc:
        replies, code = [], repr(exc)  # cut without a close frame, or while still sending
    finally:
        ws.close()
    assert code == expected, f"closed with {code}, not {expected}; last replies {replies[-3:]}"
    if ending is None:
        # The sentinel's answer comes after everything the frames caused, logs included.
        assert not logged_tracebacks(server, since)


# -- raw /websocket -----------------------------------------------------------------------


@LIVE
@given(st.lists(RAW_FRAMES, min_size=5, max_size=40), st.none() | RAW_ENDINGS)
def test_fuzzed_frames_get_ddp_replies_and_only_documented_closes(server, frames, ending):
    exchange(server, connected, receive_raw, frames, ending, ("text", SENTINEL_CALL))


def test_fuzzing_left_the_server_serving(server, since):
    assert_still_serving(server, since)


@pytest.mark.parametrize("kind", ["array", "object", "params"])
def test_every_nesting_depth_gets_an_answer(server, since, kind):
    ws = connected(server)
    try:
        for depth in range(1_100):
            ws.send(nested(depth, kind))
            messages, code = receive_raw(ws)
            assert code is None, f"closed ({code}) instead of answering depth {depth}"
            assert messages[0]["msg"] == "error", messages
    finally:
        ws.close()
    assert_still_serving(server, since)


def test_frames_at_the_limit_pass_and_one_byte_more_closes_with_1009(server, since):
    pong = {"msg": "pong", "id": "x" * (LIMIT - len('{"msg":"ping","id":""}'))}
    ws = connected(server)
    try:
        ws.send(_padded_ping(LIMIT))
        assert receive_raw(ws) == ([pong], None)
        send(ws, ("fragments", _padded_ping(LIMIT), 4))
        assert receive_raw(ws) == ([pong], None)
        ws.send_binary(b"\x00" * LIMIT)
        assert receive_raw(ws) == ([{"msg": "error", "reason": "Bad request"}], None)
        send(ws, ("fragments", _padded_ping(LIMIT + 1), 3))
        assert receive_raw(ws) == ([], 1009)
    finally:
        ws.close()
    assert_still_serving(server, since)


def test_nul_in_subscription_parameters_is_bad_input_not_a_server_error(server, since):
    # JSON strings may hold U+0000; PostgreSQL's text and jsonb cannot.
    ws = connected(server)
    try:
        ws.send(json.dumps({"msg": "sub", "id": "nul", "name": "AllBooks", "params": ["a\x00"]}))
        reply = None
        while reply is None:
            messages, code = receive_raw(ws)
            assert code is None, code
            reply = next((m for m in messages if "nul" in (m.get("id"), *m.get("subs", ()))), None)
    finally:
        ws.close()
    assert reply["msg"] == "ready" or reply["error"]["error"] == 400, reply
    assert_still_serving(server, since)


# -- SockJS ---------------------------------------------------------------------------------


@LIVE
@given(st.lists(SOCKJS_FRAMES, min_size=5, max_size=40), st.none() | SOCKJS_ENDINGS)
def test_fuzzed_sockjs_frames_get_ddp_replies_and_only_documented_closes(server, frames, ending):
    sentinel = ("text", json.dumps([SENTINEL_CALL]))
    exchange(server, sockjs_connected, receive_sockjs, frames, ending, sentinel)


def xhr(url, body=None):
    """POST to a SockJS xhr URL; return the status and the body."""
    data = None if body is None else body.encode("utf-8")
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def xhr_send_answers(body):
    """What sockjs-node answers an ``xhr_send`` body (PROTOCOL.md T6), as a set of one.

    Nesting deeper than :data:`ddp.sockjs.framing.MAX_NESTING` is "Broken JSON encoding.",
    whatever the stack of whoever parses it (sockjs-node's ``JSON.parse`` has a limit of
    its own too).
    """
    broken = (500, b"Broken JSON encoding.")
    try:
        value = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return {broken}
    if _deeper_than(value, MAX_NESTING):
        return {broken}
    if not isinstance(value, list):
        return {(500, b"Payload expected.")}
    if not all(isinstance(item, str) for item in value):
        return {broken}
    return {(204, b"")}


def _deeper_than(value, limit):
    """Whether ``value`` nests lists and dicts more than ``limit`` deep (no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if not isinstance(item, (dict, list)):
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


XHR_BODIES = st.one_of(_PAYLOADS, _BROKEN, st.just(""), st.just("[]")).filter(
    lambda body: len(body.encode("utf-8")) <= LIMIT
)


@LIVE
@given(st.lists(XHR_BODIES, min_size=1, max_size=10))
def test_fuzzed_xhr_send_bodies_get_sockjs_answers_and_ddp_replies(server, bodies):
    since = len(server.output())
    base = f"{server.url}sockjs/000/{secrets.token_hex(4)}/"
    assert xhr(base + "xhr") == (200, b"o\n")
    assert xhr(base + "xhr_send", json.dumps([json.dumps(CONNECT)])) == (204, b"")
    for body in bodies:
        assert xhr(base + "xhr_send", body) in xhr_send_answers(body), body
    assert xhr(base + "xhr_send", json.dumps([SENTINEL_CALL])) == (204, b"")
    replies, answered = [], set()
    while answered != {"result", "updated"}:
        status, frame = xhr(base + "xhr")
        assert status == 200 and frame.endswith(b"\n"), (status, frame)
        if frame == b"h\n":
            continue
        assert frame.startswith(b"a"), frame
        for text in json.loads(frame[1:]):
            message = check_server_message(text.encode())
            replies.append(message)
            if message["msg"] == "result" and message["id"] == SENTINEL:
                answered.add("result")
            elif message["msg"] == "updated" and SENTINEL in message["methods"]:
                answered.add("updated")
    assert replies[0]["msg"] == "connected"
    assert not logged_tracebacks(server, since)


def test_sockjs_payloads_nested_too_deep_are_broken_framing(server, since):
    deep = "[" * 5_000
    ws = sockjs_connected(server)
    try:
        ws.send(deep)
        assert drain(ws, receive_sockjs, until_close=True)[1] == 3000
    finally:
        ws.close()
    base = f"{server.url}sockjs/000/{secrets.token_hex(4)}/"
    assert xhr(base + "xhr") == (200, b"o\n")
    assert xhr(base + "xhr_send", deep) == (500, b"Broken JSON encoding.")
    # Well formed, and parseable on a shallow stack: refused all the same, and not by luck
    # of the stack depth the parser was called at (Hypothesis found 460 both ways).
    for depth in (100, 460):
        body = _sendable(nested(depth, "array"))
        assert xhr(base + "xhr_send", body) == (500, b"Broken JSON encoding.")
    assert_still_serving(server, since)


def test_sockjs_fuzzing_left_the_server_serving(server, since):
    assert_still_serving(server, since)
