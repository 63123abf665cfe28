"""Meteor's seeded ``Random`` and DDP ``RandomStream`` (PROTOCOL.md R8), bit for bit.

Where Meteor's tests publish outputs (``packages/random/random_tests.js``) they are used
as is. The other expected values were printed by Meteor's own
``packages/random/AleaRandomGenerator.js``, ``AbstractRandomGenerator.js`` and
``packages/ddp-common/random_stream.js`` (meteor/meteor commit 024061123a49), run
unchanged in Node 20; 3,000 random seeds and names, non-ASCII and astral ones included,
matched the same way.
"""

import pytest

from ddp.protocol.ids import UNMISTAKABLE_CHARS
from ddp.protocol.random import BASE64_CHARS, Alea, RandomStream, secure

pytestmark = pytest.mark.quick

SEED = "0123456789abcdef0123"


def test_meteor_published_ids_for_seed_zero():
    # packages/random/random_tests.js, test 'random': Random.createWithSeeds(0).id() x4.
    random = Alea(0)
    assert [random.id() for _ in range(4)] == [
        "cp9hWvhg8GSvuZ9os",
        "3f3k6Xo7rrHCifQhR",
        "shxDnjWWmnKPEoLhM",
        "6QTjB8C5SEqhmz4ni",
    ]


def test_fraction_hex_string_and_secret_for_seed_zero():
    random = Alea(0)
    assert [random.fraction() for _ in range(3)] == [
        0.5945264333859086,
        0.8065849216654897,
        0.12979769078083336,
    ]
    assert Alea(0).hex_string(20) == "9c2a7eaa146ee82cd0a0"
    assert Alea(0).secret() == "MZiRE6RQhqB65IiY3bPcVfFYf12rmSPARB3R8nXUFEW"


def test_several_seeds_of_mixed_types():
    # Also django-ddp's dddp/alea.py doctest for the same seeds.
    random = Alea("my", 3, "seeds")
    assert [random.fraction() for _ in range(3)] == [
        0.30802189325913787,
        0.5190450621303171,
        0.43635262292809784,
    ]


def test_seeds_hash_as_javascript_utf16_strings():
    # An astral character is two UTF-16 code units to charCodeAt, one code point to Python.
    assert Alea("😀é").fraction() == 0.46407398022711277


@pytest.mark.parametrize("seed", [True, 1.0, None, b"0"])
def test_seeds_that_would_print_differently_from_javascript_are_refused(seed):
    with pytest.raises(TypeError):
        Alea(seed)


def test_alea_needs_a_seed():
    with pytest.raises(ValueError):
        Alea()


def test_same_seeds_same_sequence():
    first, second = Alea("x", 1), Alea("x", 1)
    assert [first.fraction() for _ in range(100)] == [second.fraction() for _ in range(100)]


def test_collection_ids_come_from_the_collection_sequence():
    # Meteor: new RandomStream({seed})._sequence('/collection/testapp.note').id(), twice.
    stream = RandomStream(SEED)
    assert stream.collection_id("testapp.note") == "kbbp9wwccBCjrRswF"
    assert stream.collection_id("testapp.note") == "oY3uT2wpaPTfPK6He"
    assert stream.collection_id("other") == "g2oivSYCjAveNRKEK"


def test_sequences_are_independent_of_each_other():
    stream = RandomStream(SEED)
    stream.collection_id("other")
    stream.rpc_seed("addNote")
    assert stream.collection_id("testapp.note") == "kbbp9wwccBCjrRswF"


def test_a_sequence_is_seeded_with_the_stream_seed_then_its_name():
    # random_stream_tests.js checks sequence.alea.args == [randomSeed, name].
    stream = RandomStream(SEED)
    assert stream.sequence("1").seeds == (SEED, "1")
    assert stream.sequence("1") is stream.sequence("1")
    assert stream.sequence("/collection/x").id() == Alea(SEED, "/collection/x").id()


def test_nested_call_seeds():
    # Meteor: DDPCommon.makeRpcSeed({randomSeed: SEED}, 'addNote'), twice on one invocation.
    stream = RandomStream(SEED)
    nested = stream.rpc_seed("addNote")
    assert nested == "668c12a52e76364273f9"
    assert stream.rpc_seed("addNote") == "2df7110fee21659f5869"
    # The nested call's stub then inserts with that seed.
    assert RandomStream(nested).collection_id("testapp.note") == "x3qN5TMppoJifDXs8"


def test_a_list_of_seeds_is_used_as_is():
    assert RandomStream([SEED]).collection_id("testapp.note") == "kbbp9wwccBCjrRswF"


@pytest.mark.parametrize("seed", [None, ""])
def test_a_stream_without_a_seed_is_secure_random(seed):
    first, second = RandomStream(seed), RandomStream(seed)
    assert len(first.seeds) == 1
    assert len(first.seeds[0]) == 20
    assert first.collection_id("c") != second.collection_id("c")


def test_secure_formats():
    ids = {secure.id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 17 and set(i) <= set(UNMISTAKABLE_CHARS) for i in ids)
    assert len(secure.id(29)) == 29
    secret = secure.secret()
    assert len(secret) == 43
    assert set(secret) <= set(BASE64_CHARS)
    assert len(secure.secret(13)) == 13
    hex_string = secure.hex_string(9)
    assert len(hex_string) == 9
    int(hex_string, 16)
    assert all(0.0 <= secure.fraction() < 1.0 for _ in range(1000))
    assert secure.choice([7]) == 7
