"""DDP clients for tests, with one API: in-process (:class:`DDPClient`) or over a socket.

Both keep every message they receive (``messages``), a local copy of each collection as
Meteor's minimongo would (``collection(name)``), and a list of messages not yet matched
by an assertion. Each ``assert_*`` looks among those unread messages, consumes the one it
matched, and on failure says what did arrive::

    client.subscribe("BooksByAuthorEmail", "janet@evanovich.com")   # waits for ready
    book = Book.objects.create(title="Hot Six", author=janet)
    client.assert_added("bookstore.book", str(book.pk), title="Hot Six")

A test of the wire itself reads in order instead: ``recv`` and ``recv_until`` consume the
oldest unread messages, and ``sub`` and ``method`` send a request and return every message
up to its end (``ready``; ``result`` and ``updated``), as DDP names those requests, where
``subscribe`` and ``call`` return what Meteor's API would.

The in-process client drives the server's own Session (the same registry, merge box and
change path) with no socket, so it is fast and deterministic; its changes come through
:class:`ddp.bus.memory.InMemoryBus`. The websocket client talks to a real ``ddpserver``
and waits up to ``timeout`` seconds for what it expects.
"""

import itertools
import json
import pprint
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ddp.protocol import MeteorError, dumps, from_ejson, loads, to_ejson

if TYPE_CHECKING:
    from ddp.api import Registry
    from ddp.bus.memory import InMemoryBus

#: A DDP message as the clients send and keep it: a dict, EJSON values decoded.
Message = dict[str, Any]
#: A collection as a client holds it: ``{document id: fields}``.
Documents = dict[str, dict[str, Any]]

#: Message keys compared by :meth:`BaseClient.assert_messages`.
_WIRE_FIELDS = ("fields", "result", "params")


class SubscriptionError(AssertionError):
    """A subscription the test expected to be ready ended with ``nosub``."""

    def __init__(self, name: str, error: Any) -> None:
        super().__init__(f"Subscription {name!r} failed: {error}")
        self.error = error


