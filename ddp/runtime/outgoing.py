"""What goes to one client: a bounded outbox drained into its transport, then its close.

An idle client holds no queue and no thread: the outbox (a deque, 760 bytes empty) exists
while something waits in it. What is queued in one turn of the hub is written by one
flusher for every client (:class:`_Flusher`), as far as each socket takes it without
waiting; what a socket does not take goes to a writer of that client's own, which may
wait. Nothing that produces messages ever waits on a slow client's socket. The outbox is
bounded, with what the transport holds (an xhr session's messages waiting for a poll): a
client that overflows it stopped reading, and is cut off, logged and counted
(``ddp_slow_client_disconnects_total``).

:class:`Outgoing` is the part of :class:`~ddp.runtime.connection.ConnectionRuntime` that
knows nothing of DDP, so that a host of another SockJS app (the sockjs-protocol test
server's echo) drives its websockets the same way.
"""

import collections
import dataclasses
import enum
import logging

from ddp import metrics

logger = logging.getLogger("ddp.server")

#: The writer sends what has queued up in one write of about this many bytes at most: a
#: client that gets many changes at once costs one system call per batch, not per message.
WRITE_BATCH_BYTES = 64 * 1024


class Life(enum.IntEnum):
    """Where a connection is in its life. It only moves forward (:meth:`Outgoing._advance`),
    and each state keeps the restrictions of those before it, so a check is one
    comparison."""

    #: Requests run, messages flow both ways.
    OPEN = 0
    #: The server shuts down: the request in flight answers, then the connection closes.
    LEAVING = 1
    #: No request is run any more (shutdown reached its turn, or a request failed).
    ENDED = 2
    #: A close is queued behind what was sent: no heartbeat is due, no request runs.
    CLOSING = 3
    #: The transport is gone; the close, if not written yet, is the writer's last act.
    GONE = 4
    #: The close was written, or the peer went away under a write: nothing more is.
    CLOSED = 5
    #: Cut off as a slow consumer: what it is sent is dropped, its session is not held.
    CUT_OFF = 6
    #: Its session went to a new connection of the same client.
    HANDED_OVER = 7


# Python 3.11 takes about 70 ns to find an enum's member on its class, several times any
# other attribute: the checks made for each message to each client compare with these.
ENDED, CLOSED, CUT_OFF = Life.ENDED, Life.CLOSED, Life.CUT_OFF


