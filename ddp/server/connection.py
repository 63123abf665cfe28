"""One DDP client, whatever carries its messages (raw WebSocket or SockJS).

Three green threads around a :class:`~ddp.session.Session`, joined by queues:

* the worker takes requests from the inbox one at a time and runs them in the session
  (Meteor's one-message-at-a-time rule, R7), and applies bus changes between them;
* the writer drains the outbox into the transport, so nothing that produces messages
  (a database worker streaming a publication, the listener) waits on a slow client. The
  outbox is bounded (``DDP["OUTBOX_MAX_BYTES"]`` and ``["OUTBOX_MAX_MESSAGES"]``): a
  client that stops reading is disconnected when it overflows, logged and counted
  (``ddp_slow_client_disconnects_total``), and every other client goes on;
* the heartbeat pings a silent client after ``DDP["HEARTBEAT_INTERVAL"]`` and closes it
  after ``DDP["HEARTBEAT_TIMEOUT"]`` more (H4); a socket that never completes the DDP
  handshake is closed after the same time without a ping, and ``pre1`` has no heartbeat.

The transport calls :meth:`DDPConnection.receive` for each text message (pings and
malformed input are answered at once, H2) and :meth:`DDPConnection.finish` when it is
gone. It provides ``send_text(text)``, ``close(code, reason)``, ``abort()`` (cut the
connection at once, even while a write is blocked on it) and ``backlog()`` (``(bytes,
messages)`` it holds for the client beyond the outbox).
"""

import logging
import queue
import threading
import time

from wsproto.frame_protocol import CloseReason

from ddp import metrics
from ddp.conf import ddp_settings
from ddp.protocol import ConnectionState, Error, Ping
from ddp.session import WAKE, Session

logger = logging.getLogger("ddp.server")

#: Closes the transport once everything queued before it has been written.
_CLOSE = object()
#: In the inbox: the request before it is the last this connection runs (shutdown).
_LAST = object()


class DDPConnection:
    def __init__(self, transport, run_db, bus=None):
        self.transport = transport
        self.inbox = queue.Queue()
        self.outbox = queue.Queue()
        self.session = Session(
            self._enqueue,
            self.close,
            run_db,
            wake=lambda: self.inbox.put(WAKE),
            bus=bus,
            room=self.wait_for_room,
        )
        #: What the outbox holds now, and its bounds.
        self.queued_bytes = self.queued_messages = 0
        self.max_bytes = ddp_settings.OUTBOX_MAX_BYTES
        self.max_messages = ddp_settings.OUTBOX_MAX_MESSAGES
        self.overflowed = False
        self._heard = False
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, daemon=True),
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._heartbeat, daemon=True),
        ]

    def open(self):
        for thread in self._threads:
            thread.start()
        if ddp_settings.SEND_SERVER_ID:
            self._enqueue('{"server_id":"0"}')

    def receive(self, text):
        """One text message from the client."""
        self._heard = True
        metrics.inc("ddp_messages_received_total")
        for request in self.session.receive(text):
            self.inbox.put(request)

    def receive_binary(self):
        """DDP is text: a binary message is a bad request, and the connection goes on."""
        self._heard = True
        if self.session.admit():
            self.session.send(Error("Bad request"))

    def _enqueue(self, text):
        """Queue one message for the writer, or drop the client if its buffer is full."""
        if self.overflowed:
            return
        size = len(text)
        if (
            self.queued_bytes + size > self.max_bytes
            or self.queued_messages + 1 > self.max_messages
        ):
            self._overflow()
            return
        self.queued_bytes += size
        self.queued_messages += 1
        self.outbox.put(text)

    def wait_for_room(self):
        """Wait until the outbox is at most half full (a large initial send streams at the
        client's pace). A client that does not drain it within the heartbeat timeout is
        treated as one that stopped reading: cut off, and the wait ends."""
        deadline = time.monotonic() + ddp_settings.HEARTBEAT_TIMEOUT
        while not self.overflowed:
            waiting_bytes, waiting_messages = self.transport.backlog()
            if (
                self.queued_bytes + waiting_bytes <= self.max_bytes // 2
                and self.queued_messages + waiting_messages <= self.max_messages // 2
            ):
                return
            if time.monotonic() > deadline:
                self._overflow()
                return
            time.sleep(0.005)

    def _overflow(self):
        self.overflowed = True
        metrics.inc("ddp_slow_client_disconnects_total")
        logger.warning(
            "Disconnecting slow client %s: %d messages, %d bytes waiting",
            self.session.connection.session_id,
            self.queued_messages,
            self.queued_bytes,
        )
        # Its socket is full, so no close frame would get through: cut it. The writer,
        # blocked on it, fails and drops the rest.
        self.transport.abort()

    def close(self, code=CloseReason.NORMAL_CLOSURE, reason=None):
        """Close after what is queued; safe from any thread, any number of times."""
        self.outbox.put((_CLOSE, code, reason))

    def shut_down(self, code, reason):
        """Close once the request being run (a method in flight, say) has answered;
        requests that arrive after this are not run. From any thread."""
        self.inbox.put((_LAST, code, reason))

    def finish(self):
        """The transport is gone: stop the threads, forget the session silently (S9)."""
        self._done.set()
        self.inbox.put(None)
        self.close()
        for thread in self._threads:
            thread.join()
        self.session.teardown()

    def _work(self):
        while (request := self.inbox.get()) is not None:
            if isinstance(request, tuple) and request[0] is _LAST:
                self.close(request[1], request[2])
                return
            self.session.handle(request)

    def _write(self):
        broken = False
        while True:
            item = self.outbox.get()
            if isinstance(item, tuple) and item[0] is _CLOSE:
                if not broken:
                    self.transport.close(item[1], item[2])
                return
            self.queued_bytes -= len(item)
            self.queued_messages -= 1
            if broken or self.overflowed:
                continue  # the peer went away or fell behind: drop the rest until the close
            try:
                self.transport.send_text(item)
                metrics.inc("ddp_messages_sent_total")
            except OSError:
                broken = True

    def _heartbeat(self):
        interval = ddp_settings.HEARTBEAT_INTERVAL
        timeout = ddp_settings.HEARTBEAT_TIMEOUT
        while not self._done.wait(interval):
            if self._heard:
                self._heard = False
                continue
            connection = self.session.connection
            if connection.state is ConnectionState.CONNECTED:
                if not connection.heartbeat_enabled:
                    continue
                self.session.send(Ping())
            if self._done.wait(timeout):
                return
            if self._heard:
                self._heard = False
                continue
            self.close(CloseReason.GOING_AWAY, "Heartbeat timeout")
            return
