"""This process's sessions as a bus sees them, and how changes and revocations reach them.

Production's :class:`ddp.bus.hub.Bus` and the tests' :class:`ddp.bus.memory.InMemoryBus`
both are a :class:`Dispatch`: which sessions need which collection, how many of them ride
on each distinct subscription, which login token each rides on, and the hand-over of an
event to the sessions it concerns (:class:`ddp.bus.audience.Audience`). Kept in one class,
a test on the memory bus runs the very dispatch a server runs; what differs is only where
a distinct subscription is registered and what hearing a collection takes, which each bus
says in four methods.
"""

from collections import defaultdict

from ddp.bus.audience import Audience, Change


class Dispatch:
    def __init__(self):
        #: Which of the sessions an event concerns.
        self.audience = Audience()
        self._sessions = defaultdict(lambda: defaultdict(int))  # collection -> session -> n
        self._ids = {}  # distinct subscription key -> its registry id
        self._refcounts = defaultdict(int)  # distinct subscription key -> local subscriptions
        self._tokens = defaultdict(set)  # login token hash -> sessions riding on it

    # What each bus says -------------------------------------------------------------

    def _hear(self, collection):
        """The first local session needs ``collection``: its changes must reach this bus
        before the call returns."""

    def _unhear(self, collection):
        """No local session needs ``collection`` any more."""

    def _register(self, key, publication, params, user_id, collections, matches):
        """Register the distinct subscription ``key``, new to this process, where writers
        match changes against it; return its registry id (see :meth:`subscribe`)."""
        raise NotImplementedError

    def _unregister(self, key):
        """The last local subscription of ``key`` ended."""

    # Subscriptions --------------------------------------------------------------------

    def subscribe(self, session, key, publication, params, user_id, collections, matches=dict):
        """Hear ``collections`` for ``session``; register the distinct subscription, with
        how writers match it: ``matches()`` compiles that
        (:func:`ddp.bus.matching.compile_subscription`), once per distinct subscription.

        Runs in a database worker. Returns the registry id: events whose writer saw no
        row this recent could not have known about this subscription. Every call, even
        one that raised, is matched by one :meth:`unsubscribe`.
        """
        for name in collections:
            sessions = self._sessions[name]
            if not sessions:
                self._hear(name)
            sessions[session] += 1
        self.audience.subscribed(session, key)
        # Counted before it registers, as its collections and audience are: a session
        # withdraws a subscription that raised here like any other, and that must not
        # take another session's count of the key (and the key's registry row) with it.
        self._refcounts[key] += 1
        if key not in self._ids:
            self._ids[key] = self._register(
                key, publication, params, user_id, collections, matches()
            )
        return self._ids[key]

    def unsubscribe(self, session, key, collections):
        for name in collections:
            sessions = self._sessions.get(name)
            if sessions is None or session not in sessions:
                continue
            sessions[session] -= 1
            if sessions[session] <= 0:
                del sessions[session]
            if not sessions:
                del self._sessions[name]
                self._unhear(name)
        self.audience.unsubscribed(session, key)
        self._refcounts[key] -= 1
        if self._refcounts[key] <= 0:
            del self._refcounts[key]
            self._ids.pop(key, None)
            self._unregister(key)

    def sessions(self):
        """Every session with a subscription here."""
        return {session for by_session in self._sessions.values() for session in by_session}

    # Events ---------------------------------------------------------------------------

    def deliver(self, event):
        change = Change(event)  # one for all the sessions, with one encoding of each message
        for session in self.audience.of(event, self._sessions.get(event.collection, {})):
            session.push_change(change)

    # Login tokens ---------------------------------------------------------------------

    def track_token(self, session, old_hash, new_hash):
        """``session`` now rides on login token ``new_hash`` (either may be None)."""
        if old_hash is not None:
            self._tokens[old_hash].discard(session)
            if not self._tokens[old_hash]:
                del self._tokens[old_hash]
        if new_hash is not None:
            self._tokens[new_hash].add(session)

    def token_hashes(self):
        """The login tokens some session here rides on."""
        return list(self._tokens)

    def revoked(self, token_hash):
        """A token was deleted: close its connections; their clients log in again."""
        for session in list(self._tokens.get(token_hash, ())):
            session.push_revoked(token_hash)
