"""The merge box (PROTOCOL.md section 7).

The first test replays every vector of Meteor's ``packages/ddp-server/session_view_tests.js``
(devel @ 024061123a49): one collection ``"test"``, subscriptions ``"A"``, ``"B"``, ``"C"``.
Meteor clears a field by passing ``undefined`` as its value; here that is ``cleared=[...]``.
Where Meteor's test accepts two outcomes ("change to canonical value"), the first
subscription keeps precedence here, so the vector takes that branch.
"""

import datetime
import gc
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddp.protocol.errors import ProtocolError
from ddp.protocol.mergebox import USERS, MergeBox, SubscriptionOwner
from ddp.protocol.messages import Added, Changed, Removed
from tests.protocol.strict_client import apply

pytestmark = pytest.mark.quick


def added(sub, doc_id, fields):
    return ("added", sub, "test", doc_id, fields)


def changed(sub, doc_id, fields, cleared=()):
    return ("changed", sub, "test", doc_id, fields, cleared)


def removed(sub, doc_id):
    return ("removed", sub, "test", doc_id)


def a(doc_id, fields):
    return Added("test", doc_id, fields)


def c(doc_id, fields=None, cleared=()):
    return Changed("test", doc_id, fields, cleared)


def r(doc_id):
    return Removed("test", doc_id)


