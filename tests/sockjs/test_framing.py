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
