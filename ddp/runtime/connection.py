"""One DDP client, whatever carries its messages: the connection runtime.

A :class:`~ddp.session.Session` driven over any :class:`~ddp.runtime.transport.Transport`,
with two queues that are drained by green threads started only while there is something
in them: an idle connection holds no thread of its own and no queue (an idle green thread
costs about 14 KB, an empty deque 760 bytes, and a server holds thousands of idle
clients). All of a connection's threads are green threads of the driver it is given (the
server's one OS thread), so a section that does not yield runs alone and the queues need
no lock (:mod:`ddp.runtime.driver`).

* the worker takes requests from the inbox one at a time and runs them in the session
  (Meteor's one-message-at-a-time rule, R7), and applies bus changes between them;
* the writer drains the outbox into the transport, so nothing that produces messages
  (the worker, the listener) blocks on a slow client's socket. The outbox is bounded
  (``DDP["OUTBOX_MAX_BYTES"]`` and ``["OUTBOX_MAX_MESSAGES"]``): a client that stops
  reading is disconnected when it overflows, logged and counted
  (``ddp_slow_client_disconnects_total``), and every other client goes on. Only the
  worker waits for room, between the pages of a publication's initial send
  (:meth:`ConnectionRuntime.wait_for_room`), holding no database worker meanwhile;
* :meth:`ConnectionRuntime.beat`, called by one thread for all connections
  (:mod:`ddp.runtime.heartbeat`), pings a silent client after
  ``DDP["HEARTBEAT_INTERVAL"]`` and closes it after ``DDP["HEARTBEAT_TIMEOUT"]`` more
  (H4); a socket that never completes the DDP handshake is closed after the same time
  without a ping. ``pre1`` has no DDP heartbeat: its connections get the transport's
  own ping instead (RFC 6455 on a raw WebSocket), so that a dead peer is closed too.

The transport's host calls :meth:`ConnectionRuntime.receive` for each text message (pings
and malformed input are answered at once, H2) and :meth:`ConnectionRuntime.finish` when it
is gone. A connection's life is one :class:`Life`, which only moves forward.

Given a :class:`~ddp.server.resumption.Holder`, a connection whose transport is gone hands
its session over to it rather than tear it down, so that a client coming back within the
grace period may resume it on a new connection (:meth:`ConnectionRuntime._resume`).
"""

import collections
import dataclasses
import logging

from wsproto.frame_protocol import CloseReason

from ddp import metrics
from ddp.conf import ddp_settings
from ddp.protocol import Connected, ConnectionState, Error, Ping
from ddp.runtime.outgoing import ENDED, Life, Outgoing
from ddp.session import UNCOUNTED, WAKE, Session

logger = logging.getLogger("ddp.server")

#: Seconds between two looks at a transport's own backlog while a send waits for room.
BACKLOG_LOOK = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class Last:
    """In the inbox: the request before it was the last this connection runs (shutdown);
    then it closes."""

    code: int
    reason: str | None


