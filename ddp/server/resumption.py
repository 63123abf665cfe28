"""Sessions kept for clients that dropped, so that they may have them back (Meteor 3.4).

A Meteor 3.4 client that loses its connection without saying ``disconnect`` reconnects
with ``connect`` naming its session and how many messages it received from it, pings and
pongs left out (``receivedCount``). When this server still holds that session and sent
exactly that many, the client gets it back: login, subscriptions and merge box go on
untouched, the messages made meanwhile follow ``connected`` in order, and the ``sub``\\ s the
client re-sends are ignored (S3), so no publication runs again. Otherwise it gets a new
session, as before.

While held, a session is what it was on its connection, but what it sends goes to a queue
and its bus changes are applied as they come (they need no query). The hold ends, and the
session is torn down as on any disconnect (S9: its registry rows, merge box and token go),
when:

* ``DDP["DISCONNECT_GRACE_PERIOD"]`` seconds pass (0: no session is held);
* the queue would hold more than ``DDP["MAX_MESSAGE_QUEUE_LENGTH"]`` messages, or more than
  ``DDP["OUTBOX_MAX_BYTES"]``;
* something needs its connection: the listener was lost (every subscription must re-run),
  its login token was revoked, an initial send was cut short;
* more sessions are held than ``DDP["MAX_CONNECTIONS"]``: the oldest goes;
* the client comes back with another count (it missed a message), or to the same session
  on a new connection that did not agree the same DDP version.

A client often comes back before the server has seen its old connection go: Meteor's client
retries within milliseconds, and a load balancer cuts both sides at once. Meteor's server
then starts a new session; this one goes further. A connection that is idle (no request of
it running) and sent exactly what the client says it received hands its session over at
once, as if its transport had gone (:meth:`Holder.take`), and is closed; a busy one, or one
named with another count, keeps it and goes on, and the client gets a new session.

What held sessions cost is in ``/metrics``: ``ddp_held_sessions``, ``ddp_held_messages``,
``ddp_held_bytes``; resumptions and how holds ended are counted.

One green thread expires them, only while any is held. All of this runs in the server's
one OS thread of green threads, like the connections: no lock.
"""

import logging

from ddp import metrics
from ddp.conf import ddp_settings
from ddp.session import RESYNC, UNCOUNTED, Revoked

logger = logging.getLogger("ddp.server")


class Held:
    """One session while its client is away: the messages it sends wait in ``queue``."""

    def __init__(self, holder, session, unsent):
        self.holder = holder
        self.session = session
        #: What the client must say it received: what was sent, less what never left.
        self.count = session.sent - len(unsent)
        self.queue = list(unsent)
        self.bytes = sum(map(len, unsent))
        #: Set once the request the connection was running has ended: from then on the
        #: client may resume it, and bus changes are applied at once.
        self.ready = False
        #: Set when the hold ended: the session is (being) torn down, never resumed.
        self.ended = False
        self.deadline = None
        self.max_messages = ddp_settings.MAX_MESSAGE_QUEUE_LENGTH
        self.max_bytes = ddp_settings.OUTBOX_MAX_BYTES
        session.attach(
            self.put, lambda *args: self.end("closed"), self.wake, self.room, self.changed
        )
        if len(self.queue) > self.max_messages or self.bytes > self.max_bytes:
            self.end("overflow")

    def put(self, text):
        """What the session sends while its client is away."""
        if self.ended:
            return
        if len(self.queue) >= self.max_messages or self.bytes + len(text) > self.max_bytes:
            self.end("overflow")
            return
        self.queue.append(text)
        self.bytes += len(text)

    def end(self, reason):
        """The session cannot be resumed any more (for ``reason``, logged): tear it down,
        once it is held (a request of its connection may still be running)."""
        if self.ended:
            return
        self.ended = True
        self.queue, self.bytes = [], 0
        self.holder.ended(self, reason)

    def room(self, deadline):
        """A publication's initial send cannot go on without its client (the session is
        then ``interrupted``, and not held)."""
        return False

    def wake(self):
        """Work for a worker: a lost listener (every subscription re-runs) or a revoked
        token ends the hold; subscriptions to re-run wait for the client to come back."""
        if any(item is RESYNC or isinstance(item, Revoked) for item in self.session.changes):
            self.end("needs its connection")

    def changed(self):
        """A bus change for the session: applied at once, as on an idle connection."""
        if not self.ready or self.ended:
            return  # the connection's request still runs: applied once it has ended
        try:
            self.session.apply_changes()
        except Exception:
            logger.exception("Applying a change failed on held session %s", self.id)
            self.end("error")

    @property
    def id(self):
        return self.session.connection.session_id