class BaseClient:
    """The API and the assertions; subclasses move the messages."""

    #: Seconds an assertion waits for its message.
    timeout: float = 10.0
    #: Whether messages may still arrive after a pump that brought none.
    waits: bool = True

    def __init__(self) -> None:
        #: Every message received, in order.
        self.messages: list[Message] = []
        self._unread: deque[Message] = deque()
        self._collections: dict[str, Documents] = {}
        #: Where request ids come from; a test that sends its own requests may draw on it.
        self.ids = itertools.count(1)
        #: The session id ``connected`` gave, once connected.
        self.session_id: str | None = None

    # What subclasses provide ---------------------------------------------------------

    def send(self, message: Message) -> None:
        """Send one DDP message (a dict; ``params`` is EJSON-encoded here)."""
        raise NotImplementedError

    def _pump(self, timeout: float) -> bool:
        """Receive what has arrived (waiting up to ``timeout`` s); False if nothing did."""
        raise NotImplementedError

    # Receiving -----------------------------------------------------------------------

    def _received(self, text: str) -> None:
        message = loads(text)
        for key in _WIRE_FIELDS:
            if key in message:
                message[key] = from_ejson(message[key])
        self.messages.append(message)
        self._unread.append(message)
        self._apply(message)

    def _apply(self, message: Message) -> None:
        """Apply a data message to the local copy; fail, as Meteor's client does, on an
        ``added`` for a document already held or a ``changed``/``removed`` for one not."""
        kind = message.get("msg")
        if kind not in ("added", "changed", "removed"):
            return
        docs = self._collections.setdefault(message["collection"], {})
        held = message["id"] in docs
        if held == (kind == "added"):
            raise AssertionError(f"{kind} for a document {'' if held else 'not '}held: {message}")
        if kind == "added":
            docs[message["id"]] = dict(message.get("fields", {}))
        elif kind == "changed":
            doc = docs[message["id"]]
            doc.update(message.get("fields", {}))
            for key in message.get("cleared", ()):
                doc.pop(key, None)
        else:
            del docs[message["id"]]

    def collection(self, name: str) -> Documents:
        """The client's copy of collection ``name``: ``{id: fields}``."""
        self._pump(0)
        return self._collections.get(name, {})

    def _wait(
        self, predicate: Callable[[Message], bool], what: str, timeout: float | None = None
    ) -> Message:
        """Consume and return the first unread message matching ``predicate``.

        An in-process client fails as soon as nothing more can arrive; a socket client
        waits up to ``timeout`` seconds (the client's own by default) for it.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        checked = 0  # each message is tested once: a subscription's thousands of documents
        while True:
            for index, message in enumerate(itertools.islice(self._unread, checked, None)):
                if predicate(message):
                    del self._unread[checked + index]
                    return message
            checked = len(self._unread)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"Expected {what}; {self._arrived()}")
            if not self._pump(min(remaining, 0.25)) and not self.waits:
                raise AssertionError(f"Expected {what}; {self._arrived()}")

    # Reading in order, for tests of the wire itself ----------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """Consume and return the oldest unread message, waiting for one."""
        return self._wait(lambda m: True, "a message", timeout)

    def recv_until(
        self, predicate: Callable[[Message], bool], timeout: float | None = None
    ) -> list[Message]:
        """Consume the unread messages in order up to and including the first for which
        ``predicate`` holds; return them."""
        received = [self.recv(timeout)]
        while not predicate(received[-1]):
            received.append(self.recv(timeout))
        return received

    def read(self) -> list[Message]:
        """Consume and return every unread message that has arrived, in order."""
        self._pump(0)
        unread = list(self._unread)
        self._unread.clear()
        return unread

    def wait_for(self, predicate: Callable[["BaseClient"], bool], timeout: float = 20) -> None:
        """Receive until ``predicate(client)`` holds, e.g. on :meth:`collection`; fail
        after ``timeout`` seconds. What arrived stays unread."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (not self._pump(min(remaining, 0.25)) and not self.waits):
                raise AssertionError(f"gave up waiting; last messages: {self.messages[-5:]}")

    def _arrived(self) -> str:
        if not self._unread:
            return "no unread message arrived"
        return "unread messages:\n" + pprint.pformat(list(self._unread), width=100)

    # Requests ------------------------------------------------------------------------

    def connect(self, version: str = "1", support: Iterable[str] = ("1", "pre2", "pre1")) -> str:
        """Send ``connect``; return the session id of ``connected`` (``failed`` raises)."""
        self.send({"msg": "connect", "version": version, "support": list(support)})
        reply = self._wait(lambda m: m.get("msg") in ("connected", "failed"), "connected")
        if reply["msg"] == "failed":
            raise AssertionError(f"Version negotiation failed: {reply}")
        self.session_id = reply["session"]
        return self.session_id

    def _send_sub(self, name: str, params: Sequence[Any]) -> tuple[str, Callable[[Message], bool]]:
        """Send ``sub``; return its id and the test for the ``ready`` or ``nosub`` ending it."""
        sub_id = str(next(self.ids))
        self.send({"msg": "sub", "id": sub_id, "name": name, "params": list(params)})
        return (
            sub_id,
            lambda m: (
                (m.get("msg") == "ready" and sub_id in m.get("subs", ()))
                or (m.get("msg") == "nosub" and m.get("id") == sub_id)
            ),
        )

    def subscribe(self, name: str, *params: Any) -> str:
        """Subscribe; return the sub id once ``ready`` (consumed; the initial documents
        stay unread for assertions). Raises :class:`SubscriptionError` on ``nosub``."""
        sub_id, ended = self._send_sub(name, params)
        reply = self._wait(ended, f"ready or nosub for {name!r}")
        if reply["msg"] == "nosub":
            raise SubscriptionError(name, reply.get("error"))
        return sub_id

    def unsubscribe(self, sub_id: str) -> None:
        """Unsubscribe and wait for the ``nosub``; the ``removed`` before it stay unread."""
        self.send({"msg": "unsub", "id": sub_id})
        self._wait(
            lambda m: m.get("msg") == "nosub" and m.get("id") == sub_id, f"nosub for {sub_id}"
        )

    def call(self, method: str, *params: Any) -> Any:
        """Call a method; return its result, or raise the :class:`MeteorError` it sent."""
        call_id = self._send_method(method, params)
        result = self._wait(
            lambda m: m.get("msg") == "result" and m.get("id") == call_id, f"result of {method}"
        )
        self._wait(
            lambda m: m.get("msg") == "updated" and call_id in m.get("methods", ()),
            f"updated for {method}",
        )
        if "error" in result:
            error = result["error"]
            raise MeteorError(error.get("error"), error.get("reason"), error.get("details"))
        return result.get("result")

    def _send_method(self, method: str, params: Sequence[Any]) -> str:
        call_id = str(next(self.ids))
        self.send({"msg": "method", "id": call_id, "method": method, "params": list(params)})
        return call_id

    # Requests that return the wire's messages ------------------------------------------

    def sub(self, name: str, *params: Any) -> tuple[str, list[Message]]:
        """Send ``sub``; return its id and the unread messages up to and including its
        ``ready`` or ``nosub``, in order (consumed): what a test of the wire compares."""
        sub_id, ended = self._send_sub(name, params)
        return sub_id, self.recv_until(ended)

    def method(self, method: str, *params: Any) -> tuple[Message, list[Message]]:
        """Send ``method``; return its ``result`` message (an error one too, not raised)
        and the unread messages up to both it and its ``updated``, in order (consumed)."""
        call_id = self._send_method(method, params)
        seen = set()

        def done(m: Message) -> bool:
            if m.get("msg") == "result" and m.get("id") == call_id:
                seen.add("result")
            if m.get("msg") == "updated" and call_id in m.get("methods", ()):
                seen.add("updated")
            return seen == {"result", "updated"}

        messages = self.recv_until(done)
        result = next(m for m in messages if m.get("msg") == "result" and m["id"] == call_id)
        return result, messages

    # Assertions ----------------------------------------------------------------------

    def assert_added(self, collection: str, id: str, **fields: Any) -> Message:
        """An ``added`` for ``id`` arrived, with at least these field values."""
        return self._wait(
            lambda m: (
                m.get("msg") == "added"
                and m.get("collection") == collection
                and m.get("id") == id
                and all(m.get("fields", {}).get(k) == v for k, v in fields.items())
            ),
            f"added {collection} {id} {fields or ''}",
        )

    def assert_changed(
        self,
        collection: str,
        id: str,
        fields: dict[str, Any] | None = None,
        cleared: Iterable[str] | None = None,
        **values: Any,
    ) -> Message:
        """A ``changed`` for ``id`` arrived, with exactly these ``fields`` and ``cleared``;
        or, given as keywords like :meth:`assert_added`'s, with at least these field
        values (a field named ``fields`` or ``cleared`` goes in the dict)."""
        if fields is not None and values:
            raise TypeError("assert_changed takes the fields as fields= or keywords, not both")
        return self._wait(
            lambda m: (
                m.get("msg") == "changed"
                and m.get("collection") == collection
                and m.get("id") == id
                and (fields is None or m.get("fields", {}) == fields)
                and all(k in m.get("fields", {}) and m["fields"][k] == v for k, v in values.items())
                and (cleared is None or sorted(m.get("cleared", ())) == sorted(cleared))
            ),
            f"changed {collection} {id} fields={fields or values} cleared={cleared}",
        )

    def assert_removed(self, collection: str, id: str) -> Message:
        """A ``removed`` for ``id`` arrived."""
        return self._wait(
            lambda m: (
                m.get("msg") == "removed"
                and m.get("collection") == collection
                and m.get("id") == id
            ),
            f"removed {collection} {id}",
        )

    def assert_ready(self, sub_id: str) -> Message:
        """A ``ready`` naming ``sub_id`` arrived."""
        return self._wait(
            lambda m: m.get("msg") == "ready" and sub_id in m.get("subs", ()), f"ready {sub_id}"
        )

    def assert_nosub(self, sub_id: str, error: Any = None) -> Message:
        """A ``nosub`` for ``sub_id`` arrived; with ``error``, its Meteor error code."""
        return self._wait(
            lambda m: (
                m.get("msg") == "nosub"
                and m.get("id") == sub_id
                and (error is None or m.get("error", {}).get("error") == error)
            ),
            f"nosub {sub_id}" + (f" with error {error}" if error is not None else ""),
        )

    def assert_no_messages(self) -> None:
        """Nothing arrived that no assertion consumed."""
        self._pump(0)
        if self._unread:
            raise AssertionError(f"Expected no message; {self._arrived()}")

    def assert_messages(self, expected: Sequence[Message], ordered: bool = True) -> None:
        """The unread messages are exactly ``expected`` (dicts), in order unless not
        ``ordered``; they are consumed."""
        self._pump(0)
        got = list(self._unread)
        if ordered:
            ok = got == list(expected)
        else:
            ok = sorted(map(_canonical, got)) == sorted(map(_canonical, expected))
        if not ok:
            raise AssertionError(
                "Messages differ.\nexpected:\n"
                + pprint.pformat(list(expected), width=100)
                + "\ngot:\n"
                + pprint.pformat(got, width=100)
            )
        self._unread.clear()


