"""Which of ``ddpserver --workers N``'s workers must serve a request, from its first line.

A SockJS xhr session lives in the memory of the worker that opened it, and each of its
requests (``/sockjs/<server>/<session>/xhr``, ``xhr_send``, ``xhr_streaming``) is a new
HTTP request, accepted by whichever worker wins the race on the shared socket. So each
request goes to the session's *owner*: a stable hash of its id, modulo the number of
workers. ``zlib.crc32`` rather than ``hash()``, which Python salts per process: every
worker, and a worker restarted in its place, must agree. A websocket under a session
path follows the same rule, harmlessly.

``/metrics/<k>`` belongs to worker ``k``, so that Prometheus can scrape each worker
through the one port. Every other request is served where it was accepted.

Sans-I/O: the driver peeks the bytes, this module only reads them.
"""

import re
import zlib

#: The request line: method, target (path and query), version.
REQUEST_LINE = re.compile(rb"^[A-Z]+ (?P<path>/[^ ?]*)(?:\?[^ ]*)? HTTP/\d\.\d\r\n")
#: A SockJS session's path, as :data:`ddp.sockjs.server.SESSION_URL` reads it under
#: ``/sockjs``.
SESSION_PATH = re.compile(rb"^/sockjs/[^/.]+/(?P<session>[^/.]+)/[a-z_]+/?$")
METRICS_PATH = re.compile(rb"^/metrics/(?P<worker>\d{1,4})$")

#: Bytes of a request's start that are peeked at most: a longer request line is no
#: session path worth routing, and is served where it was accepted.
HEAD_LIMIT = 2048


def complete(head):
    """Whether ``head``, the start of a request, holds enough to decide: its whole first
    line, or as much as :func:`owner` would ever read."""
    return b"\r\n" in head or len(head) >= HEAD_LIMIT


def owner(head, workers):
    """The index of the worker that must serve the request starting with ``head``, or
    None if any may (not a session path, or not a request line at all)."""
    match = REQUEST_LINE.match(head)
    if match is None:
        return None
    path = match["path"]
    session = SESSION_PATH.match(path)
    if session is not None:
        return zlib.crc32(session["session"]) % workers
    metrics = METRICS_PATH.match(path)
    if metrics is not None and int(metrics["worker"]) < workers:
        return int(metrics["worker"])
    return None
