"""One SockJS session: the messages waiting for its client, who receives them, when it ends.

The rules are sockjs-node's (``src/transport.coffee``; PROTOCOL.md T7):

* The first receiving request opens the session and gets ``o``.
* One receiving request at a time: another one gets ``c[2010,"Another connection still
  open"]`` and the first keeps the session.
* What the app sends waits here until a receiving request takes it, all of it in one ``a``
  frame; sending never waits for the client.
* Closed by the app (or the server), the session answers every receiving request with its
  close frame until it expires.
* With no receiving request it expires after ``disconnect_delay``; at once when that request
  was broken off (its client went away). One :class:`Sweeper` per server expires them, a
  thread that runs only while some session waits to, not a timer per session.
* What waits is bounded (``max_queued_bytes``, ``max_queued_messages``): a client that
  stopped reading or polling is cut off when it overflows, logged and counted (by the
  host's ``slow_client`` callback), so it cannot grow the server's memory.

The app hears of all this on a worker thread of the session's own, in order: ``on_open``,
each ``on_message``, ``on_close``. So ``on_message`` never runs twice at once for one
session, and a slow app holds up neither the requests nor other sessions. The thread runs
only while there is something to tell: an idle thread costs ~14 KB, and a server holds
thousands of idle sessions.

A receiver is whatever a transport attaches while it holds a request open; the session calls
its ``wake()`` whenever there is something new to take, and its ``cut()`` to drop the client
at once (after an overflow), both while holding the lock and so without blocking.

All the sessions of a server share the server's lock: sections are short and never wait,
and one lock keeps the registry of sessions and their states consistent.
"""

import collections
import enum
import logging
import threading
import time

from ddp.sockjs.framing import OPEN, close_frame, messages_frame
from ddp.sockjs.redact import hint

logger = logging.getLogger("ddp.sockjs")

ANOTHER_CONNECTION = close_frame(2010, "Another connection still open")


def spawn_thread(function, *args):
    """Run ``function(*args)`` in a new thread. Under eventlet ``ddpserver`` passes its
    own spawn: a green thread that starts without the caller giving way, so that messages
    told together are run, and their answers sent, together."""
    threading.Thread(target=function, args=args, daemon=True).start()


class Sweeper:
    """Expires the sessions of a server nobody polled for ``disconnect_delay``, in one
    thread that runs while any waits to expire (a ``threading.Timer`` per detached session
    would be a thread, 14 KB under eventlet, per client between two polls).

    Every session waits the same delay, so they come due in the order they were queued:
    the thread sleeps until the first is due. A session polled again meanwhile is skipped
    (its deadline changed). ``lock`` is the server's, which session methods hold.
    """

    def __init__(self, lock, spawn):
        self._lock = lock
        self._spawn = spawn
        self._due = collections.deque()  # (deadline, session), in deadline order
        self._running = False

    def add(self, session, deadline):
        """Queue ``session`` to expire at ``deadline`` (``time.monotonic``); lock held."""
        self._due.append((deadline, session))
        if not self._running:
            self._running = True
            self._spawn(self._run)

    def _run(self):
        while True:
            with self._lock:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    deadline, session = self._due.popleft()
                    if session.deadline == deadline:
                        session._expire()
                if not self._due:
                    self._running = False
                    return
                wait = self._due[0][0] - now
            time.sleep(wait)


class State(enum.Enum):
    #: Messages flow both ways.
    OPEN = "open"
    #: Closed by the app or the server: receiving requests get the close frame.
    CLOSING = "closing"
    #: Expired: forgotten by the server, ``on_close`` called or about to be.
    CLOSED = "closed"