def _canonical(message: Message) -> str:
    return json.dumps(to_ejson(message), sort_keys=True)


def encode_request(message: Message) -> str:
    """Client messages carry EJSON ``params``; everything else is plain JSON."""
    if "params" in message:
        message = {**message, "params": to_ejson(message["params"])}
    return dumps(message)


class DDPClient(BaseClient):
    """An in-process client: the server's own Session, no socket, no thread.

    ``bus`` is the :class:`~ddp.bus.memory.InMemoryBus` that carries changes made in the
    test (``DDPTestCase`` and the ``ddp_client`` fixture pass theirs). Publications and
    methods run on the test's own database connection, inside its transaction.
    ``client_address`` is the address the server sees (``this.client_address``).
    """

    waits = False

    def __init__(
        self,
        bus: "InMemoryBus | None" = None,
        registry: "Registry | None" = None,
        connect: bool = True,
        client_address: str | None = None,
    ) -> None:
        from ddp.api import API
        from ddp.session import Session

        super().__init__()
        self.bus = bus
        self.closed = False
        self.session = Session(
            self._received,
            self._close,
            lambda func, *args: func(*args),
            bus=bus,
            registry=registry or API,
            environ={"REMOTE_ADDR": client_address} if client_address else None,
        )
        if connect:
            self.connect()

    def _close(self, code: int | None = None, reason: str | None = None) -> None:
        self.closed = True

    def send(self, message: Message) -> None:
        if self.closed:
            raise AssertionError("The server closed this connection")
        for request in self.session.receive(encode_request(message)):
            self.session.handle(request)

    def _pump(self, timeout: float) -> bool:
        before = len(self.messages)
        if self.bus is not None:
            self.bus.flush()
        from ddp.session import WAKE

        # What a connection's worker does when woken: apply changes, re-run what a writer
        # could not match.
        self.session.handle(WAKE)
        return len(self.messages) > before

    def close(self) -> None:
        """End the session as a client that disconnects."""
        self.session.teardown()
        self.closed = True


