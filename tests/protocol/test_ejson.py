"""EJSON as Meteor speaks it (PROTOCOL.md section 12, J1-J4, B7)."""

import datetime
import enum
import math
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddp.protocol.ejson import (
    EPOCH,
    EJSONError,
    ObjectId,
    Regexp,
    dumps,
    from_ejson,
    loads,
    to_ejson,
)

pytestmark = pytest.mark.quick

UTC = datetime.timezone.utc
OID = "0123456789abcdef01234567"


class Colour(enum.IntEnum):
    RED = 1


class Name(str, enum.Enum):
    ADA = "ada"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        ("", ""),
        (True, True),
        (False, False),
        (None, None),
        (0, 0),
        (-5, -5),
        (1.5, 1.5),
        (2**53 - 1, 2**53 - 1),
        (-(2**53 - 1), -(2**53 - 1)),
        (2**53, "9007199254740992"),
        (-(2**53), "-9007199254740992"),
        (10**30, "1000000000000000000000000000000"),
        (Colour.RED, 1),
        (Name.ADA, "ada"),
        (math.nan, {"$InfNaN": 0}),
        (math.inf, {"$InfNaN": 1}),
        (-math.inf, {"$InfNaN": -1}),
        (Decimal("12.30"), "12.30"),
        (Decimal("-0.000001"), "-0.000001"),
        (Decimal("NaN"), {"$InfNaN": 0}),
        (Decimal("sNaN"), {"$InfNaN": 0}),
        (Decimal("Infinity"), {"$InfNaN": 1}),
        (Decimal("-Infinity"), {"$InfNaN": -1}),
        (UUID("12345678-1234-5678-1234-56789ABCDEF0"), "12345678-1234-5678-1234-56789abcdef0"),
        (datetime.date(2020, 1, 2), "2020-01-02"),
        (datetime.time(12, 30), "12:30:00"),
        (datetime.time(12, 30, 1, 500), "12:30:01.000500"),
        (datetime.timedelta(days=1, microseconds=5), 86400.000005),
        (datetime.timedelta(seconds=-1.5), -1.5),
        (b"\xfb\xff", {"$binary": "+/8="}),
        (bytearray(b"a"), {"$binary": "YQ=="}),
        (memoryview(b"ab"), {"$binary": "YWI="}),
        (b"", {"$binary": ""}),
        (Regexp("a+b", "gi"), {"$regexp": "a+b", "$flags": "gi"}),
        (ObjectId(OID), {"$type": "oid", "$value": OID}),
        ((1, [2, (3,)]), [1, [2, [3]]]),
        ({"a": {"b": math.nan}}, {"a": {"b": {"$InfNaN": 0}}}),
    ],
)
def test_to_ejson(value, expected):
    assert to_ejson(value) == expected


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (datetime.datetime(1970, 1, 1, tzinfo=UTC), 0),
        (datetime.datetime(2020, 1, 1, tzinfo=UTC), 1577836800000),
        (datetime.datetime(1965, 7, 14, tzinfo=UTC), -141004800000),
        # Microseconds are truncated towards the past, as a JS Date would hold them.
        (datetime.datetime(1970, 1, 1, 0, 0, 0, 999, tzinfo=UTC), 0),
        (datetime.datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC), -1),
        # Through a float, timestamp() * 1000 gives -3004059609928 here.
        (datetime.datetime(1874, 10, 21, 18, 59, 50, 71392, tzinfo=UTC), -3004059609929),
        (datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 253402300799999),
        (datetime.datetime(1, 1, 1, tzinfo=UTC), -62135596800000),
        (
            datetime.datetime(2020, 1, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            1577836800000,
        ),
        # Naive datetimes are UTC here; the Django layer makes them aware first.
        (datetime.datetime(2020, 1, 1), 1577836800000),
    ],
)
def test_datetime_to_exact_milliseconds(value, ms):
    assert to_ejson(value) == {"$date": ms}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # J2: a plain object shaped like a converter goes out escaped.
        ({"$date": 10000}, {"$escape": {"$date": 10000}}),
        ({"$binary": "x"}, {"$escape": {"$binary": "x"}}),
        ({"$InfNaN": 1}, {"$escape": {"$InfNaN": 1}}),
        ({"$escape": {"a": 1}}, {"$escape": {"$escape": {"a": 1}}}),
        ({"$regexp": "a", "$flags": ""}, {"$escape": {"$regexp": "a", "$flags": ""}}),
        ({"$type": "oid", "$value": "x"}, {"$escape": {"$type": "oid", "$value": "x"}}),
        ({"$value": 1, "$type": "x"}, {"$escape": {"$value": 1, "$type": "x"}}),
        # The values inside are EJSON again.
        (
            {"$date": datetime.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)},
            {"$escape": {"$date": {"$date": 1000}}},
        ),
        # Nested, at any depth.
        ({"doc": [{"$date": 1}]}, {"doc": [{"$escape": {"$date": 1}}]}),
        # Not a converter shape: plain data.
        ({"$foo": 1}, {"$foo": 1}),
        ({"$date": 1, "x": 2}, {"$date": 1, "x": 2}),
        ({"$date": 1, "$binary": "x"}, {"$date": 1, "$binary": "x"}),
        ({"$regexp": "a"}, {"$regexp": "a"}),
        ({"$type": "oid"}, {"$type": "oid"}),
        ({"$regexp": "a", "$flags": "", "$x": 1}, {"$regexp": "a", "$flags": "", "$x": 1}),
        ({}, {}),
    ],
)
def test_escaping(value, expected):
    assert to_ejson(value) == expected