SESSION_VIEW_VECTORS = {
    "exists reveal": [
        (added("A", "A1", {}), [a("A1", {})]),
        (added("B", "A1", {}), []),
        (removed("A", "A1"), []),
        (removed("B", "A1"), [r("A1")]),
    ],
    "added a second field in another sub": [
        (added("A", "A1", {"a": "foo"}), [a("A1", {"a": "foo"})]),
        (added("B", "A1", {"a": "foo", "b": "bar"}), [c("A1", {"b": "bar"})]),
        (removed("A", "A1"), []),
        (removed("B", "A1"), [r("A1")]),
    ],
    "field reveal": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (added("B", "A1", {"foo": "baz"}), []),
        (removed("A", "A1"), [c("A1", {"foo": "baz"})]),
        (removed("B", "A1"), [r("A1")]),
    ],
    "field change": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (changed("A", "A1", {"foo": "baz"}), [c("A1", {"foo": "baz"})]),
        (removed("A", "A1"), [r("A1")]),
    ],
    "field clear": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (changed("A", "A1", {}, ["foo"]), [c("A1", cleared=["foo"])]),
        (removed("A", "A1"), [r("A1")]),
    ],
    "change makes a new field": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (changed("A", "A1", {"baz": "quux"}), [c("A1", {"baz": "quux"})]),
    ],
    "add, remove, add": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (removed("A", "A1"), [r("A1")]),
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
    ],
    "field clear reveal": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (added("B", "A1", {"foo": "baz"}), []),
        (changed("A", "A1", {}, ["foo"]), [c("A1", {"foo": "baz"})]),
        (removed("A", "A1"), []),
        (removed("B", "A1"), [r("A1")]),
    ],
    "change to canonical value produces no change": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (added("B", "A1", {"foo": "baz"}), []),
        (changed("B", "A1", {"foo": "bar"}), []),
        (removed("A", "A1"), []),
        (removed("B", "A1"), [r("A1")]),
    ],
    "new field of canonical value produces no change": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (added("B", "A1", {}), []),
        (changed("B", "A1", {"foo": "bar"}), []),
        (removed("A", "A1"), []),
        (removed("B", "A1"), [r("A1")]),
    ],
    "clear all clears only once": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (added("B", "A1", {"foo": "bar"}), []),
        (added("C", "A1", {"foo": "bar"}), []),
        (changed("A", "A1", {}, ["foo"]), []),
        (changed("B", "A1", {}, ["foo"]), []),
        (changed("C", "A1", {}, ["foo"]), [c("A1", cleared=["foo"])]),
        (removed("A", "A1"), []),
        (removed("B", "A1"), []),
    ],
    "change all changes only once": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (added("B", "A1", {"foo": "bar"}), []),
        (added("C", "A1", {"foo": "bar"}), []),
        (changed("B", "A1", {"foo": "baz"}), []),
        (changed("A", "A1", {"foo": "baz"}), [c("A1", {"foo": "baz"})]),
        (changed("C", "A1", {"foo": "baz"}), []),
        (removed("A", "A1"), []),
        (removed("B", "A1"), []),
    ],
    "multiple operations at once in a change": [
        (
            added("A", "A1", {"foo": "bar", "baz": "quux"}),
            [a("A1", {"foo": "bar", "baz": "quux"})],
        ),
        (added("B", "A1", {"foo": "baz"}), []),
        (
            changed("A", "A1", {"thing": "stuff"}, ["foo", "baz"]),
            [c("A1", {"foo": "baz", "thing": "stuff"}, ["baz"])],
        ),
        (removed("A", "A1"), [c("A1", cleared=["thing"])]),
        (removed("B", "A1"), [r("A1")]),
    ],
    "more than one document": [
        (
            added("A", "A1", {"foo": "bar", "baz": "quux"}),
            [a("A1", {"foo": "bar", "baz": "quux"})],
        ),
        (added("A", "A2", {"foo": "baz"}), [a("A2", {"foo": "baz"})]),
        (
            changed("A", "A1", {"thing": "stuff"}, ["foo", "baz"]),
            [c("A1", {"thing": "stuff"}, ["foo", "baz"])],
        ),
        (removed("A", "A1"), [r("A1")]),
        (removed("A", "A2"), [r("A2")]),
    ],
    "multiple docs removed": [
        (
            added("A", "A1", {"foo": "bar", "baz": "quux"}),
            [a("A1", {"foo": "bar", "baz": "quux"})],
        ),
        (added("A", "A2", {"foo": "baz"}), [a("A2", {"foo": "baz"})]),
        (removed("A", "A1"), [r("A1")]),
        (removed("A", "A2"), [r("A2")]),
    ],
    "complicated sequence": [
        (
            added("A", "A1", {"foo": "bar", "baz": "quux"}),
            [a("A1", {"foo": "bar", "baz": "quux"})],
        ),
        (added("A", "A2", {"foo": "eats"}), [a("A2", {"foo": "eats"})]),
        (added("B", "A1", {"foo": "baz"}), []),
        (
            changed("A", "A1", {"thing": "stuff"}, ["foo", "baz"]),
            [c("A1", {"foo": "baz", "thing": "stuff"}, ["baz"])],
        ),
        (removed("A", "A1"), [c("A1", cleared=["thing"])]),
        (removed("A", "A2"), [r("A2")]),
        (removed("B", "A1"), [r("A1")]),
    ],
    "added becomes changed": [
        (added("A", "A1", {"foo": "bar"}), [a("A1", {"foo": "bar"})]),
        (added("B", "A1", {"hi": "there"}), [c("A1", {"hi": "there"})]),
        (removed("A", "A1"), [c("A1", cleared=["foo"])]),
        (removed("B", "A1"), [r("A1")]),
    ],
    "weird key names": [
        (added("A", "A1", {}), [a("A1", {})]),
        (changed("A", "A1", {"constructor": "bla"}), [c("A1", {"constructor": "bla"})]),
        (changed("A", "A1", {"__proto__": 1}), [c("A1", {"__proto__": 1})]),
        (changed("A", "A1", {"__class__": 2}), [c("A1", {"__class__": 2})]),
    ],
    "clear undefined value": [
        (added("A", "A1", {"field": "value"}), [a("A1", {"field": "value"})]),
        (changed("A", "A1", {}, ["field"]), [c("A1", cleared=["field"])]),
        (changed("A", "A1", {}, ["field"]), []),
    ],
}


def run(box, steps):
    for (method, *args), expected in steps:
        assert getattr(box, method)(*args) == expected, (method, args)