class WebSocketDDPClient(BaseClient):
    """The same API over a real websocket to a running ``ddpserver`` (websocket-client).

    With ``sockjs=True``, ``url`` is a SockJS websocket URL
    (``ws://host/sockjs/000/<session>/websocket``) and messages travel in SockJS frames, as
    Meteor's browser client sends them. Other keywords (``header=[...]``, ...) go to
    ``websocket.create_connection``. :meth:`send_raw` and :meth:`close_code` are for tests
    of the wire itself: frames no client would send, and how the server closes.
    """

    def __init__(
        self,
        url: str,
        connect: bool = True,
        timeout: float = 10.0,
        sockjs: bool = False,
        **options: Any,
    ) -> None:
        import websocket

        super().__init__()
        self.timeout = timeout
        self.sockjs = sockjs
        self._closed_error = websocket.WebSocketConnectionClosedException
        self._timeout_error = websocket.WebSocketTimeoutException
        self._close_opcode = websocket.ABNF.OPCODE_CLOSE
        self._text_opcode = websocket.ABNF.OPCODE_TEXT
        self._create = websocket.create_connection
        self.url, self._options = url, options
        self.ws = self._create(url, timeout=timeout, **options)
        if connect:
            self.connect()

    def reopen(self, url: str | None = None) -> None:
        """Open a new websocket (to ``url``, by default the first one) in place of this
        one, without DDP's ``connect``: what the old one left unread goes with it."""
        self.ws = self._create(url or self.url, timeout=self.timeout, **self._options)
        self._unread.clear()

    def __enter__(self) -> "WebSocketDDPClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: Message) -> None:
        text = encode_request(message)
        self.send_raw(dumps([text]) if self.sockjs else text)

    def send_raw(self, text: str) -> None:
        """Send ``text`` as one websocket text frame, as it is."""
        self.ws.send(text)

    def close_code(self, timeout: float | None = None) -> int:
        """Read frames until the server's websocket close frame; return its status code.
        Messages that come before it are received like any other."""
        self.ws.settimeout(timeout or self.timeout)
        while True:
            opcode, data = self.ws.recv_data(control_frame=True)
            if opcode == self._close_opcode:
                return int.from_bytes(data[:2], "big")
            if opcode == self._text_opcode:
                self._frame(data.decode())

    def _pump(self, timeout: float) -> bool:
        self.ws.settimeout(max(timeout, 0.001))
        try:
            frame = self.ws.recv()
        except self._timeout_error:
            return False
        except self._closed_error:
            raise AssertionError(f"The server closed the connection; {self._arrived()}") from None
        finally:
            # A test that reads ``ws`` itself next expects the client's own timeout.
            self.ws.settimeout(self.timeout)
        # DDP is text; a binary frame, which no server here sends, is read as UTF-8.
        text = frame.decode() if isinstance(frame, bytes) else frame
        if not text or (self.sockjs and text.startswith("c")):
            raise AssertionError(f"The server closed the connection; {self._arrived()}")
        self._frame(text)
        return True

    def _frame(self, text: str) -> None:
        """Receive the DDP messages of one text frame: itself, or a SockJS ``a`` frame's
        (its ``o`` and ``h`` frames carry none)."""
        if not self.sockjs:
            self._received(text)
        elif text.startswith("a"):
            for message in loads(text[1:]):
                self._received(message)

    def close(self) -> None:
        """Close the websocket."""
        self.ws.close()
