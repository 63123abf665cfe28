"""The merge box's publication strategies per collection (PROTOCOL.md MB7).

``NO_MERGE`` keeps the ids each subscription sent; ``NO_MERGE_MULTI`` keeps the ids and
how many subscriptions publish each. Neither keeps a field value.
"""

import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddp.protocol import NO_MERGE, NO_MERGE_MULTI, PUBLICATION_STRATEGIES, SERVER_MERGE
from ddp.protocol.errors import ProtocolError
from ddp.protocol.mergebox import MergeBox, SubscriptionOwner
from ddp.protocol.messages import Added, Changed, Removed
from tests.protocol.strict_client import apply

pytestmark = pytest.mark.quick


def box_for(strategy):
    return MergeBox({"c": strategy})


def reachable(root):
    """Every object reachable from ``root`` through references (the box's whole state)."""
    seen, stack = {}, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen[id(obj)] = obj
        stack.extend(gc.get_referents(obj))
    return seen


def test_the_strategies():
    assert PUBLICATION_STRATEGIES == ("SERVER_MERGE", "NO_MERGE_MULTI", "NO_MERGE")
    box = MergeBox({"ids": NO_MERGE})
    assert box.strategy("ids") == NO_MERGE
    assert box.strategy("other") == SERVER_MERGE


# -- NO_MERGE --------------------------------------------------------------------------


def test_no_merge_passes_every_message_through():
    box = box_for(NO_MERGE)
    assert box.added("A", "c", "x", {"_id": "x", "f": 1, "g": 2}) == [
        Added("c", "x", {"f": 1, "g": 2})
    ]
    # No values are kept: setting the value the client has is sent all the same.
    assert box.changed("A", "c", "x", {"f": 1}) == [Changed("c", "x", {"f": 1})]
    assert box.changed("A", "c", "x", {"_id": "y", "f": 3}, ["g"]) == [
        Changed("c", "x", {"f": 3}, ["g"])
    ]
    assert box.changed("A", "c", "x", {}, ["_id"]) == []
    assert box.changed("A", "c", "x", {}) == []
    assert box.removed("A", "c", "x") == [Removed("c", "x")]
    assert box._collections == {} and box._held == {}


def test_no_merge_put_tells_added_from_changed_by_the_ids_sent():
    # How a live change is applied: a whole row, for a subscription that may hold it.
    box = box_for(NO_MERGE)
    assert box.put("A", "c", "x", {"f": 1, "g": 2}) == [Added("c", "x", {"f": 1, "g": 2})]
    assert box.holds("A", "c", "x")
    # Every field goes, even unchanged ones, and nothing is cleared: nothing to diff with.
    assert box.put("A", "c", "x", {"f": 1, "g": 3}) == [Changed("c", "x", {"f": 1, "g": 3})]
    assert box.put("A", "c", "x", {"f": 1}) == [Changed("c", "x", {"f": 1})]
    assert box.put("A", "c", "x", {}) == []


def test_no_merge_removes_what_a_stopped_subscription_sent():
    box = box_for(NO_MERGE)
    for doc_id in ("x", "y", "z"):
        box.added("A", "c", doc_id, {"f": doc_id})
    box.added("B", "c", "w", {})
    assert box.remove_subscription("A") == [Removed("c", "x"), Removed("c", "y"), Removed("c", "z")]
    assert box.remove_subscription("A") == []
    assert list(box.documents_of("B")) == [("c", "w")]


def test_no_merge_replace_removes_the_gone_and_sends_the_rest_whole():
    # A login re-run (MB8) or a resync: removed for what left, then every document.
    box = box_for(NO_MERGE)
    box.added("A", "c", "same", {"f": 1})
    box.added("A", "c", "gone", {"f": 1})
    assert box.replace("A", {"c": {"same": {"f": 1}, "new": {"f": 2}}}) == [
        Removed("c", "gone"),
        Changed("c", "same", {"f": 1}),
        Added("c", "new", {"f": 2}),
    ]
    assert list(box.documents_of("A")) == [("c", "same"), ("c", "new")]


def test_no_merge_does_not_merge_two_subscriptions():
    # As Meteor's NO_MERGE: for a collection one subscription at a time publishes.
    box = box_for(NO_MERGE)
    assert box.added("A", "c", "x", {"f": 1}) == [Added("c", "x", {"f": 1})]
    assert box.added("B", "c", "x", {"f": 2}) == [Added("c", "x", {"f": 2})]
    assert box.removed("A", "c", "x") == [Removed("c", "x")]
    assert box.holds("B", "c", "x")


def test_no_merge_keeps_only_ids():
    box = box_for(NO_MERGE)
    values = [f"value of {n}" for n in range(50)]
    for n, value in enumerate(values):
        box.added(SubscriptionOwner("1"), "c", str(n), {"title": value, "n": [n]})
        box.put(SubscriptionOwner("1"), "c", str(n), {"title": value, "n": [n]})
    assert box._collections == {}
    assert box._held == {SubscriptionOwner("1"): {"c": dict.fromkeys(map(str, range(50)))}}
    held = reachable(box)
    assert not any(id(value) in held for value in values)


def test_the_structure_check_sees_values_a_merging_box_keeps():
    for strategy in (SERVER_MERGE, NO_MERGE_MULTI):
        box = box_for(strategy)
        value = "a value"
        box.added("A", "c", "x", {"title": value})
        box.added("B", "c", "x", {"title": value})
        assert (id(value) in reachable(box)) is (strategy == SERVER_MERGE)