def test_to_ejson_keeps_key_order():
    assert list(to_ejson({"b": 1, "a": 2, "c": 3})) == ["b", "a", "c"]


@pytest.mark.parametrize("value", [{1, 2}, object(), 1j, {1: "a"}, {None: 1}, [object()]])
def test_to_ejson_refuses_what_has_no_ejson_form(value):
    with pytest.raises(TypeError):
        to_ejson(value)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ({"$date": 0}, EPOCH),
        ({"$date": 1577836800000}, datetime.datetime(2020, 1, 1, tzinfo=UTC)),
        ({"$date": -141004800000}, datetime.datetime(1965, 7, 14, tzinfo=UTC)),
        ({"$date": 1.5}, datetime.datetime(1970, 1, 1, 0, 0, 0, 1500, tzinfo=UTC)),
        ({"$date": -0.5}, datetime.datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)),
        ({"$binary": "+/8="}, b"\xfb\xff"),
        ({"$binary": ""}, b""),
        ({"$InfNaN": 1}, math.inf),
        ({"$InfNaN": -1}, -math.inf),
        ({"$InfNaN": 7}, math.inf),
        ({"$InfNaN": -0.5}, -math.inf),
        ({"$escape": {"$date": 5}}, {"$date": 5}),
        ({"$escape": {"$escape": {"a": 1}}}, {"$escape": {"a": 1}}),
        (
            {"$escape": {"$date": {"$date": 0}, "$x": [{"$binary": "YQ=="}]}},
            {"$date": EPOCH, "$x": [b"a"]},
        ),
        ({"$regexp": "a+", "$flags": "gig"}, Regexp("a+", "gi")),
        ({"$regexp": "a", "$flags": "yumsigx"}, Regexp("a", "gimuy")),
        ({"$flags": "", "$regexp": "^$"}, Regexp("^$", "")),
        ({"$regexp": "a", "$flags": "x" * 50 + "g"}, Regexp("a", "")),
        ({"$type": "oid", "$value": OID.upper()}, ObjectId(OID)),
        ({"$foo": 1}, {"$foo": 1}),
        ({"$date": 1, "x": 2}, {"$date": 1, "x": 2}),
        ({"$date": {"$date": 0}, "x": 2}, {"$date": EPOCH, "x": 2}),
        ({"$date": 1, "$binary": "x"}, {"$date": 1, "$binary": "x"}),
        ({"a": [{"$date": 0}, {"b": {"$InfNaN": -1}}]}, {"a": [EPOCH, {"b": -math.inf}]}),
        ([1, "a", None, True, 1.5], [1, "a", None, True, 1.5]),
    ],
)
def test_from_ejson(wire, expected):
    assert from_ejson(wire) == expected


