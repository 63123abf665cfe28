"""The merge box: what one client sees when several subscriptions publish the same data.

A client holds one copy of each document, but any number of subscriptions may
publish it, each with its own fields. Meteor clients throw on a duplicate ``added``
or on a ``removed`` for a document they do not hold (PROTOCOL.md D7), so the server
keeps, per connection, the view each client has and sends only what changes it
(section 7):

* a document is on the client while at least one subscription publishes it;
* each field keeps a precedence list of ``subscription -> value``; the client sees
  the head. The first subscription to set a field stays the head until it lets go,
  even if later ones publish another value (MB2);
* when the head lets go, the next value is revealed, and a field nobody publishes
  any more is ``cleared`` (MB3, MB4).

Most documents are published by one subscription only: those keep their owner and a
plain ``{field: value}`` dict, and take the precedence lists only while a second
subscription publishes them too.

That is Meteor's default publication strategy, ``SERVER_MERGE``. A collection may use
another (MB7), which keeps no field values and so costs little more than the ids:

* ``NO_MERGE`` remembers the ids each subscription sent, so that ``removed`` goes out
  when it stops and a live change can tell ``added`` from ``changed``. Every message
  passes through: two subscriptions publishing one document send it twice, and the
  first to stop removes it. For a collection one subscription at a time publishes.
* ``NO_MERGE_MULTI`` also counts the subscriptions that publish each document: only the
  first sends ``added`` (the others a ``changed`` with their fields) and only the last
  to let go sends ``removed``. Fields are never merged nor cleared when one stops.

Without values, a ``changed`` carries every field the caller passes (a whole live
document, a re-run's), not the difference. Meteor's ``NO_MERGE_NO_HISTORY`` (no ids
either) has no place here: a live change is a whole row with the subscriptions it now
matches, so only the ids sent tell ``added`` from ``changed``, and a row leaving a query
from one the client never had.

Every method returns the messages to send, in order; it never returns an empty
``changed``. Owners (the ``sub`` of every method) are any hashable the caller picks; a
session uses a :class:`SubscriptionOwner` per named subscription and :data:`USERS` for
the logged-in user's own document. Owners are only told apart: which one a client sees
depends on the order they published in, never on what they are. Field values
are kept by reference and compared by their EJSON form, so callers must not mutate
a value after handing it over. Adding what a subscription already holds, or
changing or removing what it does not, raises :class:`ProtocolError`: the caller
lost track.
"""

from typing import NamedTuple

from ddp.protocol.ejson import to_ejson
from ddp.protocol.errors import ProtocolError
from ddp.protocol.messages import Added, Changed, Removed

# Marks a field the client must drop, in a collector of pending field changes.
_CLEARED = object()

# Meteor's publication strategies (``Meteor.server.setPublicationStrategy``, MB7), per
# collection. Meteor's fourth, NO_MERGE_NO_HISTORY, is not one: see the module docstring.

#: The default: keep every field of every document, send the smallest difference.
SERVER_MERGE = "SERVER_MERGE"
#: Keep, per document, how many subscriptions publish it; no field values.
NO_MERGE_MULTI = "NO_MERGE_MULTI"
#: Keep only the ids each subscription sent: for a collection one subscription publishes.
NO_MERGE = "NO_MERGE"
#: The strategies a :class:`MergeBox` implements.
PUBLICATION_STRATEGIES = (SERVER_MERGE, NO_MERGE_MULTI, NO_MERGE)


class SubscriptionOwner(NamedTuple):
    """What the named subscription ``sub_id`` of a connection publishes.

    A tuple underneath, so that the box's dicts hash and compare it as fast as a plain
    tuple: every live change looks owners up several times per client. Make it once per
    subscription and keep it.
    """

    sub_id: str


class _UserDocumentOwner:
    """The logged-in user's own document, published to every connection that has one (MB8):
    a universal publication, with no subscription id a client could name. Its one
    instance is :data:`USERS`; it has no state, and compares by identity."""

    __slots__ = ()

    def __repr__(self):
        return "USERS"


