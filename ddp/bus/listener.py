"""Each ddpserver's one LISTEN connection: green, on-demand channels, reconnect, de-chunk.

It runs in its own green thread, spawned by the driver it is given
(:class:`ddp.runtime.driver.Driver`), and owns its psycopg2 connection outright: other
green threads ask for LISTEN/UNLISTEN through a queue and a wake-up socket, and wait for
it to be done, so a subscription starts only once its changes can be heard. If the connection drops
(PostgreSQL restarted, the backend terminated, the network cut), the server keeps serving;
the listener reconnects with a doubling backoff capped at ``DDP["LISTENER_MAX_BACKOFF"]``,
LISTENs again, and calls ``on_reconnect`` so every subscription is re-run and diffed:
changes committed while it was gone are not lost.

The connection is a :class:`ddp.bus.listen.ListenConnection`, as ``ddp_capture``'s and
the replication reader's are.

Every notification must carry a valid tag (:mod:`ddp.bus.signing`) before anything else
looks at it: one that does not is counted in ``ddp_listener_refused_payloads_total`` and
dropped, with a warning at most every :data:`REFUSED_LOG_EVERY` seconds that never quotes it.

Threads, events, sleeps, the clock and the wait for the connection or the wake-up
socket are the driver's.
"""

import collections
import logging
import socket

import psycopg2

from ddp import metrics
from ddp.bus import signing
from ddp.bus.listen import ListenConnection
from ddp.bus.payload import Reassembler, decode
from ddp.conf import ddp_settings

logger = logging.getLogger("ddp.bus")

#: Seconds between two warnings about refused notifications: a role flooding forged ones
#: must not flood the log too.
REFUSED_LOG_EVERY = 60.0


