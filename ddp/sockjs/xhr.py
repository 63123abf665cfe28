"""XHR polling, XHR streaming and ``xhr_send`` (sockjs-node ``src/trans-xhr.coffee``; T5, T6).

A receiving request (``xhr``, ``xhr_streaming``) is answered by a generator: the WSGI server
writes each frame as it is yielded (eventlet.wsgi sends one HTTP chunk per item once
``eventlet.minimum_write_chunk_size`` is 0). Polling is streaming that stops after one
frame. While it waits, the request's own green thread waits (the server's driver's
``wait_readable``) on two sockets: one end of a socket pair that the session pokes when it
has something new, and the client's socket, whose end-of-file means that the client went
away. That is how a broken-off poll is noticed at once (sockjs-protocol's HandlingClose
tests) rather than at the next heartbeat.
"""

import enum
import socket

from ddp.sockjs import responses
from ddp.sockjs.framing import (
    BROKEN_JSON,
    HEARTBEAT,
    PAYLOAD_EXPECTED,
    FramingError,
    client_messages,
)

#: IE needs 2 KiB before it hands a streaming answer to the page.
PRELUDE = b"h" * 2048 + b"\n"

#: The request bodies ``xhr_send`` reads (sockjs-node's ``expect_xhr``); others carry none.
SEND_CONTENT_TYPES = {"text/plain", "T", "application/json", "application/xml", "", "text/xml"}


class Wakeup(enum.Enum):
    """How a wait ended: something to take, the heartbeat is due, or the client left."""

    WOKEN = "woken"
    TIMEOUT = "timeout"
    GONE = "gone"


class Waiter:
    """A held request's receiver: the session wakes it; it also watches its client leave.

    A socket pair rather than a driver's event: the wait must end on either the wake-up
    or the client's socket, and a driver waits on several sockets at once, not on an
    event and a socket."""

    def __init__(self, client, driver):
        self._client = client
        self._driver = driver
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_out.setblocking(False)

    def wake(self):
        try:
            self._wake_out.send(b"\0")
        except OSError:
            pass  # the pair is full: a wake-up is pending anyway

    def cut(self):
        """Drop the client, even while its request is blocked writing to it."""
        if self._client is not None:
            try:
                self._client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.wake()

    def wait(self, timeout):
        clock = self._driver.clock
        deadline = clock() + timeout
        while (remaining := deadline - clock()) > 0:
            watched = [self._wake_in] if self._client is None else [self._wake_in, self._client]
            readable = self._driver.wait_readable(*watched, timeout=remaining)
            if self._wake_in in readable:
                self._wake_in.recv(4096)
                return Wakeup.WOKEN
            if readable and self._client_left():
                return Wakeup.GONE
        return Wakeup.TIMEOUT

    def _client_left(self):
        try:
            if not self._client.recv(1, socket.MSG_PEEK):
                return True
        except OSError:
            return True
        except ValueError:
            pass  # a TLS socket cannot peek: stop watching, heartbeats will tell
        # Or the client sent its next request already: it is there; stop watching.
        self._client = None
        return False

    def close(self):
        self._wake_in.close()
        self._wake_out.close()


def client_socket(environ):
    """The request's socket under eventlet.wsgi; elsewhere nothing to watch."""
    stream = environ.get("eventlet.input")
    return stream.get_socket() if stream is not None else None


def receiving_headers(server, environ):
    return [
        responses.JAVASCRIPT,
        *server.session_headers(environ),
        # nginx would otherwise buffer the stream.
        ("X-Accel-Buffering", "no"),
    ]


def poll(server, environ, start_response, session_id):
    """``POST .../xhr``: one frame, at once or when there is one, then the answer ends."""
    if server.foreign(session_id, environ):
        return responses.not_found(start_response, server.session_headers(environ))
    start_response("200 OK", receiving_headers(server, environ))
    environ["eventlet.minimum_write_chunk_size"] = 0
    return frames(server, environ, session_id, limit=1)


def stream(server, environ, start_response, session_id):
    """``POST .../xhr_streaming``: frames until ``response_limit`` bytes, so browsers can
    free what the answer has accumulated."""
    if server.foreign(session_id, environ):
        return responses.not_found(start_response, server.session_headers(environ))
    start_response("200 OK", receiving_headers(server, environ))
    environ["eventlet.minimum_write_chunk_size"] = 0
    return frames(server, environ, session_id, server.options.response_limit, PRELUDE)


def frames(server, environ, session_id, limit, prelude=None):
    """The newline-terminated frames of one receiving request, after ``prelude``, until done.

    Done means: ``limit`` bytes written, the close frame written, refused (another request
    holds the session, or the session is closing), or the client gone. A heartbeat ``h``
    goes out after ``heartbeat_delay`` of silence.
    """
    if prelude is not None:
        yield prelude
    waiter = Waiter(client_socket(environ), server.driver)
    try:
        session, pending, attached = server.attach(session_id, environ, waiter)
        aborted = closing = False
        written = 0
        try:
            while True:
                for frame in pending:
                    data = (frame + "\n").encode()
                    yield data
                    written += len(data)
                    if written >= limit:
                        return
                if closing or not attached:
                    return
                wakeup = waiter.wait(server.options.heartbeat_delay)
                if wakeup is Wakeup.GONE:
                    aborted = True
                    return
                pending, closing = session.take()
                if not pending and not closing and wakeup is Wakeup.TIMEOUT:
                    pending = [HEARTBEAT]
        except GeneratorExit:
            # The WSGI server stopped writing: the client went away mid-answer.
            aborted = True
            raise
        finally:
            if attached:
                session.detach(waiter, aborted)
    finally:
        waiter.close()


def send(server, environ, start_response, session_id):
    """``POST .../xhr_send``: the client's messages, a JSON array of strings."""
    headers = server.session_headers(environ)
    try:
        payload = read_payload(environ, server.options.max_message_size)
        if payload is None:
            return responses.respond(
                start_response, "413 Payload Too Large", [responses.TEXT, *headers], b"Too large."
            )
        if not payload:
            raise FramingError(PAYLOAD_EXPECTED)
        messages = client_messages(payload)
    except FramingError as error:
        return responses.respond(
            start_response,
            "500 Internal Server Error",
            [responses.TEXT, *headers],
            str(error).encode(),
        )
    session = server.find(session_id, environ)
    if session is None:
        return responses.not_found(start_response, headers)
    session.receive(messages)
    # Firefox takes an answer without a content type for XML, and complains.
    return responses.respond(start_response, "204 No Content", [responses.TEXT, *headers])


def read_payload(environ, limit):
    """The body of an ``xhr_send`` as text: ``""`` for a content type sockjs-node ignores,
    ``None`` when longer than ``limit`` bytes.

    sockjs-client under Node sends its bodies chunked, with no length: those are read up
    to the limit (the WSGI server joins the chunks).
    """
    content_type = environ.get("CONTENT_TYPE", "").split(";")[0]
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        body = environ["wsgi.input"].read(-1 if limit is None else limit + 1)
        if limit is not None and len(body) > limit:
            return None
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return None
        body = environ["wsgi.input"].read(length) if length else b""
    if content_type not in SEND_CONTENT_TYPES:
        return ""
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise FramingError(BROKEN_JSON) from None
