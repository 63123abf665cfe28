"""SockJS frames: what the server writes, and the messages in what clients send.

Pure functions, no I/O (PROTOCOL.md 10.2). The server writes four kinds of frame: ``o``
(open), ``h`` (heartbeat), ``a[...]`` (a JSON array of messages) and ``c[code,"reason"]``
(close). Messages are encoded with every non-ASCII character escaped (B7): a JavaScript
string may carry lone surrogates, which a Python ``str`` keeps but UTF-8 cannot encode, and
browsers' transports mangle U+2028 and its neighbours unless they arrive escaped
(sockjs-protocol's JSONEncoding tests).
"""

import functools
import json
import re

OPEN = "o"
HEARTBEAT = "h"

#: The reasons sockjs-node gives for a payload it cannot read (``src/trans-xhr.coffee``).
BROKEN_JSON = "Broken JSON encoding."
PAYLOAD_EXPECTED = "Payload expected."


#: Deeper nesting than this is refused before parsing. A frame is an array of strings
#: (depth 1); json's own limit is Python's recursion limit, less the stack its caller has
#: used, so without this the answer to the same payload would depend on who asked.
MAX_NESTING = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class FramingError(ValueError):
    """A client's payload is not a JSON array of strings; ``str()`` is the reason."""


@functools.lru_cache(maxsize=1024)
def quote(message):
    """One message as a JSON string. A message sent to many sessions is quoted once: the
    cache is keyed by the text, whose hash Python keeps in the string itself."""
    return json.dumps(message)


def messages_frame(messages):
    """One ``a`` frame carrying every message in ``messages``, in order."""
    return "a[" + ",".join(map(quote, messages)) + "]"


def close_frame(code, reason):
    return "c" + json.dumps([code, reason], separators=(",", ":"))


def client_messages(payload, single_allowed=False):
    """The messages a client sent: a JSON array of strings, or one JSON string on a websocket.

    An empty array is a valid frame with no message (clients send it as a heartbeat).
    Anything but strings inside the array is refused too: the app is promised text.
    """
    if _too_deep(payload):
        raise FramingError(BROKEN_JSON)
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        raise FramingError(BROKEN_JSON) from None
    if single_allowed and isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise FramingError(PAYLOAD_EXPECTED)
    if not all(isinstance(message, str) for message in value):
        raise FramingError(BROKEN_JSON)
    return value


def _too_deep(payload):
    """Whether ``payload`` nests arrays and objects deeper than :data:`MAX_NESTING`, brackets
    inside strings aside. Two regular expressions for any frame; the loop runs only for a
    payload with that many brackets, which no client's frame has."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", payload))
    if len(brackets) <= MAX_NESTING:
        return False
    depth = 0
    for bracket in brackets:
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_NESTING:
            return True
    return False
