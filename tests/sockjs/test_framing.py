"""SockJS frames, without a server."""

import pytest

from ddp.sockjs.framing import FramingError, client_messages, close_frame, messages_frame

pytestmark = pytest.mark.quick


def test_messages_frame_is_compact_and_ascii():
    assert messages_frame(["a", 'b"c']) == 'a["a","b\\"c"]'
    assert messages_frame(["\u00e9\u2028\ud800"]) == 'a["\\u00e9\\u2028\\ud800"]'


def test_close_frame():
    assert close_frame(3000, "Go away!") == 'c[3000,"Go away!"]'


def test_client_messages():
    assert client_messages('["a","b"]') == ["a", "b"]
    assert client_messages("[]") == []
    assert client_messages('"a"', single_allowed=True) == ["a"]
    assert client_messages('["\\ud800"]') == ["\ud800"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('["a', "Broken JSON encoding."),
        ('"a"', "Payload expected."),
        ("{}", "Payload expected."),
        ("null", "Payload expected."),
        ("[1]", "Broken JSON encoding."),
    ],
)
def test_client_messages_refused(payload, reason):
    with pytest.raises(FramingError, match=reason):
        client_messages(payload)


def _at_stack_depth(depth, function):
    """``function()`` called ``depth`` Python frames deeper than here."""
    if depth == 0:
        return function()
    return _at_stack_depth(depth - 1, function)


def _reason(payload):
    try:
        client_messages(payload)
    except FramingError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("nesting", [150, 400, 5000])
@pytest.mark.parametrize(("opening", "closing"), [('{"a":', "}"), ("[", "]"), ('["x",', "]")])
def test_deep_nesting_gets_the_same_answer_however_deep_the_stack(nesting, opening, closing):
    # The answer must not depend on how much stack the caller (a green thread's request
    # handler, say) has used: json's own limit is Python's recursion limit.
    payload = opening * nesting + "0" + closing * nesting
    answers = {_at_stack_depth(depth, lambda: _reason(payload)) for depth in (0, 300, 700)}
    assert answers == {"Broken JSON encoding."}


def test_brackets_inside_strings_are_not_nesting():
    payload = '["' + "[{" * 500 + '"]'
    assert client_messages(payload) == ["[{" * 500]
    assert _at_stack_depth(700, lambda: client_messages(payload)) == ["[{" * 500]