#: The one owner of the user's own document.
USERS = _UserDocumentOwner()


def _same(a, b):
    """Whether the client would see ``a`` and ``b`` as the same value (``EJSON.equals``)."""
    if a is b:
        return True
    if type(a) is type(b) and type(a) in (str, int):
        return a == b
    return _same_json(to_ejson(a), to_ejson(b))


def _same_json(a, b):
    # JSON equality as JavaScript sees it: 1 == 1.0, but true is not 1, and
    # object key order does not matter. NaN arrives here as {"$InfNaN": 0}.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same_json(value, b[key]) for key, value in a.items())
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same_json, a, b))
    return a == b


# A document one subscription publishes is kept as a plain dict of its fields as the
# client sees them; the subscription is the one whose held ids include it. Such a dict
# holds only the row's values, mostly strings and numbers, so Python's garbage collector
# does not track it: a full collection does not walk every document of every client (an
# object per document did, and made the slowest changes wait on it). It becomes a
# :class:`_Shared` when a second subscription publishes the document, and a dict again
# when only one is left.


def _set_owned(fields, key, value, collector):
    if key not in fields or not _same(fields[key], value):
        collector[key] = value
    fields[key] = value


def _clear_owned(fields, key, collector):
    if key in fields:
        del fields[key]
        collector[key] = _CLEARED


class _Shared:
    """A document several subscriptions publish, and who publishes which of its fields."""

    __slots__ = ("subs", "fields")

    def __init__(self):
        self.subs = set()
        # field -> {sub: value}. Dicts keep insertion order, so each inner dict is
        # the precedence list: its first entry is what the client sees.
        self.fields = {}

    def join(self, sub, fields, collector):
        """``sub`` publishes the document too: it goes last in every precedence list."""
        self.subs.add(sub)
        for key, value in fields.items():
            # No search for ``sub``: a subscription that did not hold the document
            # appears in no precedence list.
            precedence = self.fields.setdefault(key, {})
            if not precedence:
                collector[key] = value
            precedence[sub] = value

    def set_field(self, sub, key, value, collector):
        precedence = self.fields.get(key)
        if precedence is None:
            self.fields[key] = {sub: value}
            collector[key] = value
            return
        if sub in precedence:
            head = next(iter(precedence))
            if head == sub and not _same(precedence[sub], value):
                collector[key] = value
        precedence[sub] = value

    def clear_field(self, sub, key, collector):
        precedence = self.fields.get(key)
        if precedence is None or sub not in precedence:
            return
        was_head = next(iter(precedence)) == sub
        old = precedence.pop(sub)
        if not precedence:
            del self.fields[key]
            collector[key] = _CLEARED
        elif was_head:
            revealed = next(iter(precedence.values()))
            if not _same(old, revealed):
                collector[key] = revealed

    def keys_of(self, sub):
        return [key for key, precedence in self.fields.items() if sub in precedence]

    @classmethod
    def of(cls, owner, fields):
        """The document ``owner`` alone published, in the form another may join."""
        doc = cls()
        doc.subs.add(owner)
        doc.fields = {key: {owner: value} for key, value in fields.items()}
        return doc

    def owned(self):
        """The compact form (a dict), once a single subscription is left."""
        (owner,) = self.subs
        return {key: precedence[owner] for key, precedence in self.fields.items()}


def _changed(collection, doc_id, collector):
    """Turn a collector into at most one ``changed`` (never an empty one, D2)."""
    if not collector:
        return []
    fields = {key: value for key, value in collector.items() if value is not _CLEARED}
    cleared = tuple(key for key, value in collector.items() if value is _CLEARED)
    return [Changed(collection, doc_id, fields, cleared)]


