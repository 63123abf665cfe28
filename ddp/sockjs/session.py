"""One xhr SockJS session: the messages waiting for its client, who receives them, when it ends.

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
* What waits is bounded by the host: the session is a transport
  (:mod:`ddp.runtime.transport`) whose :meth:`~SockJSSession.backlog` counts against the
  host's outbox, which cuts off (:meth:`~SockJSSession.abort`) a client that stopped
  polling when it overflows.

The first receiving request hands the session to the app, ``app.connect(session)``, which
returns what receives the client's messages (``receive(text)``), called in order as each
``xhr_send`` brings them; ``app.disconnect(that)`` follows once, when the session closes
or expires, from a thread of its own (the app's teardown may wait, and the session's
state changes must not).

A receiver is whatever a transport attaches while it holds a request open; the session calls
its ``wake()`` whenever there is something new to take, and its ``cut()`` to drop the client
at once (after an overflow), neither of which may wait.

No locks: the session runs on its host's driver (:mod:`ddp.runtime.driver`: one OS thread,
no preemption between yields), and no method here yields between reading a state and
changing it (a wake, a cut, a spawn never yield). The driver also gives the sweeper its
clock and sleep, and the app's teardown its thread.
"""

import collections
import enum

from ddp.sockjs.framing import OPEN, close_frame, messages_frame
from ddp.sockjs.redact import hint

ANOTHER_CONNECTION = close_frame(2010, "Another connection still open")


class Sweeper:
    """Expires the sessions of a server nobody polled for ``disconnect_delay``, in one
    thread that runs while any waits to expire (a ``threading.Timer`` per detached session
    would be a thread, 14 KB under eventlet, per client between two polls).

    Every session waits the same delay, so they come due in the order they were queued:
    the thread sleeps until the first is due. A session polled again meanwhile is skipped
    (its deadline changed). ``driver`` gives the thread, the clock and the sleep.
    """

    def __init__(self, driver):
        self._driver = driver
        self._due = collections.deque()  # (deadline, session), in deadline order
        self._running = False

    def add(self, session, deadline):
        """Queue ``session`` to expire at ``deadline`` (on the driver's clock)."""
        self._due.append((deadline, session))
        if not self._running:
            self._running = True
            self._driver.spawn(self._run)

    def _run(self):
        while True:
            now = self._driver.clock()
            while self._due and self._due[0][0] <= now:
                deadline, session = self._due.popleft()
                if session.deadline == deadline:
                    session._expire()
            if not self._due:
                self._running = False
                return
            self._driver.sleep(self._due[0][0] - now)


class State(enum.Enum):
    #: Messages flow both ways.
    OPEN = "open"
    #: Closed by the app or the server: receiving requests get the close frame, and the
    #: app is done with it.
    CLOSING = "closing"
    #: Expired: forgotten by the server.
    CLOSED = "closed"