@dataclasses.dataclass(frozen=True, slots=True)
class Rest:
    """In the outbox: the rest of a frame :meth:`Transport.send_now` began."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """In the outbox: close the transport, after everything queued before."""

    code: int
    reason: str | None


def _take_texts(outbox):
    """The messages at the head of ``outbox``, up to about WRITE_BATCH_BYTES, and their size.

    The outbox holds each message as its ``str`` (the only item that is no class of this
    module): a change sent to thousands of clients is one object in all their outboxes."""
    texts = []
    size = 0
    while outbox and size < WRITE_BATCH_BYTES and type(outbox[0]) is str:
        text = outbox.popleft()
        texts.append(text)
        size += len(text)
    return texts, size


class _Flusher:
    """One green thread per turn of the hub writes for every connection that has something
    to send: a change to a thousand clients starts one thread, not a thousand, and what a
    client gets in one turn goes out in one write."""

    def __init__(self):
        self._dirty = []

    def add(self, connection):
        self._dirty.append(connection)
        if len(self._dirty) == 1:
            connection.driver.spawn(self._flush)

    def _flush(self):
        dirty, self._dirty = self._dirty, []
        sent = 0  # counted once for all: a fan-out's pass writes to thousands
        for connection in dirty:
            try:
                sent += connection._flush()
            except Exception:
                # Its queue would wait forever: cut it, and the client reconnects.
                logger.exception("Writing to %s failed", connection.name())
                connection.transport.abort()
        metrics.inc("ddp_messages_sent_total", sent)


_flusher = _Flusher()


class Outgoing:
    """A bounded outbox for ``transport`` (at most ``max_bytes`` of text and
    ``max_messages`` messages waiting), drained by green threads of ``driver`` (a
    :class:`ddp.runtime.driver.Driver`)."""

    #: Who is cut off, in the warning: the DDP runtime's clients are "client".
    kind = "client"

    def __init__(self, transport, driver, max_bytes, max_messages):
        self.transport = transport
        self.driver = driver
        self.life = Life.OPEN
        self.outbox = None
        #: Made by a wait for room (:meth:`ConnectionRuntime.wait_for_room`), set by the
        #: writers once the outbox is at most half full, or the connection ends.
        self._room = None
        #: What the outbox holds now, and its bounds.
        self.queued_bytes = self.queued_messages = 0
        self.max_bytes = max_bytes
        self.max_messages = max_messages

    def name(self):
        """The client's name in the logs."""
        raise NotImplementedError

    def _advance(self, life):
        if life > self.life:
            self.life = life
            if self._room is not None:
                self._room.set()  # whoever waits for room finds the connection ending

    def _has_room(self):
        return (
            self.queued_bytes <= self.max_bytes // 2
            and self.queued_messages <= self.max_messages // 2
        )

    def _drained(self):
        """Called after a write: wake a wait for room once there is some."""
        if self._room is not None and self._has_room():
            self._room.set()

    def _enqueue(self, text):
        """Queue one message to send, or drop the client if what waits for it is too much:
        the outbox and what the transport holds (an xhr session's messages waiting for
        the next poll), together under the one bound."""
        if self.life >= CUT_OFF:
            return
        size = len(text)
        waiting_bytes, waiting_messages = self.transport.backlog()
        if (
            self.queued_bytes + waiting_bytes + size > self.max_bytes
            or self.queued_messages + waiting_messages + 1 > self.max_messages
        ):
            self._overflow(waiting_bytes, waiting_messages)
            return
        self.queued_bytes += size
        self.queued_messages += 1
        self._put(text)

    def _put(self, item):
        if self.outbox is not None:
            self.outbox.append(item)  # the flusher or this connection's writer has it
            return
        self.outbox = collections.deque((item,))
        _flusher.add(self)

    def _flush(self):
        """Called by the flusher: write what is queued as far as the socket takes it without
        waiting. What it does not take, and a close, go to a writer of this connection's
        own, which may wait. Returns how many messages went whole."""
        sent = 0
        outbox = self.outbox
        while outbox and self.life < CLOSED:
            if type(outbox[0]) is not str:
                break
            texts, size = _take_texts(outbox)
            self.queued_bytes -= size
            self.queued_messages -= len(texts)
            rest = self.transport.send_now(texts)
            # A message cut short is counted when its writer sends the rest.
            sent += len(texts) - bool(rest)
            if rest:
                self.queued_bytes += len(rest)
                self.queued_messages += 1
                outbox.appendleft(Rest(rest))
                break
        self._drained()
        if outbox:
            self.driver.spawn(self._write)
        else:
            self.outbox = None
        return sent

    def _overflow(self, waiting_bytes, waiting_messages):
        """Cut the client off: ``waiting_*`` is what its transport holds besides."""
        self._advance(Life.CUT_OFF)
        metrics.inc("ddp_slow_client_disconnects_total")
        logger.warning(
            "Disconnecting slow %s %s: %d messages, %d bytes waiting",
            self.kind,
            self.name(),
            self.queued_messages + waiting_messages,
            self.queued_bytes + waiting_bytes,
        )
        # Its socket is full, so no close frame would get through: cut it. The writer,
        # blocked on it, fails and drops the rest.
        self.transport.abort()

    def close(self, code=1000, reason=None):
        """Close after what is queued; safe from any thread, any number of times."""
        self._advance(Life.CLOSING)
        self._put(Close(code, reason))

    def keepalive(self, now):
        """The transport's own heartbeat (a SockJS websocket's pings), at each beat of
        ``now`` (the driver's clock): close with what it says when its peer left a ping
        unanswered too long."""
        if self.life >= Life.CLOSING:
            return
        closing = self.transport.keepalive(now)
        if closing is not None:
            self.close(*closing)

    def _write(self):
        outbox = self.outbox
        while outbox:
            item = outbox[0]
            if type(item) is Rest:
                outbox.popleft()
                self._send(item.data, self.transport.send_bytes, 1, len(item.data))
                continue
            texts, size = _take_texts(outbox)
            if texts:
                self._send(texts, self.transport.send_texts, len(texts), size)
                continue
            outbox.popleft()
            if self.life < Life.CLOSED:
                self._advance(Life.CLOSED)
                self.transport.close(item.code, item.reason)
        self.outbox = None

    def _send(self, data, send, messages, size):
        self.queued_bytes -= size
        self.queued_messages -= messages
        if self.life >= Life.CLOSED:
            return  # the peer went away or fell behind: drop the rest until the close
        try:
            send(data)
            metrics.inc("ddp_messages_sent_total", messages)
        except OSError:
            self._advance(Life.CLOSED)
        self._drained()
