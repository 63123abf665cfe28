"""Publication strategies per collection (``Collection.strategy``, PROTOCOL.md MB7).

Through the session: the initial send, live changes from the bus, unsub, the login and
logout re-run (MB8) and the listener's resync, in process and on a real ``ddpserver``.
The test app publishes books to ``nomerge.book`` (``NO_MERGE``) and ``nomergemulti.book``
(``NO_MERGE_MULTI``) from ``BooksNoMerge`` and ``BooksNoMergeMulti``, by title prefix.
"""

import pytest

from bookstore.models import Author, Book
from ddp.api import API, Collection, Registry
from ddp.protocol import NO_MERGE, NO_MERGE_MULTI, SERVER_MERGE, SubscriptionOwner
from tests.live import SIGNALS

IDS = "nomerge.book"
MULTI = "nomergemulti.book"


def message(kind, collection, book, **fields):
    sent = {"msg": kind, "collection": collection, "id": str(book.pk)}
    if kind != "removed":
        sent["fields"] = fields
    return sent


def whole(collection, book, kind="changed"):
    """The message carrying every published field of ``book``: what a box without
    values sends for any change."""
    return message(kind, collection, book, title=book.title, author_id=str(book.author_id))


@pytest.fixture(scope="module")
def ddp_live_server(start_server):
    """The plugin's, capturing through signals. ``NO_MERGE`` sends every event as it
    comes; with database capture a write committed just before a subscription's initial
    query may be announced after it, as one more ``changed`` of what the client holds,
    which the exact messages of test_no_merge_on_a_live_server would count."""
    return start_server(ddp=SIGNALS)


@pytest.fixture
def author(db):
    return Author.objects.create(name="Lee", email="lee@child.com")


# -- configuration ---------------------------------------------------------------------


def test_collections_declare_their_strategy():
    assert Collection.strategy == SERVER_MERGE
    assert API.strategies[IDS] == NO_MERGE
    assert API.strategies[MULTI] == NO_MERGE_MULTI
    assert "bookstore.book" not in API.strategies

    registry = Registry()

    class Ids(Collection):
        model = Book
        name = "ids"
        strategy = "NO_MERGE"

    registry.register(Ids)
    assert registry.strategies == {"ids": NO_MERGE}

    class Merged(Ids):
        strategy = SERVER_MERGE

    registry.register(Merged)
    assert registry.strategies == {}


def test_an_unknown_strategy_is_refused_where_it_is_declared():
    with pytest.raises(
        ValueError, match=r"Books.strategy is 'no_merge', not one of 'SERVER_MERGE'"
    ):

        class Books(Collection):
            model = Book
            strategy = "no_merge"


def test_no_merge_no_history_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="NO_MERGE_NO_HISTORY is not supported.*use NO_MERGE"):

        class Books(Collection):
            model = Book
            strategy = "NO_MERGE_NO_HISTORY"


# -- NO_MERGE, in process ----------------------------------------------------------------


def test_no_merge_initial_send_live_changes_and_unsub(ddp_client, author):
    first = Book.objects.create(title="alpha-1", author=author)
    other = Book.objects.create(title="beta-1", author=author)
    sub_id = ddp_client.subscribe("BooksNoMerge", "alpha")
    ddp_client.assert_messages([whole(IDS, first, "added")])
    box = ddp_client.session.box
    # The connection remembers the id it sent, and nothing else.
    assert box._collections == {}
    assert box._held == {SubscriptionOwner(sub_id): {IDS: {str(first.pk): None}}}

    book = Book.objects.create(title="alpha-2", author=author)
    ddp_client.assert_messages([whole(IDS, book, "added")])
    book.title = "alpha-2b"
    book.save()
    # Every field: no values are kept to tell which one changed.
    ddp_client.assert_messages([whole(IDS, book)])
    book.title = "beta-2"  # leaves the subscription's query
    book.save()
    ddp_client.assert_messages([message("removed", IDS, book)])
    other.title = "alpha-3"  # enters it
    other.save()
    ddp_client.assert_messages([whole(IDS, other, "added")])
    other_id = str(other.pk)
    other.delete()
    ddp_client.assert_messages([{"msg": "removed", "collection": IDS, "id": other_id}])

    ddp_client.unsubscribe(sub_id)
    ddp_client.assert_messages([message("removed", IDS, first)])
    assert box._held == {}
    # The subscription is gone: its rows changing sends nothing.
    first.title = "alpha-1b"
    first.save()
    ddp_client.assert_no_messages()