class SockJSSession:
    """A session as its app's runtime drives it: a transport (``send_now``, ``close``,
    ``backlog``...), with ``id`` and ``environ``.

    ``environ`` is the WSGI environ of the request that opened the session, and
    ``address`` its client's address, the only one whose requests the session answers.
    The other public methods are for the xhr requests. ``driver`` is the host's
    (:class:`ddp.runtime.driver.Driver`); ``sweeper`` the server's :class:`Sweeper`.
    """

    def __init__(self, session_id, environ, app, options, forget, driver, sweeper, address=""):
        self.id = session_id
        self.environ = environ
        self.address = address
        self._app = app
        self._driver = driver
        self._options = options
        self._forget = forget
        self.state = State.OPEN
        self._opened = False
        self._outgoing = []
        self._queued_bytes = 0
        self._close_frame = None
        self._receiver = None
        #: What ``app.connect`` returned, until the app is told the session ended.
        self._connection = None
        #: When it expires unless a receiving request attaches (None while one is).
        self.deadline = None
        self._expire_when_detached = False
        self._sweeper = sweeper

    def __repr__(self):
        return f"<SockJSSession {hint(self.id)} {self.state.value}>"

    # The runtime's side: a transport.

    def send_now(self, texts):
        """Queue ``texts`` for the client's next receiving request: nothing is left over."""
        self.send_texts(texts)
        return b""

    def send_texts(self, texts):
        """Queue ``texts``, all in the next ``a`` frame; dropped once the session closes."""
        if self.state is not State.OPEN:
            return
        self._outgoing.extend(texts)
        self._queued_bytes += sum(map(len, texts))
        if self._receiver is not None:
            self._receiver.wake()

    def send_bytes(self, data):
        """Never called: :meth:`send_now` leaves nothing to write."""
        raise NotImplementedError

    def backlog(self):
        """``(bytes, messages)`` waiting for the client's next receiving request."""
        return self._queued_bytes, len(self._outgoing)

    def close(self, code, reason):
        """Close the session: the client gets ``c[code,"reason"]``, after what is queued."""
        if self.state is not State.OPEN:
            return
        self.state = State.CLOSING
        self._close_frame = close_frame(int(code), reason or "Normal closure")
        if self._receiver is not None:
            self._receiver.wake()
        self._disconnect()

    def abort(self):
        """Cut the client off (it stopped polling): its request, if one is open, ends
        without a close frame, and the session expires at once."""
        if self.state is State.CLOSED:
            return
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.cut()  # its socket is full, so no close frame would get through
        self._expire()

    def ping(self):
        """None: SockJS finds dead xhr clients itself (a session nobody polls expires)."""
        return False

    def answered(self):
        return False

    def keepalive(self, now):
        return None  # the receiving requests' ``h`` frames are the requests' own

    # The xhr requests' side.

    def attach(self, receiver):
        """Start a receiving request: return ``(frames, attached)``.

        ``frames`` are to be written at once. When ``attached`` is false the request has
        nothing more to wait for (the session is closing, or another request holds it);
        otherwise it must :meth:`detach` when it ends. ``None`` means the session expired
        meanwhile and a new one is needed.
        """
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
        if self._opened:
            return self._take(), True
        self._opened = True
        # The app may yield in connect: what it sends meanwhile is queued, and wakes the
        # request, which is attached already.
        self._connection = self._app.connect(self)
        return [OPEN], True

    def take(self):
        """Everything waiting for the attached request: ``(frames, closing)``.

        When ``closing`` is true the request should end once ``frames`` are written; the
        last one is the close frame, unless the client was cut off.
        """
        frames = self._take()
        if self.state is State.CLOSING:
            frames.append(self._close_frame)
        return frames, self.state is not State.OPEN

    def detach(self, receiver, aborted):
        """End a receiving request; ``aborted`` when its client went away."""
        if self._receiver is not receiver:
            return
        self._receiver = None
        if aborted or self._expire_when_detached:
            self._expire()
        else:
            self._start_timer()

    def receive(self, messages):
        """Hand the client's messages to the app, in order, unless the session is closing."""
        connection = self._connection if self.state is State.OPEN else None
        if connection is not None:
            for message in messages:
                connection.receive(message)

    def shut_down(self, code, reason):
        """Close and expire as soon as no request holds the session (server shutdown): a
        session with a receiving request open goes once that request has carried the close
        frame; the others at once, as nobody would poll them again."""
        self.close(code, reason)
        self._expire_when_detached = True
        if self._receiver is None and self.state is not State.CLOSED:
            self._expire()

    # Internals.

    def _take(self):
        if not self._outgoing:
            return []
        frame = messages_frame(self._outgoing)
        self._outgoing = []
        self._queued_bytes = 0
        return [frame]

    def _start_timer(self):
        self.deadline = self._driver.clock() + self._options.disconnect_delay
        self._sweeper.add(self, self.deadline)

    def _cancel_timer(self):
        self.deadline = None

    def _expire(self):
        self._cancel_timer()
        self.state = State.CLOSED
        self._outgoing = []
        self._queued_bytes = 0
        self._forget(self)
        self._disconnect()

    def _disconnect(self):
        """Tell the app, once, that the session ended: in a thread of its own, as its
        teardown may wait for a request in flight."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._driver.spawn(self._app.disconnect, connection)
