"""Unicode through SockJS framing (sockjs-protocol's JSONEncoding; PROTOCOL.md B7).

The server must escape what browsers' transports mangle (U+200C-U+200F, U+2028-U+202F,
U+2060-U+206F, U+FFF0-U+FFFF; here every non-ASCII character), and decode whatever the
client escaped, lone surrogates included.
"""

import json

from tests.sockjs.wire import fetch, session_url

ESCAPED_BY_SERVER = [
    *range(0x200C, 0x2010),
    *range(0x2028, 0x2030),
    *range(0x2060, 0x2070),
    *range(0xFFF0, 0x10000),
]


def echo_through_polling(port, payload):
    url = session_url()
    assert fetch(port, "POST", url + "/xhr").body == "o\n"
    assert fetch(port, "POST", url + "/xhr_send", payload).status == 204
    body = fetch(port, "POST", url + "/xhr").body
    assert body.startswith("a[") and body.endswith("]\n")
    return body[2:-2]


def test_the_server_escapes(port):
    raw = "".join(chr(c) for c in ESCAPED_BY_SERVER)
    received = echo_through_polling(port, json.dumps([raw], ensure_ascii=False))
    assert received == '"' + "".join(f"\\u{c:04x}" for c in ESCAPED_BY_SERVER) + '"'


def test_the_server_decodes_every_escaped_character(port):
    escaped = '"' + "".join(f"\\u{c:04x}" for c in range(0x10000)) + '"'
    received = echo_through_polling(port, f"[{escaped}]")
    assert received.isascii()
    assert json.loads(received) == json.loads(escaped)
