"""Id escaping (PROTOCOL.md D5) and ``Random.id()`` session ids (C5)."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddp.protocol.ids import UNMISTAKABLE_CHARS, parse_id, random_id, stringify_id

pytestmark = pytest.mark.quick


@pytest.mark.parametrize(
    ("doc_id", "wire"),
    [
        ("", ""),
        ("42", "42"),
        ("abc", "abc"),
        ("cK4s9HqbDTyiMJfXa", "cK4s9HqbDTyiMJfXa"),
        ("12345678-1234-5678-1234-56789abcdef0", "12345678-1234-5678-1234-56789abcdef0"),
        ("-", "--"),
        ("-abc", "--abc"),
        ("~42", "-~42"),
        ("~", "-~"),
        ("{}", "-{}"),
        ('{"a":1}', '-{"a":1}'),
        ("0123456789abcdef01234567", "-0123456789abcdef01234567"),
        # Only 24 *lowercase* hex digits look like an ObjectID.
        ("0123456789ABCDEF01234567", "0123456789ABCDEF01234567"),
        ("0123456789abcdef0123456", "0123456789abcdef0123456"),
        ("0123456789abcdef012345678", "0123456789abcdef012345678"),
        ("a-b", "a-b"),
        ("a~", "a~"),
    ],
)
def test_stringify_id(doc_id, wire):
    assert stringify_id(doc_id) == wire
    assert parse_id(wire) == doc_id


@pytest.mark.parametrize("wire", ["-", "~42", "~true", '~"a"', "0123456789abcdef01234567"])
def test_parse_id_refuses_forms_that_are_not_strings(wire):
    with pytest.raises(ValueError):
        parse_id(wire)


@given(st.text())
def test_parse_id_inverts_stringify_id(doc_id):
    assert parse_id(stringify_id(doc_id)) == doc_id


def test_random_id_is_like_meteors():
    session_id = random_id()
    assert len(session_id) == 17
    assert set(session_id) <= set(UNMISTAKABLE_CHARS)


def test_random_ids_differ():
    assert len({random_id() for _ in range(100)}) == 100


def test_random_id_takes_a_generator():
    assert random_id(random.Random(7)) == random_id(random.Random(7))
    assert set(random_id(random.Random(7))) <= set(UNMISTAKABLE_CHARS)


def test_alphabet_has_no_look_alikes():
    assert len(UNMISTAKABLE_CHARS) == 55
    assert not set("01IOl") & set(UNMISTAKABLE_CHARS)
