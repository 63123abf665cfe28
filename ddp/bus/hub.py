"""A ddpserver's side of the bus: which sessions need which collections, and fences.

Sessions call :meth:`Bus.subscribe` before a subscription's first query, so every change
committed after that query is heard. The listener calls :meth:`Bus.deliver` with each
event: the sessions it concerns (:class:`ddp.bus.audience.Audience`: those whose
subscriptions it names, those that hold the document or are querying its collection)
get it, and the session's merge box does the rest. Dispatching costs no database query,
and no work for the sessions it does not concern. That dispatch, and the session and token
tables, are :class:`ddp.bus.sessions.Dispatch`'s, which the tests' in-process bus shares.
"""

import logging
import secrets
from functools import partial

from django.db import connections

from ddp import metrics
from ddp.api import API
from ddp.bus import signing
from ddp.bus.announcements import Seen
from ddp.bus.producer import LOGOUT_CHANNEL, READER_CHANNEL, channel
from ddp.bus.sessions import Dispatch

logger = logging.getLogger("ddp.bus")


class Bus(Dispatch):
    def __init__(self, registration, listener, run_db, driver, registry=API):
        """``driver`` (:class:`ddp.runtime.driver.Driver`) runs the heartbeat and the
        token re-check, and makes the events fences wait on."""
        super().__init__()
        self.registration = registration
        self.listener = listener
        self.run_db = run_db
        self.driver = driver
        self._registered = {}  # key -> the call that inserts its registry row (again)
        #: The replication reader's announcements this server had (a repeat is dropped).
        self.seen = Seen()
        self._fences = {}
        self.registry = registry
        self._running = False
        self.fence_channel = f"ddp_fence_{registration.server_id}"

    # Life -----------------------------------------------------------------------

    def start(self, heartbeat):
        self.run_db(self.registration.start)
        self.listener.on_event = self.deliver
        self.listener.on_reconnect = self.resync
        self.listener.on_notify = self._notified
        self.listener.start()
        self.listener.listen(self.fence_channel, raw=True)
        self.listener.listen(LOGOUT_CHANNEL, raw=True)
        self._running = True
        self.driver.spawn(self._beat, heartbeat)

    def stop(self):
        self._running = False
        self.listener.stop()
        try:
            self.run_db(self.registration.stop)
        except Exception:
            logger.exception("Could not remove this server from the registry")

    def _beat(self, interval):
        pending = set()  # keys to register again since this server was taken for dead
        while self._running:
            self.driver.sleep(interval)
            self.listener.ensure_running()
            try:
                if self.run_db(self.registration.beat):
                    logger.warning("This server was taken for dead: registering again")
                    pending = set(self._registered)
                if pending:
                    self._register_again(pending)
                    self.resync()
            except Exception:
                logger.exception("Registry heartbeat failed")
            if self.registry.sweep_tokens is not None:
                try:
                    self.run_db(self.registry.sweep_tokens)
                except Exception:
                    logger.exception("Sweeping expired login tokens failed")

    def _register_again(self, pending):
        """Register each of the ``pending`` keys still subscribed, removing it once done.

        Raises on the first that fails (the registry lock held too long): the next beat
        goes on with the rest, and only once none is left may sessions re-run their
        subscriptions, or a change written in between could be missed."""
        for key in sorted(pending):
            register = self._registered.get(key)
            if register is not None:
                self._ids[key] = self.run_db(register)
            pending.discard(key)

    # Subscriptions (Dispatch) -----------------------------------------------------

    def _hear(self, collection):
        self.listener.listen(channel(collection))

    def _unhear(self, collection):
        self.listener.unlisten(channel(collection))

    def _register(self, key, *row):
        """Runs in a database worker (the session's subscribe)."""
        register = partial(self.registration.add, key, *row)
        row_id = register()
        self._registered[key] = register
        return row_id

    def _unregister(self, key):
        self._registered.pop(key, None)
        self.run_db(self.registration.remove, key)

    # Events ---------------------------------------------------------------------

    def deliver(self, event):
        if self.seen.repeated(event.event_id):
            metrics.inc("ddp_repeated_events_total")
            return
        super().deliver(event)

    def resync(self):
        """After the listener was lost: every session re-runs its subscriptions."""
        self.seen.forget()
        sessions = self.sessions()
        logger.warning("Listener reconnected: re-running %d sessions", len(sessions))
        for session in sessions:
            session.push_resync()
        if self.token_hashes() and self.registry.valid_tokens is not None:
            # Revocations announced while nobody listened were missed: ask the database.
            self.driver.spawn(self._recheck_tokens)

    def _recheck_tokens(self):
        hashes = self.token_hashes()
        try:
            valid = self.run_db(self.registry.valid_tokens, hashes)
        except Exception:
            logger.exception("Could not re-check login tokens after a resync")
            return
        for token_hash in hashes:
            if token_hash not in valid:
                self.revoked(token_hash)

    def fence(self, target=True):
        """Wait until every change committed before now has been delivered to sessions.

        NOTIFYs reach a listener in commit order, so once a fence sent after a method's
        COMMIT comes back, that method's own changes are in its sessions' queues. With
        ``"database"`` capture, ``target`` is the method's commit position, and the fence
        is asked of the replication reader, which answers once it has announced what
        committed up to there (after those events, so they arrive first).
        """
        token = secrets.token_hex(8)
        arrived = self._fences[token] = self.driver.event()
        try:
            self.run_db(self._send_fence, token, target)
            if not arrived.wait(10):
                logger.warning("A fence did not come back within 10 s")
        finally:
            self._fences.pop(token, None)

    def _send_fence(self, token, target):
        with connections["default"].cursor() as cursor:
            if target is True:
                signing.notify(cursor, self.fence_channel, [token])
            else:
                request = f"{self.fence_channel} {token} {target}"
                signing.notify(cursor, READER_CHANNEL, [request])

    def _notified(self, channel_name, payload):
        if channel_name == LOGOUT_CHANNEL:
            self.revoked(payload)
            return
        arrived = self._fences.get(payload)
        if arrived is not None:
            arrived.set()