@pytest.mark.parametrize(
    "steps", list(SESSION_VIEW_VECTORS.values()), ids=list(SESSION_VIEW_VECTORS)
)
def test_meteor_session_view_vectors(steps):
    run(MergeBox(), steps)


@pytest.mark.parametrize(
    "steps",
    [
        # MB5: changing a field to the value the client already has sends nothing.
        [
            (added("A", "x", {"n": 1, "d": {"a": [1]}}), [a("x", {"n": 1, "d": {"a": [1]}})]),
            (changed("A", "x", {"n": 1, "d": {"a": [1]}}), []),
            (changed("A", "x", {"n": 1.0, "d": {"a": (1,)}}), []),
        ],
        # NaN equals NaN under EJSON equality.
        [
            (added("A", "x", {"f": math.nan}), [a("x", {"f": math.nan})]),
            (changed("A", "x", {"f": float("nan")}), []),
        ],
        # true is not 1, even though Python says True == 1.
        [
            (added("A", "x", {"f": 1}), [a("x", {"f": 1})]),
            (changed("A", "x", {"f": True}), [c("x", {"f": True})]),
            (changed("A", "x", {"f": 1}), [c("x", {"f": 1})]),
        ],
        # Equal on the wire is equal: key order in objects does not matter.
        [
            (added("A", "x", {"o": {"a": 1, "b": 2}}), [a("x", {"o": {"a": 1, "b": 2}})]),
            (changed("A", "x", {"o": {"b": 2, "a": 1}}), []),
            (changed("A", "x", {"o": {"b": 2}}), [c("x", {"o": {"b": 2}})]),
        ],
        [
            (
                added("A", "x", {"t": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)}),
                [a("x", {"t": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)})],
            ),
            (
                changed(
                    "A", "x", {"t": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)}
                ),
                [],
            ),
            (changed("A", "x", {"t": None}), [c("x", {"t": None})]),
        ],
        # A reveal of an equal value sends nothing.
        [
            (added("A", "x", {"f": "v"}), [a("x", {"f": "v"})]),
            (added("B", "x", {"f": "v"}), []),
            (removed("A", "x"), []),
            (changed("B", "x", {"f": "w"}), [c("x", {"f": "w"})]),
        ],
        # A lower subscription's change is recorded, then revealed.
        [
            (added("A", "x", {"f": 1}), [a("x", {"f": 1})]),
            (added("B", "x", {"f": 2}), []),
            (changed("B", "x", {"f": 3}), []),
            (changed("A", "x", {}, ["f"]), [c("x", {"f": 3})]),
        ],
        # Clearing a field the subscription never set is harmless.
        [
            (added("A", "x", {"f": 1}), [a("x", {"f": 1})]),
            (added("B", "x", {}), []),
            (changed("B", "x", {}, ["f", "g"]), []),
            (changed("A", "x", {}, ["g"]), []),
        ],
        # D4: _id in fields is ignored.
        [
            (added("A", "x", {"_id": "x", "f": 1}), [a("x", {"f": 1})]),
            (changed("A", "x", {"_id": "y"}), []),
            (changed("A", "x", {}, ["_id"]), []),
            (added("B", "x", {"_id": "x", "g": 2}), [c("x", {"g": 2})]),
        ],
        # Three subscriptions: precedence follows arrival.
        [
            (added("A", "x", {"f": "a"}), [a("x", {"f": "a"})]),
            (added("B", "x", {"f": "b"}), []),
            (added("C", "x", {"f": "c"}), []),
            (removed("B", "x"), []),
            (removed("A", "x"), [c("x", {"f": "c"})]),
            (removed("C", "x"), [r("x")]),
        ],
    ],
)
def test_more_vectors(steps):
    run(MergeBox(), steps)


def test_added_keeps_field_order():
    (message,) = MergeBox().added("A", "c", "x", {"z": 1, "a": 2, "m": 3})
    assert list(message.fields) == ["z", "a", "m"]