class SockJSSession:
    """A session as its app sees it: ``send``, ``close``, ``id`` and ``environ``.

    ``environ`` is the WSGI environ of the request that opened the session, and
    ``address`` its client's address, the only one whose requests the session answers.
    The other public methods are for the transports.
    """

    def __init__(
        self,
        session_id,
        environ,
        app,
        lock,
        options,
        forget,
        spawn=None,
        address="",
        slow_client=None,
        sweeper=None,
    ):
        self.id = session_id
        self.environ = environ
        self.address = address
        self._app = app
        self._lock = lock
        self._options = options
        self._forget = forget
        self.state = State.OPEN
        self._opened = False
        self._outgoing = []
        self._queued_bytes = 0
        self._close_frame = None
        self._receiver = None
        #: When it expires unless a receiving request attaches (None while one is).
        self.deadline = None
        self._expire_when_detached = False
        self._events = collections.deque()
        self._telling = False  # whether a worker thread runs the app's events
        self._spawn = spawn or spawn_thread
        self._slow_client = slow_client or (lambda: None)
        self._sweeper = sweeper or Sweeper(lock, self._spawn)

    def __repr__(self):
        return f"<SockJSSession {hint(self.id)} {self.state.value}>"

    # The app's side.

    def send(self, text):
        """Queue one message for the client; dropped once the session is closing."""
        with self._lock:
            if self.state is not State.OPEN:
                return
            self._outgoing.append(text)
            self._queued_bytes += len(text)
            if self._overflowing():
                self._cut_off()
            elif self._receiver is not None:
                self._receiver.wake()

    def backlog(self):
        """``(bytes, messages)`` waiting for the client: an app streaming much data waits
        for it to shrink, rather than have the client cut off for a full buffer."""
        with self._lock:
            return self._queued_bytes, len(self._outgoing)

    def close(self, code=3000, reason="Go away!"):
        """Close the session: the client gets ``c[code,"reason"]``, after what is queued."""
        with self._lock:
            self._close(code, reason)

    # The transports' side.

    def attach(self, receiver):
        """Start a receiving request: return ``(frames, attached)``.

        ``frames`` are to be written at once. When ``attached`` is false the request has
        nothing more to wait for (the session is closing, or another request holds it);
        otherwise it must :meth:`detach` when it ends. ``None`` means the session expired
        meanwhile and a new one is needed.
        """
        with self._lock:
            if self.state is State.CLOSED:
                return None
            if self._receiver is not None:
                return [ANOTHER_CONNECTION], False
            self._cancel_timer()
            if self.state is State.CLOSING:
                frames = self._take() + [self._close_frame]
                self._start_timer()
                return frames, False
            self._receiver = receiver
            if not self._opened:
                self._opened = True
                self._tell("on_open")
                return [OPEN], True
            return self._take(), True

    def take(self):
        """Everything waiting for the attached request: ``(frames, closing)``.

        When ``closing`` is true the request should end once ``frames`` are written; the
        last one is the close frame, unless the client was cut off.
        """
        with self._lock:
            frames = self._take()
            if self.state is State.CLOSING:
                frames.append(self._close_frame)
            return frames, self.state is not State.OPEN

    def detach(self, receiver, aborted):
        """End a receiving request; ``aborted`` when its client went away."""
        with self._lock:
            if self._receiver is not receiver:
                return
            self._receiver = None
            if aborted or self._expire_when_detached:
                self._expire()
            else:
                self._start_timer()

    def receive(self, messages):
        """Hand the client's messages to the app, in order, unless the session is closing."""
        with self._lock:
            if self.state is State.OPEN:
                for message in messages:
                    self._tell("on_message", message)

    def shut_down(self, code, reason):
        """Close and expire as soon as no request holds the session (server shutdown): a
        session with a receiving request open goes once that request has carried the close
        frame; the others at once, as nobody would poll them again."""
        with self._lock:
            self._close(code, reason)
            self._expire_when_detached = True
            if self._receiver is None and self.state is not State.CLOSED:
                self._expire()

    # Internals, called with the lock held.

    def _take(self):
        if not self._outgoing:
            return []
        frame = messages_frame(self._outgoing)
        self._outgoing = []
        self._queued_bytes = 0
        return [frame]

    def _overflowing(self):
        max_bytes = self._options.max_queued_bytes
        max_messages = self._options.max_queued_messages
        return (max_bytes is not None and self._queued_bytes > max_bytes) or (
            max_messages is not None and len(self._outgoing) > max_messages
        )

    def _cut_off(self):
        self._slow_client()
        logger.warning(
            "Disconnecting slow SockJS client %s: %d messages, %d bytes waiting",
            hint(self.id),
            len(self._outgoing),
            self._queued_bytes,
        )
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            # Its socket is full, so no close frame would get through.
            receiver.cut()
        self._expire()

    def _close(self, code, reason):
        if self.state is not State.OPEN:
            return
        self.state = State.CLOSING
        self._close_frame = close_frame(code, reason)
        if self._receiver is not None:
            self._receiver.wake()

    def _start_timer(self):
        self.deadline = time.monotonic() + self._options.disconnect_delay
        self._sweeper.add(self, self.deadline)

    def _cancel_timer(self):
        self.deadline = None

    def _expire(self):
        self._cancel_timer()
        self.state = State.CLOSED
        self._outgoing = []
        self._queued_bytes = 0
        self._forget(self)
        self._tell("on_close")

    def _tell(self, *event):
        """Queue an event for the app, and start the worker if none runs. Nothing is told
        of a session never opened."""
        if not self._opened:
            return
        self._events.append(event)
        if not self._telling:
            self._telling = True
            self._spawn(self._run_app)

    # The worker thread.

    def _run_app(self):
        while True:
            with self._lock:
                if not self._events:
                    self._telling = False
                    return
                name, *args = self._events.popleft()
            try:
                getattr(self._app, name)(self, *args)
            except Exception:
                logger.exception("SockJS app failed in %s for session %s", name, hint(self.id))