def test_from_ejson_dates_are_aware_utc():
    assert from_ejson({"$date": 0}).tzinfo is UTC


def test_from_ejson_nan():
    assert math.isnan(from_ejson({"$InfNaN": 0}))


@pytest.mark.parametrize(
    "wire",
    [
        {"$date": "2020-01-01"},
        {"$date": None},
        {"$date": True},
        {"$date": [0]},
        {"$date": 1e20},
        {"$date": 1e999},
        {"$binary": "!!!!"},
        {"$binary": "YQ"},
        {"$binary": 5},
        {"$InfNaN": "1"},
        {"$InfNaN": None},
        {"$InfNaN": False},
        {"$escape": 5},
        {"$escape": [1]},
        {"$escape": "ab"},
        {"$regexp": 1, "$flags": ""},
        {"$regexp": "a", "$flags": None},
        {"$type": "bogus", "$value": 1},
        {"$type": "Decimal", "$value": "1.5"},
        {"$type": "oid", "$value": "xyz"},
        {"$type": "oid", "$value": "0123456789abcdef0123456g"},
        {"$type": "oid", "$value": "01 23456789abcdef0123456"},
        {"$type": "oid", "$value": 5},
        [{"ok": [{"$type": "bogus", "$value": 1}]}],
        {"$escape": {"a": {"$date": "x"}}},
    ],
)
def test_from_ejson_errors(wire):
    with pytest.raises(EJSONError):
        from_ejson(wire)


@pytest.mark.parametrize("text", ["", "xyz", OID.upper(), OID + "0", "g" * 24, 5])
def test_object_ids_are_validated(text):
    with pytest.raises(ValueError):
        ObjectId(text)


def test_ejson_error_is_a_value_error():
    assert issubclass(EJSONError, ValueError)


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2024, 2, 29, 12, 0, 0, 123000, tzinfo=UTC),
        datetime.datetime(1901, 1, 1, tzinfo=UTC),
        b"\x00\x01\xfe\xff",
        math.inf,
        -math.inf,
        Regexp("\\d+", "gm"),
        ObjectId("0123456789abcdef01234567"),
        {"$date": 10000},
        {"$escape": {"$date": {"$date": 1}}},
        {"$type": "oid", "$value": "x"},
        {"nested": [{"$binary": "x"}, {"$InfNaN": 0}, b"x"]},
        {"$date": 1, "x": {"$regexp": "a", "$flags": "g"}},
        "\ud800 lone surrogate",
        "é ü 中",
        2**53 - 1,
    ],
)
def test_round_trip(value):
    assert from_ejson(loads(dumps(to_ejson(value)))) == value


def test_round_trip_nan():
    assert math.isnan(from_ejson(loads(dumps(to_ejson(math.nan)))))


_KEYS = st.sampled_from(
    ["$date", "$binary", "$InfNaN", "$escape", "$regexp", "$flags", "$type", "$value", "$x", "a"]
) | st.text(max_size=5)

_EJSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.datetimes(timezones=st.just(UTC)).map(
        lambda dt: dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    )
    | st.builds(Regexp, st.text(), st.sampled_from(["", "g", "gi", "gimuy"]))
    | st.text("0123456789abcdef", min_size=24, max_size=24).map(ObjectId),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=20,
)


@given(_EJSON_VALUES)
def test_every_value_round_trips(value):
    assert from_ejson(loads(dumps(to_ejson(value)))) == value


@given(_EJSON_VALUES)
def test_encoded_values_are_strict_json(value):
    text = dumps(to_ejson(value))
    assert text.isascii()
    assert loads(text) == to_ejson(value)


def test_dumps_is_compact_ascii_and_ordered():
    assert dumps({"b": [1, 2.5], "a": "é\ud800"}) == '{"b":[1,2.5],"a":"\\u00e9\\ud800"}'


@pytest.mark.parametrize("value", [math.nan, math.inf, [-math.inf]])
def test_dumps_refuses_nan_and_infinity(value):
    with pytest.raises(ValueError):
        dumps(value)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"a": NaN}', "[Infinity]"])
def test_loads_refuses_nan_and_infinity(text):
    with pytest.raises(ValueError):
        loads(text)


def test_loads_parses_json():
    assert loads('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