def test_collections_are_separate():
    box = MergeBox()
    assert box.added("A", "one", "x", {"f": 1}) == [Added("one", "x", {"f": 1})]
    assert box.added("A", "two", "x", {"f": 2}) == [Added("two", "x", {"f": 2})]
    assert box.removed("A", "one", "x") == [Removed("one", "x")]
    assert box.holds("A", "two", "x")


def test_empty_collection_views_are_dropped():
    # MB6
    box = MergeBox()
    box.added("A", "c", "x", {})
    box.removed("A", "c", "x")
    assert box._collections == {}
    assert box._held == {}


@pytest.mark.parametrize(
    "call",
    [
        lambda box: box.changed("A", "c", "nope", {"f": 1}),
        lambda box: box.removed("A", "c", "nope"),
        # Held by another subscription only.
        lambda box: box.changed("B", "c", "x", {"f": 1}),
        lambda box: box.removed("B", "c", "x"),
        # Held in another collection only.
        lambda box: box.removed("A", "other", "x"),
        # Already held.
        lambda box: box.added("A", "c", "x", {}),
        # Set and cleared at once.
        lambda box: box.changed("A", "c", "x", {"f": 1}, ["f"]),
    ],
)
def test_impossible_requests_raise(call):
    box = MergeBox()
    box.added("A", "c", "x", {"f": 0})
    with pytest.raises(ProtocolError):
        call(box)


def test_holds_and_documents_of():
    box = MergeBox()
    box.added("A", "c", "x", {})
    box.added("A", "d", "y", {})
    box.added("B", "c", "x", {})
    assert box.holds("A", "c", "x")
    assert not box.holds("A", "c", "y")
    assert not box.holds("Z", "c", "x")
    assert list(box.documents_of("A")) == [("c", "x"), ("d", "y")]
    assert list(box.documents_of("B")) == [("c", "x")]
    assert list(box.documents_of("Z")) == []


def test_subscription_handles_are_any_hashable():
    box = MergeBox()
    handle = ("N", "sub-1")
    box.added(handle, "c", "x", {"f": 1})
    box.added(7, "c", "x", {"f": 2})
    assert box.removed(handle, "c", "x") == [Changed("c", "x", {"f": 2})]


def test_the_sessions_owners_are_values_told_apart_by_publishing_order():
    # A subscription's owner is made again from its id where needed; the user's document
    # owner is one of its own. Which value the client sees follows who came first (MB2).
    assert SubscriptionOwner("a") == SubscriptionOwner("a")
    assert len({SubscriptionOwner("a"), SubscriptionOwner("a"), SubscriptionOwner("b")}) == 2
    assert USERS != SubscriptionOwner("users")
    assert repr(SubscriptionOwner("a")) == "SubscriptionOwner(sub_id='a')"
    assert repr(USERS) == "USERS"
    box = MergeBox()
    assert box.added(SubscriptionOwner("a"), "users", "u", {"name": "sub"}) == [
        Added("users", "u", {"name": "sub"})
    ]
    assert box.added(USERS, "users", "u", {"name": "own", "emails": []}) == [
        Changed("users", "u", {"emails": []})
    ]
    assert box.removed(SubscriptionOwner("a"), "users", "u") == [
        Changed("users", "u", {"name": "own"})
    ]
    assert list(box.documents_of(USERS)) == [("users", "u")]
    assert list(box.documents_of(SubscriptionOwner("a"))) == []


def test_remove_subscription():
    # S5: removed for what only this sub had, changed for what it showed.
    box = MergeBox()
    box.added("old", "c", "1", {"f": "old"})
    box.added("old", "c", "2", {"f": "old"})
    box.added("old", "d", "3", {"g": 1})
    box.added("new", "c", "2", {"f": "new", "h": 1})
    assert box.remove_subscription("old") == [
        Removed("c", "1"),
        Changed("c", "2", {"f": "new"}),
        Removed("d", "3"),
    ]
    assert list(box.documents_of("old")) == []
    assert box.remove_subscription("old") == []
    assert box.remove_subscription("never") == []