def test_no_merge_logout_rerun_sends_every_document_again_not_removed(ddp_client, author):
    # MB8: Meteor re-runs every subscription when the user changes, here on logout.
    kept = Book.objects.create(title="alpha-kept", author=author)
    sub_id = ddp_client.subscribe("BooksNoMerge", "alpha")
    ddp_client.assert_messages([whole(IDS, kept, "added")])
    ddp_client.call("logout")
    ddp_client.assert_messages([whole(IDS, kept), {"msg": "ready", "subs": [sub_id]}])
    assert ddp_client.collection(IDS) == {
        str(kept.pk): {"title": kept.title, "author_id": str(author.pk)}
    }


def test_no_merge_resync_after_a_lost_listener_converges(ddp_client, author):
    kept = Book.objects.create(title="alpha-kept", author=author)
    left = Book.objects.create(title="alpha-left", author=author)
    sub_id = ddp_client.subscribe("BooksNoMerge", "alpha")
    ddp_client.assert_messages([whole(IDS, kept, "added"), whole(IDS, left, "added")])
    # Changes the bus never carried (no signals), as while the listener was away.
    Book.objects.filter(pk=left.pk).update(title="beta-left")
    (missed,) = Book.objects.bulk_create([Book(title="alpha-missed", author=author)])
    ddp_client.session.push_resync()
    ddp_client.assert_messages(
        [message("removed", IDS, left), whole(IDS, kept), whole(IDS, missed, "added")]
    )
    box = ddp_client.session.box
    held = {IDS: {str(kept.pk): None, str(missed.pk): None}}
    assert box._held == {SubscriptionOwner(sub_id): held}
    assert box._collections == {}


# -- NO_MERGE_MULTI, in process ----------------------------------------------------------


def test_no_merge_multi_overlapping_subscriptions(ddp_client, author):
    book = Book.objects.create(title="alpha-1", author=author)
    narrow = ddp_client.subscribe("BooksNoMergeMulti", "alpha")
    ddp_client.assert_messages([whole(MULTI, book, "added")])
    wide = ddp_client.subscribe("BooksNoMergeMulti", "al")
    # The second subscription's fields go as they are; no second added.
    ddp_client.assert_messages([whole(MULTI, book)])
    assert ddp_client.session.box._collections == {MULTI: {str(book.pk): 2}}

    book.title = "alpha-1b"
    book.save()
    # Both subscriptions hold it; the client gets the new row once.
    ddp_client.assert_messages([whole(MULTI, book)])
    book.title = "alx"  # leaves the narrow subscription, stays in the wide one
    book.save()
    ddp_client.assert_messages([whole(MULTI, book)])
    assert ddp_client.session.box._collections == {MULTI: {str(book.pk): 1}}

    ddp_client.unsubscribe(narrow)
    ddp_client.assert_no_messages()
    ddp_client.unsubscribe(wide)
    ddp_client.assert_messages([message("removed", MULTI, book)])
    assert ddp_client.session.box._collections == {}


def test_no_merge_multi_deletes_once_and_unsubs_quietly(ddp_client, author):
    book = Book.objects.create(title="alpha-1", author=author)
    kept = Book.objects.create(title="alpha-2", author=author)
    first = ddp_client.subscribe("BooksNoMergeMulti", "alpha")
    second = ddp_client.subscribe("BooksNoMergeMulti", "alpha-")
    ddp_client.assert_messages(
        [whole(MULTI, book, "added"), whole(MULTI, kept, "added")]
        + [whole(MULTI, book), whole(MULTI, kept)]
    )
    book_id = str(book.pk)
    book.delete()
    ddp_client.assert_messages([{"msg": "removed", "collection": MULTI, "id": book_id}])
    ddp_client.unsubscribe(first)
    ddp_client.assert_no_messages()
    ddp_client.unsubscribe(second)
    ddp_client.assert_messages([message("removed", MULTI, kept)])


# -- on a real ddpserver, through NOTIFY ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_merge_on_a_live_server(ddp_live_client):
    author = Author.objects.create(name="Lee", email="lee@child.com")
    first = Book.objects.create(title="live-1", author=author)
    sub_id = ddp_live_client.subscribe("BooksNoMerge", "live")
    ddp_live_client.assert_added(IDS, str(first.pk), title="live-1")

    book = Book.objects.create(title="live-2", author=author)
    ddp_live_client.assert_added(IDS, str(book.pk), title="live-2")
    book.title = "live-2b"
    book.save()
    ddp_live_client.assert_changed(
        IDS, str(book.pk), fields={"title": "live-2b", "author_id": str(author.pk)}
    )
    book.title = "dead-2"
    book.save()
    ddp_live_client.assert_removed(IDS, str(book.pk))
    ddp_live_client.unsubscribe(sub_id)
    ddp_live_client.assert_removed(IDS, str(first.pk))
    ddp_live_client.assert_no_messages()