class Listener:
    def __init__(self, connect_params, driver, on_event=None, on_reconnect=None, on_notify=None):
        """``on_event(event)`` gets each change; ``on_notify(channel, payload)`` gets
        payloads of channels that carry no change events (fences)."""
        self.connect_params = connect_params
        self.driver = driver
        self.on_event = on_event
        self.on_reconnect = on_reconnect
        self.on_notify = on_notify
        self.channels = set()
        self.raw_channels = set()
        self.connected = driver.event()
        self._commands = collections.deque()
        # A socket pair, not a pipe: eventlet's os.write waits to be writable before it
        # writes, even on a non-blocking pipe, and two green threads waking the listener
        # at once would be two waiters on one file, which eventlet refuses. A
        # non-blocking socket's send never waits: a full socket holds a wake-up already.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._running = True
        # Whether the thread is (about to be) running, and an event set once it ended.
        self._alive = False
        self._ended = driver.event()
        self._ended.set()
        self._reassembler = Reassembler(ddp_settings.CHUNK_TIMEOUT)
        #: Counters for logs and tests: events dispatched, reconnections, dropped chunk sets.
        self.stats = {"events": 0, "reconnects": 0, "dropped_chunks": 0, "bad_payloads": 0}
        #: The backend pid of the current connection (for tests that terminate it).
        self.backend_pid = None
        # Refused notifications not yet in a warning, and when the last warning went out.
        self._refused = 0
        self._refused_warned = float("-inf")

    def start(self):
        self._spawn(first=True)

    def stop(self):
        self._running = False
        self._wake()
        self._ended.wait(5)

    def _spawn(self, first):
        self._alive = True
        self._ended.clear()
        self.driver.spawn(self._run, first)

    def listen(self, channel, raw=False):
        """LISTEN to ``channel`` (``raw``: hand its payloads to ``on_notify``); wait for it."""
        self._command("listen", channel, raw)

    def unlisten(self, channel):
        self._command("unlisten", channel, False)

    def _command(self, action, channel, raw):
        done = self.driver.event()
        self._commands.append((action, channel, raw, done))
        self._wake()
        # While disconnected the channel is recorded and LISTENed on reconnection, whose
        # resync covers what was missed; waiting longer would stall subscriptions.
        done.wait(10)

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except BlockingIOError:
            pass  # full of wake-ups not read yet: one more adds nothing

    def ensure_running(self):
        """Start the thread again if it ended, which nothing should make it do (every
        failure is caught): called by the server's heartbeat, a last line of defence.
        The new thread resyncs once connected."""
        if self._running and not self._alive:
            logger.error("The listener's thread had ended; starting it again")
            self.stats["reconnects"] += 1
            self._spawn(first=False)

    def _run(self, first):
        try:
            self._connect_and_serve(first)
        finally:
            self._alive = False
            self._ended.set()

    def _connect_and_serve(self, first):
        backoff = 0.1
        while self._running:
            try:
                listening = ListenConnection.connect(self.connect_params)
            except Exception as exc:
                logger.warning("Listener cannot connect (%s); retrying in %.1fs", exc, backoff)
                self.driver.sleep(backoff)
                backoff = min(backoff * 2, ddp_settings.LISTENER_MAX_BACKOFF)
                continue
            backoff = 0.1
            try:
                self._serve(listening, resync=not first)
            except (psycopg2.Error, OSError) as exc:
                if self._running:
                    logger.warning("Listener lost its connection (%s); reconnecting", exc)
                    self.stats["reconnects"] += 1
            except Exception:
                # Nothing may end this thread: what it was doing is lost, so start over
                # with a new connection, whose resync re-runs every subscription.
                logger.exception("Listener failed; reconnecting and resyncing")
                self.stats["reconnects"] += 1
            finally:
                self.connected.clear()
                listening.close()
            first = False

    def _serve(self, listening, resync):
        self.backend_pid = listening.backend_pid()
        for channel in self.channels | self.raw_channels:
            listening.listen(channel)
        self.connected.set()
        if resync:
            self.on_reconnect()
        while self._running:
            self._run_commands(listening)
            readable = self.driver.wait_readable(listening, self._wake_r, timeout=1.0)
            if self._wake_r in readable:
                try:
                    self._wake_r.recv(4096)
                except BlockingIOError:
                    pass
            for notify in listening.received():
                self._notified(notify)
            self.stats["dropped_chunks"] += self._reassembler.expire(self.driver.clock())

    def _run_commands(self, listening):
        while self._commands:
            action, channel, raw, done = self._commands.popleft()
            try:
                if action == "listen":
                    (self.raw_channels if raw else self.channels).add(channel)
                    listening.listen(channel)
                else:
                    self.channels.discard(channel)
                    self.raw_channels.discard(channel)
                    listening.unlisten(channel)
            finally:
                done.set()

    def _notified(self, notify):
        try:
            text = signing.verify(notify.channel, notify.payload)
        except signing.Refused as exc:
            self._refuse(notify.channel, exc)
            return
        if notify.channel in self.raw_channels:
            if self.on_notify is not None:
                try:
                    self.on_notify(notify.channel, text)
                except Exception:
                    logger.exception("Handling a notice on %s failed", notify.channel)
            return
        try:
            text = self._reassembler.feed(text, self.driver.clock())
            if text is None:
                return
            event = decode(text)
        except Exception as exc:
            # Anyone allowed to NOTIFY can send anything: log it, and keep listening.
            self.stats["bad_payloads"] += 1
            logger.error("Ignoring a malformed payload on %s: %s", notify.channel, exc)
            return
        self.stats["events"] += 1
        try:
            self.on_event(event)
        except Exception:
            # A failure in one delivery must not stop every later one.
            logger.exception("Delivering a change on %s failed", notify.channel)

    def _refuse(self, channel, reason):
        """Count a notification that failed verification; warn now and then, without its
        content, which is the sender's to choose."""
        metrics.inc("ddp_listener_refused_payloads_total")
        self._refused += 1
        now = self.driver.clock()
        if now - self._refused_warned < REFUSED_LOG_EVERY:
            return
        logger.warning(
            "Refused %d notification(s) without a valid signature (the last on %s, with %s):"
            " forged, or sent with another SECRET_KEY",
            self._refused,
            channel,
            reason,
        )
        self._refused, self._refused_warned = 0, now
