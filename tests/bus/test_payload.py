"""Change events as NOTIFY payloads: versioned, unique, chunked under 8000 bytes."""

import datetime

import pytest

from ddp.bus.payload import MAX_PAYLOAD, Event, Reassembler, decode, encode

pytestmark = pytest.mark.quick


def event(fields=None, **overrides):
    base = dict(collection="bookstore.book", id="1", fields=fields, subs=frozenset({"k"}))
    return Event(**{**base, "registry": 3, **overrides})


def test_round_trip_with_ejson_fields():
    when = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    [text] = encode(event({"title": "T", "at": when, "raw": b"\x00"}))
    got = decode(text)
    assert (got.collection, got.id, got.subs, got.registry) == ("bookstore.book", "1", {"k"}, 3)
    assert got.fields == {"title": "T", "at": when, "raw": b"\x00"}


def test_deleted_document_has_no_fields():
    assert decode(encode(event(None))[0]).fields is None


def test_equal_changes_get_distinct_payloads():
    # PostgreSQL folds identical notifications of one transaction into one.
    assert encode(event({"a": 1})) != encode(event({"a": 1}))


def test_a_megabyte_document_is_chunked_and_reassembled():
    body = "é" * (1024 * 1024)
    chunks = encode(event({"body": body}))
    assert len(chunks) > 100
    assert all(len(chunk.encode()) < 8000 for chunk in chunks)
    joiner = Reassembler()
    results = [joiner.feed(chunk, now=0) for chunk in chunks]
    assert results[:-1] == [None] * (len(chunks) - 1)
    assert decode(results[-1]).fields == {"body": body}


def test_small_payload_passes_through():
    [text] = encode(event({"a": 1}))
    assert len(text) <= MAX_PAYLOAD
    assert Reassembler().feed(text, now=0) == text


def test_half_received_chunks_are_dropped_after_the_timeout():
    chunks = encode(event({"body": "x" * 20_000}))
    joiner = Reassembler(timeout=30)
    joiner.feed(chunks[0], now=0)
    assert joiner.expire(now=10) == 0
    assert joiner.expire(now=31) == 1
    # The rest of a dropped set never completes into a wrong event.
    assert [joiner.feed(chunk, now=32) for chunk in chunks[1:]] == [None] * (len(chunks) - 1)


def test_unknown_version_is_refused():
    with pytest.raises(ValueError, match="version"):
        decode('{"v": 99}')


@pytest.mark.parametrize(
    "text",
    [
        '{"v": true, "e": "x", "c": "c", "i": "1", "f": null, "s": [], "r": 1}',
        '{"v": 1, "e": "x", "c": ["a"], "i": "1", "f": null, "s": [], "r": 1}',
        '{"v": 1, "e": "x", "c": "c", "i": 1, "f": null, "s": [], "r": 1}',
        '{"v": 1, "e": "x", "c": "c", "i": "1", "f": [], "s": [], "r": 1}',
        '{"v": 1, "e": "x", "c": "c", "i": "1", "f": null, "s": "key", "r": 1}',
        '{"v": 1, "e": "x", "c": "c", "i": "1", "f": null, "s": [], "r": "9"}',
        '{"v": 1, "c": "c", "i": "1", "f": null, "s": [], "r": 1}',
    ],
)
def test_mistyped_events_are_refused(text):
    with pytest.raises(ValueError):
        decode(text)


@pytest.mark.parametrize("chunk", ["#broken", "#e:x:2:part", "#e:5:2:part", "#e:-1:2:part"])
def test_malformed_chunks_are_refused(chunk):
    with pytest.raises(ValueError):
        Reassembler().feed(chunk, now=0)


def test_chunks_that_disagree_on_their_total_drop_the_set():
    joiner = Reassembler()
    joiner.feed("#e:0:3:a", now=0)
    with pytest.raises(ValueError):
        joiner.feed("#e:1:2:b", now=0)
    assert joiner.expire(now=100) == 0  # nothing left half-received


def test_unsure_subscriptions_travel_and_are_left_out_when_none():
    [text] = encode(event({"a": 1}, unsure=frozenset({"k2", "k3"})))
    got = decode(text)
    assert got.unsure == {"k2", "k3"}
    assert got.is_unsure("k2") and not got.is_unsure("k")
    [plain] = encode(event({"a": 1}))
    assert '"u"' not in plain and decode(plain).unsure == frozenset()


def test_every_subscription_is_unsure_under_the_star():
    got = decode(encode(event({"a": 1}, unsure=frozenset({"*"})))[0])
    assert got.is_unsure("anything")


@pytest.mark.parametrize("unsure", ['"k"', "[1]", "{}", "[null]"])
def test_a_mistyped_unsure_list_is_refused(unsure):
    text = encode(event({"a": 1}))[0][:-1] + f',"u":{unsure}}}'
    with pytest.raises(ValueError):
        decode(text)


@pytest.mark.parametrize("depth", [101, 900, 5000])
def test_fields_nested_too_deep_are_a_bad_payload_not_a_crash(depth):
    """Any role that may NOTIFY can send this; decoding it must fail as ValueError, which
    the listener counts and skips, never as RecursionError, which ended its thread."""
    text = encode(event({"a": 1}))[0].replace('{"a":1}', '{"a":' + "[" * depth + "]" * depth + "}")
    with pytest.raises(ValueError):
        decode(text)


def test_fields_as_deep_as_a_json_column_may_be_decode():
    nested = []
    for _ in range(98):
        nested = [nested]
    assert decode(encode(event({"a": nested}))[0]).fields == {"a": nested}