class ConnectionRuntime(Outgoing):
    """One client's session over ``transport``; ``run_db`` runs database work in the
    pool, ``bus`` carries changes, ``driver`` (a :class:`ddp.runtime.driver.Driver`) runs
    its green threads and tells the time, ``holder`` keeps the session when the transport
    goes."""

    def __init__(self, transport, run_db, bus, driver, environ=None, holder=None):
        super().__init__(
            transport, driver, ddp_settings.OUTBOX_MAX_BYTES, ddp_settings.OUTBOX_MAX_MESSAGES
        )
        self.holder = holder
        self._held = None  # what the holder keeps of the session once the transport is gone
        # The queues exist while a thread drains them (an empty deque is 760 bytes).
        self.inbox = None
        self.session = Session(
            self._enqueue,
            self.close,
            run_db,
            wake=lambda: self._submit(WAKE),
            bus=bus,
            room=self.wait_for_room,
            changed=self._change_arrived,
            environ=environ,
            resume=self._resume,
            clock=self.driver.clock,
        )
        #: When the client was last heard from, and since when a ping waits for an answer.
        self._heard = self.driver.clock()
        self._probing = None
        self._torn_down = None  # set by finish() to wait for the worker's teardown
        if holder is not None:
            holder.live[self.session.connection.session_id] = self

    def name(self):
        return self.session.connection.session_id

    def open(self):
        if ddp_settings.SEND_SERVER_ID:
            self._enqueue('{"server_id":"0"}')

    def receive(self, text):
        """One text message from the client."""
        if self.life is Life.HANDED_OVER:
            return  # the client is on its new connection, with this session
        self._heard = self.driver.clock()
        metrics.inc("ddp_messages_received_total")
        for request in self.session.receive(text):
            self._submit(request)

    def receive_binary(self):
        """DDP is text: a binary message is a bad request, and the connection goes on."""
        if self.life is Life.HANDED_OVER:
            return
        self._heard = self.driver.clock()
        if self.session.admit():
            self.session.send(Error("Bad request"))

    def _submit(self, request):
        """Queue a request (or ``WAKE``) for the worker, starting it if none runs."""
        if self.life >= Life.ENDED:
            return
        if self.inbox is not None:
            self.inbox.append(request)
            return
        self.inbox = collections.deque((request,))
        self.driver.spawn(self._work)

    def _change_arrived(self):
        """A bus change is queued in the session (by the listener, for every session it
        concerns): an idle connection applies it at once, in the listener's thread, rather
        than start a worker. Applying never waits: no query, and what it sends is queued."""
        if self.inbox is not None:
            self._submit(WAKE)  # the worker applies it after the request it runs
            return
        if self.life >= ENDED:
            return
        try:
            self.session.apply_changes()
        except Exception:
            logger.exception("Applying a change failed on %s", self.session.connection.session_id)
            self.close(CloseReason.INTERNAL_ERROR, "Internal error")

    def wait_for_room(self, deadline):
        """Wait until the outbox is at most half full, so that a large initial send streams
        at the client's pace; return whether the send may go on.

        Called by the connection's worker between database jobs, never by a database
        worker. A client that leaves the outbox over half full for the heartbeat timeout
        (it stopped reading), or past ``deadline`` (its publish's), or while the server
        shuts down (its close could not get through), is cut off as a slow consumer. The
        send stops too when the connection is ending anyway: the rest would be wasted.
        """
        clock = self.driver.clock
        stalled = clock() + ddp_settings.HEARTBEAT_TIMEOUT
        try:
            while self.life < Life.CLOSING:
                waiting_bytes, waiting_messages = self.transport.backlog()
                leaving = self.life is Life.LEAVING
                if (
                    self.queued_bytes + waiting_bytes <= self.max_bytes // 2
                    and self.queued_messages + waiting_messages <= self.max_messages // 2
                ):
                    return not leaving
                give_up = min(stalled, deadline)
                if leaving or clock() >= give_up:
                    self._overflow(waiting_bytes, waiting_messages)
                    break
                if self._room is None:
                    self._room = self.driver.event()
                self._room.clear()  # no yield since the look above: no wake-up is lost
                # The writers set it once the outbox drains. A transport's own backlog (an
                # xhr session's) shrinks when its client polls, which sets nothing: then
                # look again every BACKLOG_LOOK seconds.
                waited = give_up - clock()
                if waiting_bytes or waiting_messages:
                    waited = min(waited, BACKLOG_LOOK)
                self._room.wait(waited)
        finally:
            self._room = None
        return False

    def shut_down(self, code, reason):
        """Close once the request being run (a method in flight, say) has answered, or a
        publication's initial send has stopped; requests that arrive after this are not
        run. From any thread."""
        self._advance(Life.LEAVING)
        self._submit(Last(code, reason))

    def finish(self):
        """The transport is gone: stop running requests, forget the session silently (S9)
        once the request in flight, if any, has ended, or hand it to the holder for its
        client to resume. What the request sends meanwhile goes to the holder's queue."""
        if self.life is Life.HANDED_OVER:
            return
        cut_off = self.life is Life.CUT_OFF
        self._advance(Life.GONE)
        self._forget()
        if self.holder is not None and not cut_off:
            # A client cut off as a slow consumer lost more than a hold could keep.
            self._held = self.holder.hold(self.session, self._take_unsent())
        self.close()
        if self.inbox is None:
            self._release()
            return
        self.inbox.clear()
        self._torn_down = self.driver.event()
        self._torn_down.wait()

    def _forget(self):
        """Leave the holder's map of live connections."""
        if self.holder is None:
            return
        session_id = self.session.connection.session_id
        if self.holder.live.get(session_id) is self:
            del self.holder.live[session_id]

    def hand_over(self, received_count, version):
        """The client of this connection came back on another before this one was seen
        to go: give the session up to the holder, as :meth:`finish` would, and close.
        None, and nothing changes, while a request runs, the client was cut off, or the
        new connection's ``received_count`` or ``version`` is not this one's: whoever
        named the session then is not its client, or lost messages on the way."""
        if self.inbox is not None or self.life >= Life.GONE:
            return None
        if version != self.session.connection.version or received_count != self._written():
            return None
        held = self.holder.hold(self.session, self._take_unsent())
        if held is None:
            return None
        self._forget()
        self.life = Life.HANDED_OVER
        held.ready = True
        held.deadline = self.driver.clock() + ddp_settings.DISCONNECT_GRACE_PERIOD
        self.transport.abort()
        return held

    def _written(self):
        """How many counted messages (pings and pongs left out) may have reached the
        client: those sent less those still waiting, unwritten, in the outbox."""
        unsent = sum(
            1 for item in self.outbox or () if type(item) is str and not item.startswith(UNCOUNTED)
        )
        return self.session.sent - unsent

    def _take_unsent(self):
        """The messages queued for the client that no write has begun: the client cannot
        have them, so a resumed session sends them again."""
        outbox = self.outbox
        if not outbox:
            return []
        unsent = [item for item in outbox if type(item) is str]
        kept = [item for item in outbox if type(item) is not str]
        outbox.clear()
        outbox.extend(kept)
        self.queued_messages -= len(unsent)
        self.queued_bytes -= sum(map(len, unsent))
        return unsent

    def _release(self):
        if self._held is None:
            self.session.teardown()
        else:
            self.holder.release(self._held)

    def _resume(self, request):
        """A client asks for a session back (``Session.receive`` calls this for its
        handshake's :class:`~ddp.protocol.Resume`): if the holder has it for this client,
        it becomes this connection's session, ``connected`` with its id goes out, then
        what it sent while the client was away. Return whether it did."""
        if self.holder is None:
            return False
        held = self.holder.take(request, self.session.connection.version)
        if held is None:
            return False
        session = held.session
        session.attach(
            self._enqueue,
            self.close,
            lambda: self._submit(WAKE),
            self.wait_for_room,
            self._change_arrived,
        )
        self._forget()
        self.session = session
        self.holder.live[session.connection.session_id] = self
        session.send(Connected(session.connection.session_id))
        for text in held.queue:
            self._enqueue(text)  # counted when the session sent them
        if session.pending:
            self._submit(WAKE)  # subscriptions a writer could not match, to re-run
        metrics.log_event("resume", session.connection.session_id, queued=len(held.queue))
        return True

    def _work(self):
        inbox = self.inbox
        while inbox and self.life < Life.ENDED:
            request = inbox.popleft()
            if type(request) is Last:
                self._advance(Life.ENDED)
                inbox.clear()
                self.close(request.code, request.reason)
                continue
            try:
                self.session.handle(request)
            except Exception:
                # What the session could not answer itself: no traceback on the wire, no
                # worker gone with requests waiting; the client reconnects.
                logger.exception("A request failed on %s", self.session.connection.session_id)
                self._advance(Life.ENDED)
                inbox.clear()
                self.close(CloseReason.INTERNAL_ERROR, "Internal error")
        self.inbox = None
        if self._torn_down is not None:
            try:
                self._release()
            finally:
                self._torn_down.set()

    def beat(self, now):
        """Ping a client silent for an interval, close one silent for a timeout more.
        Called every fraction of the shorter of the two by :mod:`ddp.runtime.heartbeat`."""
        self.keepalive(now)
        if self.life >= Life.CLOSING:
            return
        if self._probing is None:
            if now - self._heard < ddp_settings.HEARTBEAT_INTERVAL:
                return
            connection = self.session.connection
            if connection.state is ConnectionState.CONNECTED:
                if connection.heartbeat_enabled:
                    self.session.send(Ping())
                elif not self.transport.ping():
                    return  # pre1: no DDP ping (H6), and none of the transport's now
            self._probing = now
        elif self._heard > self._probing or self.transport.answered():
            self._probing = None
        elif now - self._probing >= ddp_settings.HEARTBEAT_TIMEOUT:
            self.close(CloseReason.GOING_AWAY, "Heartbeat timeout")