class Holder:
    """The sessions this server holds, by id; one per server (``DDPApplication``)."""

    def __init__(self, driver):
        self._driver = driver
        self._held = {}
        #: The connections of this server by the id of their session: where a session
        #: named by a client that came back before its old connection was seen to go is.
        self.live = {}
        self._sweeping = False

    def __len__(self):
        return len(self._held)

    def gauges(self):
        """``(sessions, messages, bytes)`` held now, for ``/metrics``."""
        held = list(self._held.values())
        return len(held), sum(len(h.queue) for h in held), sum(h.bytes for h in held)

    def hold(self, session, unsent):
        """The connection of ``session`` is gone: keep the session if its client may come
        back, queueing ``unsent`` (what was queued for the client but never written).
        Return the :class:`Held`, to :meth:`release` once the connection's request in
        flight has ended, or None: the session is to be torn down at once."""
        if ddp_settings.DISCONNECT_GRACE_PERIOD <= 0:
            return None
        if not session.connection.resumable or session.revoked or session.limits.flooded:
            return None
        return Held(self, session, [text for text in unsent if not text.startswith(UNCOUNTED)])

    def release(self, held):
        """Start the grace period of ``held``, or tear its session down if the hold ended
        already. Called once nothing of the old connection runs in the session."""
        if held is None:
            return
        if held.session.interrupted:
            held.end("interrupted")
        held.ready = True
        if held.ended:
            _teardown(held.session)
            return
        held.deadline = self._driver.clock() + ddp_settings.DISCONNECT_GRACE_PERIOD
        while self._held and len(self._held) >= ddp_settings.MAX_CONNECTIONS:
            oldest = next(iter(self._held.values()))
            oldest.end("full")
        self._held[held.id] = held
        if not self._sweeping:
            self._sweeping = True
            self._driver.spawn(self._sweep)
        held.changed()  # what came while the request ran

    def take(self, request, version):
        """The held session a resuming client names (a :class:`ddp.protocol.Resume`), if
        it may have it back on a connection that agreed ``version``; else None."""
        held = self._held.get(request.session)
        if held is None:
            connection = self.live.get(request.session)
            held = (
                None
                if connection is None
                else connection.hand_over(request.received_count, version)
            )
            if held is None:
                metrics.inc("ddp_resumptions_refused_total")
                return None
            self._held[held.id] = held
        if self._driver.clock() >= held.deadline:
            held.end("expired")
        elif held.count != request.received_count:
            held.end("count")
        elif held.session.connection.version != version:
            held.end("version")
        else:
            del self._held[held.id]
            metrics.inc("ddp_sessions_resumed_total")
            return held
        metrics.inc("ddp_resumptions_refused_total")
        return None

    def ended(self, held, reason):
        """Called by ``held`` when its hold ends: forget it, and tear the session down in
        a thread of its own (this may be the listener's, which must not wait)."""
        metrics.inc("ddp_held_sessions_ended_total")
        logger.info("Held session %s ends: %s", held.id, reason)
        if not held.ready:
            return  # release() tears it down once the connection's request has ended
        if self._held.get(held.id) is held:
            del self._held[held.id]
        self._driver.spawn(_teardown, held.session)

    def _sweep(self):
        """Expire held sessions while there are any."""
        while self._held:
            grace = ddp_settings.DISCONNECT_GRACE_PERIOD
            self._driver.sleep(min(1.0, max(grace, 0.05) / 4))
            now = self._driver.clock()
            for held in list(self._held.values()):
                if now >= held.deadline:
                    held.end("expired")
        self._sweeping = False


def _teardown(session):
    try:
        session.teardown()
    except Exception:
        logger.exception("Tearing down held session %s failed", session.connection.session_id)