def test_new_sub_before_old_unsub_removes_nothing_shared():
    # S10: sub(new) then unsub(old): added for new-only docs, no removed for shared ones.
    box = MergeBox()
    assert box.added("old", "c", "1", {"t": "a"}) == [Added("c", "1", {"t": "a"})]
    assert box.added("new", "c", "1", {"t": "a"}) == []
    assert box.added("new", "c", "2", {"t": "b"}) == [Added("c", "2", {"t": "b"})]
    assert box.remove_subscription("old") == []


def test_replace_sends_only_the_difference():
    box = MergeBox()
    box.added("A", "c", "same", {"f": 1})
    box.added("A", "c", "edit", {"f": 1, "g": 2, "h": 3})
    box.added("A", "c", "gone", {"f": 1})
    box.added("A", "d", "gone", {})
    messages = box.replace(
        "A",
        {
            "c": {
                "same": {"f": 1},
                "edit": {"f": 1, "g": 20, "i": 4},
                "new": {"f": 5},
            },
        },
    )
    assert messages == [
        Removed("c", "gone"),
        Removed("d", "gone"),
        Changed("c", "edit", {"g": 20, "i": 4}, ["h"]),
        Added("c", "new", {"f": 5}),
    ]
    assert list(box.documents_of("A")) == [("c", "same"), ("c", "edit"), ("c", "new")]


def test_replace_with_the_same_documents_sends_nothing():
    box = MergeBox()
    documents = {"c": {"x": {"f": 1, "d": {"a": [1, 2]}}}, "e": {"y": {}}}
    for collection, members in documents.items():
        for doc_id, fields in members.items():
            box.added("A", collection, doc_id, fields)
    assert box.replace("A", {"c": {"x": {"f": 1.0, "d": {"a": [1, 2]}}}, "e": {"y": {}}}) == []


def test_replace_with_nothing_is_remove_subscription():
    box = MergeBox()
    box.added("A", "c", "x", {"f": 1})
    box.added("B", "c", "x", {"g": 1})
    box.added("A", "c", "y", {})
    assert box.replace("A", {}) == [Changed("c", "x", cleared=["f"]), Removed("c", "y")]


def test_replace_respects_other_subscriptions():
    box = MergeBox()
    box.added("A", "c", "x", {"f": "a"})
    box.added("B", "c", "x", {"f": "b", "g": "b"})
    # A drops f: B's value is revealed. A now also sets g, but B was first.
    assert box.replace("A", {"c": {"x": {"g": "a"}}}) == [Changed("c", "x", {"f": "b"})]
    assert box.replace("B", {}) == [Changed("c", "x", {"g": "a"}, ["f"])]


def test_replace_for_an_unknown_subscription_adds():
    box = MergeBox()
    assert box.replace("A", {"c": {"x": {"f": 1}}}) == [Added("c", "x", {"f": 1})]


# -- property: a strict client always ends up with the union of the subscriptions --

_SUBS = st.sampled_from("ABC")
_IDS = st.sampled_from(["x", "y"])
_FIELDS = st.dictionaries(st.sampled_from(["f", "g", "h", "_id"]), st.integers(0, 2), max_size=3)
_OPS = st.one_of(
    st.tuples(st.just("added"), _SUBS, _IDS, _FIELDS),
    st.tuples(st.just("changed"), _SUBS, _IDS, _FIELDS, st.sets(st.sampled_from("fgh"))),
    st.tuples(st.just("removed"), _SUBS, _IDS),
    st.tuples(st.just("remove_subscription"), _SUBS),
    st.tuples(st.just("replace"), _SUBS, st.dictionaries(_IDS, _FIELDS, max_size=2)),
)


def _own(fields):
    return {key: value for key, value in fields.items() if key != "_id"}


