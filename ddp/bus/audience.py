"""Which sessions a change concerns, found without asking every session that listens.

An event names the distinct subscriptions its row now belongs to (``subs``) and those a
writer could not decide (``unsure``). The sessions it concerns are those with one of
these subscriptions, those that hold the document (it may have left their queries: they
must remove it), and those in the middle of a query of the collection (what they are
about to send may be older than the change: they apply it after, in order). With 10,000
sessions each on its own subscription, a change is handed to the one or two it
concerns, not to all 10,000.

Sessions tell the audience what they hold through every ``added`` and ``removed`` they
send (a count per session and document: under ``NO_MERGE`` two subscriptions each send
their own). A session handed an event it has not applied yet gets every later event of
that collection until it has (:meth:`Audience.settled`): a worker busy with a method
applies changes later, and the change that adds a document must not outrun the one that
removes it. Everything runs on the hub's one OS thread, so there is no lock.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, eq=False)
class Change:
    """An event as every session it concerns is handed it: one per event, shared by all of
    them, so handing it over costs a session nothing but a place in its queue."""

    #: The :class:`ddp.bus.payload.Event`.
    event: object
    #: The text of each message the event makes, encoded by the first session that sends
    #: it and reused by every other that sends the same (see ``ddp.session.shared_key``).
    texts: dict = field(default_factory=dict)


class Audience:
    def __init__(self):
        self._by_key = defaultdict(Counter)  # subscription key -> {session: subscriptions}
        self._holders = defaultdict(dict)  # collection -> {doc id: {session: count}}
        self._querying = defaultdict(Counter)  # collection -> {session: queries running}
        self._pending = defaultdict(set)  # collection -> sessions with events to apply

    def subscribed(self, session, key):
        self._by_key[key][session] += 1

    def unsubscribed(self, session, key):
        _count_down(self._by_key, key, session)

    def querying(self, session, collections, delta):
        """``session`` starts (+1) or ends (-1) a query of ``collections``."""
        for name in collections:
            if delta > 0:
                self._querying[name][session] += delta
            else:
                _count_down(self._querying, name, session, -delta)

    def hold(self, session, collection, doc_id):
        holders = self._holders[collection].setdefault(doc_id, {})
        holders[session] = holders.get(session, 0) + 1

    def release(self, session, collection, doc_id, everything=False):
        """One ``removed`` of the document was sent (``everything``: the session is gone)."""
        documents = self._holders.get(collection)
        if documents is not None:
            _count_down(documents, doc_id, session, float("inf") if everything else 1)
            if not documents:
                del self._holders[collection]

    def forget(self, session, documents):
        """The session is gone: it holds none of ``documents`` (``(collection, id)``)."""
        self.settled(session, list(self._pending))
        for collection, doc_id in documents:
            self.release(session, collection, doc_id, everything=True)

    def of(self, event, listening):
        """The sessions ``event`` concerns, among ``listening`` (those that listen to its
        collection); each must call :meth:`settled` once it has applied its events."""
        collection = event.collection
        if "*" in event.unsure:
            found = list(listening)
        else:
            found = set(self._pending.get(collection, ()))
            found.update(self._querying.get(collection, ()))
            found.update(self._holders.get(collection, {}).get(event.id, ()))
            for keys in (event.subs, event.unsure):
                for key in keys:
                    found.update(self._by_key.get(key, ()))
            found = [session for session in found if session in listening]
        if found:
            self._pending[collection].update(found)
        return found

    def settled(self, session, collections):
        """``session`` has applied (or dropped) every event of ``collections`` it was
        handed."""
        for name in collections:
            pending = self._pending.get(name)
            if pending is not None:
                pending.discard(session)
                if not pending:
                    del self._pending[name]


def _count_down(counts, key, member, by=1):
    """Take ``by`` from ``counts[key][member]``: a member at 0 goes, and so does a key left
    with no member, so that nothing is kept for sessions that are gone."""
    members = counts.get(key)
    if members is None or member not in members:
        return
    members[member] -= by
    if members[member] <= 0:
        del members[member]
        if not members:
            del counts[key]