@pytest.mark.parametrize("strategy", [NO_MERGE, NO_MERGE_MULTI])
@pytest.mark.parametrize(
    "call",
    [
        lambda box: box.changed("A", "c", "nope", {"f": 1}),
        lambda box: box.removed("A", "c", "nope"),
        lambda box: box.changed("B", "c", "x", {"f": 1}),
        lambda box: box.removed("B", "c", "x"),
        lambda box: box.added("A", "c", "x", {}),
        lambda box: box.changed("A", "c", "x", {"f": 1}, ["f"]),
    ],
)
def test_impossible_requests_raise_under_every_strategy(strategy, call):
    box = box_for(strategy)
    box.added("A", "c", "x", {"f": 0})
    with pytest.raises(ProtocolError):
        call(box)


# -- NO_MERGE_MULTI --------------------------------------------------------------------


def test_no_merge_multi_adds_once_and_removes_with_the_last_subscription():
    box = box_for(NO_MERGE_MULTI)
    assert box.added("A", "c", "x", {"f": 1}) == [Added("c", "x", {"f": 1})]
    # A second subscription's fields go as they are, with no precedence.
    assert box.added("B", "c", "x", {"f": 2, "g": 3}) == [Changed("c", "x", {"f": 2, "g": 3})]
    assert box.added("C", "c", "x", {}) == []
    assert box._collections == {"c": {"x": 3}}
    assert box.removed("A", "c", "x") == []
    assert box.remove_subscription("B") == []
    assert box.removed("C", "c", "x") == [Removed("c", "x")]
    assert box._collections == {} and box._held == {}


def test_no_merge_multi_changes_pass_through():
    box = box_for(NO_MERGE_MULTI)
    box.added("A", "c", "x", {"f": 1})
    box.added("B", "c", "x", {"f": 1})
    assert box.put("B", "c", "x", {"f": 1}) == [Changed("c", "x", {"f": 1})]
    assert box.changed("A", "c", "x", {}, ["f"]) == [Changed("c", "x", cleared=["f"])]


def test_no_merge_multi_resubscription_removes_nothing_shared():
    # S10: the new sub before the old unsub.
    box = box_for(NO_MERGE_MULTI)
    box.added("old", "c", "1", {"t": "a"})
    box.added("old", "c", "2", {"t": "b"})
    assert box.added("new", "c", "1", {"t": "a"}) == [Changed("c", "1", {"t": "a"})]
    assert box.remove_subscription("old") == [Removed("c", "2")]
    assert list(box.documents_of("new")) == [("c", "1")]


def test_strategies_are_per_collection():
    box = MergeBox({"ids": NO_MERGE, "multi": NO_MERGE_MULTI})
    for collection in ("ids", "multi", "merged"):
        box.added("A", collection, "x", {"f": 1})
        box.added("B", collection, "x", {"f": 1})
    assert box.changed("A", "ids", "x", {"f": 1}) == [Changed("ids", "x", {"f": 1})]
    assert box.changed("A", "multi", "x", {"f": 1}) == [Changed("multi", "x", {"f": 1})]
    assert box.changed("A", "merged", "x", {"f": 1}) == []
    assert box.remove_subscription("A") == [Removed("ids", "x")]
    assert sorted(box._collections) == ["merged", "multi"]


# -- property: a strict client (D7) stays consistent, and holds the union of the ids --

_SUBS = st.sampled_from("ABC")
_IDS = st.sampled_from(["x", "y", "z"])
_FIELDS = st.dictionaries(st.sampled_from(["f", "g", "_id"]), st.integers(0, 2), max_size=2)
_OPS = st.one_of(
    st.tuples(st.just("put"), _SUBS, _IDS, _FIELDS),
    st.tuples(st.just("removed"), _SUBS, _IDS),
    st.tuples(st.just("remove_subscription"), _SUBS),
    st.tuples(st.just("replace"), _SUBS, st.dictionaries(_IDS, _FIELDS, max_size=2)),
)


def _run(strategy, ops, exclusive):
    """Apply ``ops``; with ``exclusive``, skip those that would make two subscriptions
    hold one document (NO_MERGE is for collections one subscription publishes)."""
    box, client, held = box_for(strategy), {}, {}
    for op, sub, *args in ops:
        mine = held.setdefault(sub, {})
        others = {doc_id for s, ids in held.items() if s != sub for doc_id in ids}
        if op == "put" and not (exclusive and args[0] in others):
            messages = box.put(sub, "c", args[0], args[1])
            mine[args[0]] = {k: v for k, v in args[1].items() if k != "_id"}
        elif op == "removed" and args[0] in mine:
            messages = box.removed(sub, "c", args[0])
            del mine[args[0]]
        elif op == "remove_subscription":
            messages = box.remove_subscription(sub)
            mine.clear()
        elif op == "replace" and not (exclusive and others & set(args[0])):
            messages = box.replace(sub, {"c": args[0]} if args[0] else {})
            held[sub] = {d: {k: v for k, v in f.items() if k != "_id"} for d, f in args[0].items()}
        else:
            continue
        for message in messages:
            apply(client, message)
        assert set(client) == {doc_id for ids in held.values() for doc_id in ids}
        if exclusive:
            for ids in held.values():
                for doc_id, fields in ids.items():
                    # The one publisher's latest fields are on the client.
                    assert fields.items() <= client[doc_id].items()
    assert box._collections.get("c", {}).keys() <= set(client)


@given(st.lists(_OPS, max_size=30))
def test_no_merge_multi_keeps_a_strict_client_consistent(ops):
    _run(NO_MERGE_MULTI, ops, exclusive=False)


@given(st.lists(_OPS, max_size=30))
def test_no_merge_keeps_a_strict_client_consistent_when_one_subscription_publishes(ops):
    _run(NO_MERGE, ops, exclusive=True)
