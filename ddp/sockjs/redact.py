"""Session ids kept out of log lines.

An xhr session is reached by its id alone, which every request carries in its URL
(``/<server>/<session>/xhr``): whoever reads it in a log could read and write that
session (from the client's own address, which a shared proxy may give them). So a log
line shows a hint in its place: the same for one session all through a process, so its
lines can be followed, and of no use to find the id, being keyed by a secret that
lives and dies with the process.
"""

import hashlib
import re
import secrets

_KEY = secrets.token_bytes(16)

#: A session's URL anywhere in a text, as the server routes it (``SESSION_URL``).
_SESSION_PATH = re.compile(
    r"(?P<server>/[^/.\s]+/)(?P<session>[^/.\s]+)(?P<transport>/(?:xhr|xhr_send|xhr_streaming|websocket)\b)"
)


def hint(session_id):
    """``~`` and 8 hex digits standing for ``session_id`` in log lines."""
    digest = hashlib.blake2b(session_id.encode(errors="replace"), key=_KEY, digest_size=4)
    return "~" + digest.hexdigest()


def redact(text):
    """``text`` (a request line, say) with each session URL's id replaced by its hint."""
    return _SESSION_PATH.sub(lambda m: m["server"] + hint(m["session"]) + m["transport"], text)