@given(st.lists(_OPS, max_size=25))
def test_a_strict_client_sees_the_union_of_all_subscriptions(ops):
    box, client, contributions = MergeBox(), {}, {}
    for op, sub, *args in ops:
        held = contributions.setdefault(sub, {})
        if op == "added" and args[0] not in held:
            messages = box.added(sub, "c", args[0], args[1])
            held[args[0]] = _own(args[1])
        elif op == "changed" and args[0] in held:
            cleared = args[2] - set(args[1])
            messages = box.changed(sub, "c", args[0], args[1], cleared)
            held[args[0]].update(_own(args[1]))
            for key in cleared:
                held[args[0]].pop(key, None)
        elif op == "removed" and args[0] in held:
            messages = box.removed(sub, "c", args[0])
            del held[args[0]]
        elif op == "remove_subscription":
            messages = box.remove_subscription(sub)
            held.clear()
        elif op == "replace":
            messages = box.replace(sub, {"c": args[0]} if args[0] else {})
            contributions[sub] = {doc_id: _own(fields) for doc_id, fields in args[0].items()}
        else:
            continue
        for message in messages:
            apply(client, message)
        published = {doc_id for held_by in contributions.values() for doc_id in held_by}
        assert set(client) == published
        for doc_id, fields in client.items():
            offered = [held_by[doc_id] for held_by in contributions.values() if doc_id in held_by]
            assert set(fields) == {key for own in offered for key in own}
            for key, value in fields.items():
                assert value in [own[key] for own in offered if key in own]
        assert all(box.holds(s, "c", d) for s, held_by in contributions.items() for d in held_by)


# -- the compact form of a document only one subscription publishes --


def _document(box, doc_id, collection="c"):
    return box._collections[collection][doc_id]


def test_a_document_of_one_subscription_keeps_a_plain_dict_the_gc_does_not_track():
    box = MergeBox()
    box.added("A", "c", "x", {"_id": "x", "f": 1, "g": "two", "h": None, "i": 1.5})
    doc = _document(box, "x")
    assert type(doc) is dict
    assert doc == {"f": 1, "g": "two", "h": None, "i": 1.5}
    # Full collections would walk every document of every client: they skip these.
    assert not gc.is_tracked(doc)
    box.changed("A", "c", "x", {"g": "three"})
    assert not gc.is_tracked(_document(box, "x"))


def test_a_second_subscription_shares_the_document_and_the_last_one_keeps_it_compact():
    # S10's new sub before the old unsub: shared for a while, then compact again.
    box = MergeBox()
    box.added("old", "c", "x", {"f": "old", "g": 1})
    box.added("new", "c", "x", {"f": "new", "h": 2})
    doc = _document(box, "x")
    assert doc.subs == {"old", "new"}
    assert doc.fields == {"f": {"old": "old", "new": "new"}, "g": {"old": 1}, "h": {"new": 2}}
    assert box.remove_subscription("old") == [Changed("c", "x", {"f": "new"}, ["g"])]
    assert _document(box, "x") == {"f": "new", "h": 2}
    assert box.holds("new", "c", "x") and not box.holds("old", "c", "x")
    # The compact form goes on as before: changes, clears, the last removal.
    assert box.changed("new", "c", "x", {"f": "new", "i": 3}, ["h"]) == [
        Changed("c", "x", {"i": 3}, ["h"])
    ]
    assert box.put("new", "c", "x", {"f": "newer"}) == [Changed("c", "x", {"f": "newer"}, ["i"])]
    assert box.removed("new", "c", "x") == [Removed("c", "x")]
    assert box._collections == {}


def test_the_box_does_not_alias_the_fields_it_is_given():
    box = MergeBox()
    fields = {"f": 1}
    (message,) = box.added("A", "c", "x", fields)
    box.changed("A", "c", "x", {"f": 2})
    assert fields == {"f": 1}
    assert message.fields == {"f": 1}
