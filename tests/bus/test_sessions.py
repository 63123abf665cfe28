"""One session table and one dispatch, for production's bus and the tests' in-memory one."""

import pytest

from ddp.bus.hub import Bus
from ddp.bus.memory import InMemoryBus
from ddp.bus.payload import Event
from ddp.bus.sessions import Dispatch

pytestmark = pytest.mark.quick

BOOKS, AUTHORS = "bookstore.book", "bookstore.author"


class Recording(Dispatch):
    """A bus that writes down what the dispatch asks of it."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.refuse = False

    def _hear(self, collection):
        self.calls.append(("hear", collection))

    def _unhear(self, collection):
        self.calls.append(("unhear", collection))

    def _register(self, key, publication, params, user_id, collections, matches):
        if self.refuse:
            raise RuntimeError("the registry lock stayed held")
        self.calls.append(("register", key, publication, matches))
        return 40 + len(self.calls)

    def _unregister(self, key):
        self.calls.append(("unregister", key))


class Session:
    def __init__(self, name):
        self.name = name
        self.changes = []
        self.revoked = []

    def push_change(self, change):
        self.changes.append(change.event.id)

    def push_revoked(self, token_hash):
        self.revoked.append(token_hash)

    def __repr__(self):
        return self.name


@pytest.mark.parametrize("bus", [Bus, InMemoryBus])
def test_both_buses_run_the_one_dispatch(bus):
    assert issubclass(bus, Dispatch)
    for name in ("subscribe", "unsubscribe", "sessions", "track_token", "revoked"):
        assert getattr(bus, name) is getattr(Dispatch, name), name


def test_a_collection_is_heard_and_a_key_registered_once_for_all_its_sessions():
    bus, one, two = Recording(), Session("one"), Session("two")
    first = bus.subscribe(one, "k", "AllBooks", [], None, [BOOKS, AUTHORS], lambda: "m")
    second = bus.subscribe(two, "k", "AllBooks", [], None, [BOOKS, AUTHORS], lambda: "m")
    assert first == second
    assert bus.calls == [("hear", BOOKS), ("hear", AUTHORS), ("register", "k", "AllBooks", "m")]
    assert bus.sessions() == {one, two}
    bus.unsubscribe(one, "k", [BOOKS, AUTHORS])
    assert len(bus.calls) == 3 and bus.sessions() == {two}
    bus.deliver(Event(BOOKS, "1", {}, frozenset({"k"}), 1))
    assert (one.changes, two.changes) == ([], ["1"])
    bus.unsubscribe(two, "k", [BOOKS, AUTHORS])
    assert bus.calls[3:] == [("unhear", BOOKS), ("unhear", AUTHORS), ("unregister", "k")]
    assert bus.sessions() == set()


def test_a_failed_registration_withdrawn_leaves_another_sessions_registration_alone():
    """A session whose subscription could not register (the registry lock stayed held)
    unsubscribes, as from any failed subscription; meanwhile another session registered
    the same distinct subscription, whose row must stay or writers stop matching it."""
    bus, failed, other = Recording(), Session("failed"), Session("other")
    bus.refuse = True
    with pytest.raises(RuntimeError):
        bus.subscribe(failed, "k", "AllBooks", [], None, [BOOKS])
    bus.refuse = False
    bus.subscribe(other, "k", "AllBooks", [], None, [BOOKS])
    bus.unsubscribe(failed, "k", [BOOKS])
    assert [call[0] for call in bus.calls] == ["hear", "register"]
    bus.deliver(Event(BOOKS, "1", {}, frozenset({"k"}), 1))
    assert (failed.changes, other.changes) == ([], ["1"])
    bus.unsubscribe(other, "k", [BOOKS])
    assert [call[0] for call in bus.calls] == ["hear", "register", "unhear", "unregister"]


def test_a_revoked_token_reaches_the_sessions_riding_on_it_and_no_other():
    bus, one, two = Recording(), Session("one"), Session("two")
    bus.track_token(one, None, "a")
    bus.track_token(two, None, "a")
    bus.track_token(two, "a", "b")
    bus.revoked("a")
    assert (one.revoked, two.revoked) == (["a"], [])
    bus.track_token(one, "a", None)
    # A token nobody rides on any more is not asked about after a resync.
    assert bus.token_hashes() == ["b"]