class MergeBox:
    """The client's view of every collection on one connection.

    ``strategies`` maps collection names to a publication strategy (a name in
    :data:`PUBLICATION_STRATEGIES`); other collections use :data:`SERVER_MERGE`. The
    mapping is read on every call and may be shared by many boxes, but a collection's
    strategy must not change while the box holds documents of it.
    """

    def __init__(self, strategies=None):
        self._strategies = {} if strategies is None else strategies
        # collection -> id -> dict | _Shared (SERVER_MERGE), or the number of
        # subscriptions that publish it (NO_MERGE_MULTI); NO_MERGE keeps nothing here.
        # A collection goes when its last document does (MB6).
        self._collections = {}
        # sub -> collection -> {id: None}: what each subscription holds, in order.
        self._held = {}

    def strategy(self, collection):
        """The publication strategy of ``collection`` in this box."""
        return self._strategies.get(collection, SERVER_MERGE)

    def holds(self, sub, collection, doc_id):
        """Whether subscription ``sub`` currently publishes ``doc_id`` in ``collection``."""
        return doc_id in self._held.get(sub, {}).get(collection, ())

    def documents_of(self, sub):
        """Iterate over the ``(collection, id)`` pairs ``sub`` publishes: collection by
        collection, in the order each first got one, and oldest first within each."""
        held = self._held.get(sub, {})
        return iter([(collection, doc_id) for collection, ids in held.items() for doc_id in ids])

    def added(self, sub, collection, doc_id, fields):
        """``sub`` publishes a document it did not have (MB2).

        ``added`` for a new document, else a ``changed`` with the fields nobody set yet.
        ``_id`` in ``fields`` is ignored (D4). Under ``NO_MERGE`` it is always an
        ``added``; under ``NO_MERGE_MULTI``, a ``changed`` with all of ``fields``.
        """
        if self.holds(sub, collection, doc_id):
            raise ProtocolError(f"{sub!r} already publishes {collection!r} {doc_id!r}")
        self._held.setdefault(sub, {}).setdefault(collection, {})[doc_id] = None
        own = {key: value for key, value in fields.items() if key != "_id"}
        strategy = self.strategy(collection)
        if strategy == NO_MERGE:
            return [Added(collection, doc_id, own)]
        documents = self._collections.setdefault(collection, {})
        doc = documents.get(doc_id)
        if doc is None:
            documents[doc_id] = 1 if strategy == NO_MERGE_MULTI else dict(own)
            return [Added(collection, doc_id, own)]
        if strategy == NO_MERGE_MULTI:
            documents[doc_id] = doc + 1
            return _changed(collection, doc_id, own)
        if type(doc) is dict:
            doc = documents[doc_id] = _Shared.of(self._owner(collection, doc_id, sub), doc)
        collector = {}
        doc.join(sub, own, collector)
        return _changed(collection, doc_id, collector)

    def changed(self, sub, collection, doc_id, fields, cleared=()):
        """``sub`` sets ``fields`` and stops publishing the ``cleared`` fields (MB3).

        Returns the one ``changed`` this makes visible to the client, if any. Without a
        merge (``NO_MERGE``, ``NO_MERGE_MULTI``) that is ``fields`` and ``cleared`` as given.
        """
        if not self.holds(sub, collection, doc_id):
            raise ProtocolError(f"{sub!r} does not publish {collection!r} {doc_id!r}")
        both = set(fields).intersection(cleared)
        if both:
            raise ProtocolError(f"fields both set and cleared: {sorted(both)!r}")
        if self.strategy(collection) != SERVER_MERGE:
            collector = {key: value for key, value in fields.items() if key != "_id"}
            collector.update((key, _CLEARED) for key in cleared if key != "_id")
            return _changed(collection, doc_id, collector)
        doc = self._collections[collection][doc_id]
        collector = {}
        if type(doc) is dict:  # ``sub`` holds it, so it is the owner
            for key, value in fields.items():
                if key != "_id":
                    _set_owned(doc, key, value, collector)
            for key in cleared:
                _clear_owned(doc, key, collector)
            return _changed(collection, doc_id, collector)
        for key, value in fields.items():
            if key != "_id":
                doc.set_field(sub, key, value, collector)
        for key in cleared:
            doc.clear_field(sub, key, collector)
        return _changed(collection, doc_id, collector)

    def removed(self, sub, collection, doc_id):
        """``sub`` stops publishing a document (MB4).

        ``removed`` when no other subscription has it, else a ``changed`` for the
        fields that were ``sub``'s alone or that ``sub`` showed. Under ``NO_MERGE`` it is
        always a ``removed``; under ``NO_MERGE_MULTI``, a ``removed`` when the last
        subscription lets go and nothing before.
        """
        if not self.holds(sub, collection, doc_id):
            raise ProtocolError(f"{sub!r} does not publish {collection!r} {doc_id!r}")
        held = self._held[sub]
        ids = held[collection]
        del ids[doc_id]
        if not ids:
            del held[collection]
            if not held:
                del self._held[sub]
        strategy = self.strategy(collection)
        if strategy == NO_MERGE:
            return [Removed(collection, doc_id)]
        documents = self._collections[collection]
        doc = documents[doc_id]
        collector = {}
        if strategy == NO_MERGE_MULTI:
            if doc > 1:
                documents[doc_id] = doc - 1
                return []
        elif type(doc) is _Shared:
            doc.subs.discard(sub)
            for key in list(doc.fields):
                doc.clear_field(sub, key, collector)
            if len(doc.subs) == 1:
                documents[doc_id] = doc.owned()
            return _changed(collection, doc_id, collector)
        del documents[doc_id]
        if not documents:
            del self._collections[collection]
        return [Removed(collection, doc_id)]

    def remove_subscription(self, sub):
        """Withdraw everything ``sub`` publishes, as for an ``unsub`` (S5)."""
        messages = []
        for collection, doc_id in self.documents_of(sub):
            messages += self.removed(sub, collection, doc_id)
        return messages

    def replace(self, sub, documents):
        """Make ``sub`` publish exactly ``documents`` (``{collection: {id: fields}}``).

        Sends the smallest difference: ``removed`` for what ``sub`` no longer has,
        then, in the order of ``documents``, ``added`` for new documents and
        ``changed`` for changed or dropped fields. Used to re-run a subscription
        without making the client drop and reload what did not change. Without a
        merge, every document ``sub`` still has gets a ``changed`` with all its fields:
        no values are kept to compare with.
        """
        messages = []
        for collection, doc_id in self.documents_of(sub):
            if doc_id not in documents.get(collection, ()):
                messages += self.removed(sub, collection, doc_id)
        for collection, members in documents.items():
            for doc_id, fields in members.items():
                messages += self.put(sub, collection, doc_id, fields)
        return messages

    def put(self, sub, collection, doc_id, fields):
        """Make ``sub`` publish ``doc_id`` with exactly ``fields``, whether it held it or not.

        ``added`` when ``sub`` did not hold the document, else the ``changed`` (values
        that differ, fields ``sub`` no longer sets) the client needs: how a live change
        to a row is applied. Without a merge, that ``changed`` carries every field of
        ``fields`` and clears nothing.
        """
        if not self.holds(sub, collection, doc_id):
            return self.added(sub, collection, doc_id, fields)
        if self.strategy(collection) != SERVER_MERGE:
            return self.changed(sub, collection, doc_id, fields)
        doc = self._collections[collection][doc_id]
        keys = doc if type(doc) is dict else doc.keys_of(sub)
        dropped = [key for key in keys if key not in fields]
        return self.changed(sub, collection, doc_id, fields, dropped)

    def _owner(self, collection, doc_id, other):
        """The one subscription other than ``other`` that holds a document."""
        for sub, held in self._held.items():
            if sub != other and doc_id in held.get(collection, ()):
                return sub
        raise ProtocolError(f"nobody publishes {collection!r} {doc_id!r}")
