"""MeteorIdField: the ids a Meteor stub gives inserts inside a seeded method (R8).

The expected ids were printed by Meteor's own ``packages/ddp-common/random_stream.js``
(see tests/protocol/test_random.py): ``new RandomStream({seed: SEED})
._sequence('/collection/testapp.note').id()``, called twice.
"""

import pytest
from django.db import connection
from django.forms import modelform_factory
from django.test.utils import CaptureQueriesContext

from ddp.api import API, Collection, Registry
from ddp.fields import MeteorIdField
from ddp.protocol.ids import UNMISTAKABLE_CHARS
from ddp.protocol.random import RandomStream
from ddp.randomness import method_random, next_id
from ddp.testing.client import DDPClient
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db

SEED = "0123456789abcdef0123"
STUB_IDS = ["kbbp9wwccBCjrRswF", "oY3uT2wpaPTfPK6He"]


def is_random_id(value):
    return len(value) == 17 and set(value) <= set(UNMISTAKABLE_CHARS)


def test_inside_a_seeded_method_ids_are_the_stubs():
    with method_random(SEED):
        first = Note.objects.create(text="a")
        second = Note(text="b")
        second.save()
    assert [first.pk, second.pk] == STUB_IDS
    assert list(Note.objects.order_by("text").values_list("pk", flat=True)) == STUB_IDS


def test_a_method_call_with_a_random_seed_inserts_the_stubs_ids():
    registry = Registry()

    @registry.method("notes.add")
    def add(this, text):
        return [Note.objects.create(text=text).pk for _ in range(2)]

    client = DDPClient(registry=registry)
    for call_id, seed in (("1", SEED), ("2", None)):
        message = {"msg": "method", "id": call_id, "method": "notes.add", "params": ["a"]}
        if seed is not None:
            message["randomSeed"] = seed
        client.send(message)
    results = {m["id"]: m["result"] for m in client.messages if m.get("msg") == "result"}
    assert results["1"] == STUB_IDS
    assert all(is_random_id(i) and i not in STUB_IDS for i in results["2"])


def test_bulk_create_draws_in_order():
    with method_random(SEED):
        notes = Note.objects.bulk_create([Note(text="a"), Note(text="b")])
    assert [note.pk for note in notes] == STUB_IDS


def test_one_insert_and_no_update_of_an_empty_id():
    note = Note(text="a")
    assert note.pk is None
    with CaptureQueriesContext(connection) as queries:
        note.save()
    assert len(queries) == 1
    assert queries[0]["sql"].startswith("INSERT")


def test_a_given_id_is_kept_and_draws_nothing():
    with method_random(SEED):
        given = Note.objects.create(id="given", text="a")
        drawn = Note.objects.create(text="b")
    assert given.pk == "given"
    assert drawn.pk == STUB_IDS[0]


def test_an_empty_id_is_filled_too():
    with method_random(SEED):
        note = Note.objects.create(id="", text="a")
    assert note.pk == STUB_IDS[0]


def test_a_model_form_leaves_the_id_to_the_model():
    form = modelform_factory(Note, fields=["id", "text"])({"text": "a"})
    assert form.is_valid(), form.errors
    with method_random(SEED):
        note = form.save()
    assert note.pk == STUB_IDS[0]


def test_saving_again_keeps_the_id():
    with method_random(SEED):
        note = Note.objects.create(text="a")
        note.text = "b"
        note.save()
        Note.objects.create(text="c")
    assert Note.objects.get(text="b").pk == STUB_IDS[0]
    assert Note.objects.get(text="c").pk == STUB_IDS[1]


def test_outside_a_method_ids_are_secure_random():
    ids = [Note.objects.create(text=str(n)).pk for n in range(20)]
    assert all(is_random_id(i) for i in ids)
    assert len(set(ids)) == 20
    assert STUB_IDS[0] not in ids


@pytest.mark.parametrize("seed", [None, ""])
def test_a_call_without_seed_never_draws_from_an_enclosing_stream(seed):
    with method_random(SEED):
        with method_random(seed) as stream:
            assert stream is None
            inner = Note.objects.create(text="a").pk
        outer = Note.objects.create(text="b").pk
    assert is_random_id(inner)
    assert inner not in STUB_IDS
    assert outer == STUB_IDS[0]


def test_the_stream_ends_with_the_block_even_on_error():
    with pytest.raises(RuntimeError), method_random(SEED):
        raise RuntimeError
    assert next_id("testapp.note") != STUB_IDS[0]


def test_the_registered_collection_name_wins(monkeypatch):
    class Notes(Collection):
        model = Note
        name = "notes"

    monkeypatch.setitem(API.collections, "notes", Notes)
    with method_random(SEED):
        note = Note.objects.create(text="a")
    assert note.pk == RandomStream(SEED).collection_id("notes")


def test_unsaved_instance_passes_full_clean():
    Note(text="a").full_clean()


def test_deconstruct_leaves_out_its_own_defaults():
    _, path, args, kwargs = MeteorIdField(primary_key=True).deconstruct()
    assert (path, args, kwargs) == ("ddp.fields.MeteorIdField", [], {"primary_key": True})
    _, _, _, kwargs = MeteorIdField(max_length=20, blank=False).deconstruct()
    assert kwargs == {"max_length": 20, "blank": False}
    assert Note._meta.pk.max_length == 17
