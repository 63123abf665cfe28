"""A change goes to the sessions it concerns, not to every session of its collection.

With thousands of distinct subscriptions on one server, handing each change to every
session that listens to the collection cost tens of milliseconds before the one it
concerned got it. These tests pin who must still get it: the sessions the event names,
those holding the document (it may be leaving them), those querying the collection.
"""

import pytest

from bookstore.models import Author, Book
from ddp.bus.audience import Audience
from ddp.bus.payload import Event

# The oldest and newest Python and Django run these too (CI's quick subset).
pytestmark = pytest.mark.quick

BOOKS = "bookstore.book"


def event(doc_id="1", subs=(), unsure=()):
    return Event(BOOKS, doc_id, {"title": "t"}, frozenset(subs), 1, frozenset(unsure))


def handed(audience, event, listening):
    """The sessions ``event`` is handed, each applying it at once."""
    sessions = audience.of(event, listening)
    for session in sessions:
        audience.settled(session, [event.collection])
    return set(sessions)


def test_the_sessions_named_holding_or_querying_get_it_and_no_other():
    audience = Audience()
    named, holder, querying, bystander = "named", "holder", "querying", "bystander"
    listening = dict.fromkeys([named, holder, querying, bystander], 1)
    audience.subscribed(named, "k1")
    audience.subscribed(bystander, "k2")
    audience.hold(holder, BOOKS, "1")
    audience.querying(querying, {BOOKS}, 1)
    assert handed(audience, event(subs={"k1"}), listening) == {named, holder, querying}
    audience.querying(querying, {BOOKS}, -1)
    audience.release(holder, BOOKS, "1")
    assert handed(audience, event(subs={"k1"}), listening) == {named}
    # Unsure keys reach their sessions; "*" reaches every session of the collection.
    assert handed(audience, event(unsure={"k2"}), listening) == {bystander}
    assert handed(audience, event(unsure={"*"}), listening) == set(listening)
    assert not audience._holders and not audience._pending


def test_a_session_handed_a_change_gets_the_next_ones_until_it_applied_it():
    """A worker busy with a method applies changes later: the save that adds a document
    must not outrun the one that moves it away."""
    audience = Audience()
    audience.subscribed("s", "k")
    assert audience.of(event(subs={"k"}), {"s": 1}) == ["s"]
    assert audience.of(event("2", subs={"other"}), {"s": 1}) == ["s"]
    audience.settled("s", [BOOKS])
    assert audience.of(event("3", subs={"other"}), {"s": 1}) == []


def test_a_document_two_subscriptions_sent_stays_held_until_both_removed_it():
    """Under NO_MERGE each subscription sends its own added and removed."""
    audience = Audience()
    audience.hold("s", BOOKS, "1")
    audience.hold("s", BOOKS, "1")
    audience.release("s", BOOKS, "1")
    assert handed(audience, event(), {"s": 1}) == {"s"}
    audience.release("s", BOOKS, "1")
    assert handed(audience, event(), {"s": 1}) == set()


def test_a_session_that_left_is_forgotten_and_nothing_is_kept_for_it():
    audience = Audience()
    audience.subscribed("s", "k")
    audience.hold("s", BOOKS, "1")
    audience.of(event(subs={"k"}), {"s": 1})
    audience.forget("s", [(BOOKS, "1")])
    audience.unsubscribed("s", "k")
    assert handed(audience, event(subs={"k"}), {"s": 1}) == set()
    assert not audience._by_key and not audience._holders and not audience._querying
    assert not audience._pending


@pytest.fixture
def authors(db):
    return [Author.objects.create(name=n, email=f"{n}@example.com") for n in ("ann", "bob", "cy")]


def test_only_the_sessions_a_save_concerns_are_handed_it(ddp_client_factory, authors):
    """Three clients, each on its own author's books: a book moving from ann to bob is
    removed from ann's client and added to bob's; cy's session is never handed it."""
    clients = [ddp_client_factory() for _ in authors]
    handed = {}
    for client, author in zip(clients, authors, strict=True):
        client.subscribe("BooksByAuthorEmail", author.email)
        session = client.session
        handed[author.name] = []

        def push(change, push=session.push_change, name=author.name):
            handed[name].append(change.event.id)
            push(change)

        session.push_change = push
    book = Book.objects.create(title="moving", author=authors[0])
    book.author = authors[1]
    book.save()
    doc = str(book.pk)
    assert doc not in clients[0].collection(BOOKS)
    assert clients[1].collection(BOOKS)[doc]["title"] == "moving"
    assert clients[2].collection(BOOKS) == {}
    # ann's got the save that added it, then the move that removes it; bob's the move.
    assert handed == {"ann": [doc, doc], "bob": [doc], "cy": []}
