"""Meteor's EJSON: JSON plus dates, binary, NaN/Infinity, regexps and ObjectIDs.

DDP carries EJSON only in ``fields``, ``params`` and ``result`` (PROTOCOL.md B3); the
rest of every message is plain JSON. This module converts between Python values and
*JSON-able* values (dicts, lists, strings, numbers, booleans, ``None``) and leaves
the text step to :func:`dumps` and :func:`loads`, so a message is built first and
serialised once.

Python has richer types than EJSON, so :func:`to_ejson` picks one wire form for each
(PROTOCOL.md section 12, the "choice" rows): ``date`` and ``time`` become ISO strings,
``timedelta`` float seconds, ``Decimal`` its exact string, and integers that a
JavaScript number cannot hold exactly become strings. Those choices do not round-trip
through :func:`from_ejson`, which only knows Meteor's own converters.
"""

import base64
import binascii
import datetime
import json
import math
import sys
from dataclasses import dataclass
from decimal import Decimal

#: The epoch as an aware datetime: ``$date`` counts milliseconds from here.
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

#: The largest integer a JavaScript number holds exactly (``Number.MAX_SAFE_INTEGER``).
MAX_SAFE_INTEGER = 2**53 - 1

_MILLISECOND = datetime.timedelta(milliseconds=1)

# Key sets of Meteor's built-in converters (J1). A plain dict with one of these
# shapes would be mistaken for a converter, so it is sent inside ``$escape`` (J2).
_CONVERTER_SHAPES = frozenset(
    frozenset(keys)
    for keys in (
        ("$date",),
        ("$binary",),
        ("$InfNaN",),
        ("$escape",),
        ("$regexp", "$flags"),
        ("$type", "$value"),
    )
)

# Meteor keeps only these regexp flags, each once, and reads at most 50 characters.
_REGEXP_FLAGS = "gimuy"
_MAX_FLAGS_READ = 50

_LOWER_HEX = frozenset("0123456789abcdef")
_HEX_DIGITS = _LOWER_HEX | frozenset("ABCDEF")


class EJSONError(ValueError):
    """An EJSON value that cannot be decoded (DDP answers it with ``Parse error``)."""


@dataclass(frozen=True, slots=True)
class Regexp:
    """A JavaScript regular expression, kept as text: Python cannot run JS regexps.

    ``flags`` holds Meteor's canonical form: only ``g``, ``i``, ``m``, ``u``, ``y``,
    each at most once, in that order.
    """

    source: str
    flags: str = ""


@dataclass(frozen=True, slots=True)
class ObjectId:
    """A Mongo ObjectID (``{"$type": "oid"}``), the one custom type every Meteor client knows.

    ``hex`` is 24 lowercase hexadecimal characters; anything else raises ``ValueError``,
    since a Meteor client drops a whole message holding a malformed ObjectID.
    """

    hex: str

    def __post_init__(self):
        if not (isinstance(self.hex, str) and len(self.hex) == 24 and set(self.hex) <= _LOWER_HEX):
            raise ValueError(
                f"an ObjectID is 24 lowercase hexadecimal characters, not {self.hex!r}"
            )


def to_ejson(value):
    """Return the JSON-able EJSON form of ``value``; raise ``TypeError`` if it has none.

    Exact types are tested first because this runs for every field of every message.
    """
    cls = type(value)
    if cls is str or cls is bool or value is None:
        return value
    if cls is int:
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if cls is float:
        return value if math.isfinite(value) else _inf_nan(value)
    if isinstance(value, dict):
        return _dict_to_ejson(value)
    if isinstance(value, (list, tuple)):
        return [to_ejson(item) for item in value]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return to_ejson(int(value))
    if isinstance(value, float):
        return to_ejson(float(value))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        # Floor division of timedeltas is exact; going through a float is not.
        return {"$date": (value - EPOCH) // _MILLISECOND}
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        if value.is_finite():
            return str(value)
        return {"$InfNaN": 0} if value.is_nan() else {"$InfNaN": -1 if value.is_signed() else 1}
    if _is_uuid(value):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$binary": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Regexp):
        return {"$regexp": value.source, "$flags": value.flags}
    if isinstance(value, ObjectId):
        return {"$type": "oid", "$value": value.hex}
    raise TypeError(f"{cls.__name__} has no EJSON form: {value!r}")


def _is_uuid(value):
    # A UUID exists only once ``uuid`` is imported, so look it up instead of importing
    # it: on Python 3.10 ``import uuid`` loads subprocess, threading and selectors.
    uuid = sys.modules.get("uuid")
    return uuid is not None and isinstance(value, uuid.UUID)


def _inf_nan(number):
    if math.isnan(number):
        return {"$InfNaN": 0}
    return {"$InfNaN": 1 if number > 0 else -1}


def _dict_to_ejson(value):
    converted = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"EJSON object keys must be strings, not {key!r}")
        converted[key] = to_ejson(item)
    if len(converted) <= 2 and frozenset(converted) in _CONVERTER_SHAPES:
        return {"$escape": converted}
    return converted


def from_ejson(value):
    """Return the Python value of the JSON-able EJSON ``value``.

    Only objects of at most two keys, all starting with ``$``, are tried against the
    converters, and they must match one exactly (J1); any other object is plain data.
    Raise :class:`EJSONError` for a converter with a bad payload or an unknown
    ``$type`` (J3).
    """
    if isinstance(value, list):
        return [from_ejson(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) <= 2 and all(isinstance(key, str) and key.startswith("$") for key in value):
        shape = frozenset(value)
        if shape in _CONVERTER_SHAPES:
            return _DECODERS[shape](value)
    return {key: from_ejson(item) for key, item in value.items()}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _decode_date(value):
    ms = value["$date"]
    if not _is_number(ms):
        raise EJSONError(f"$date must be a number of milliseconds, not {ms!r}")
    try:
        return EPOCH + datetime.timedelta(milliseconds=ms)
    except (OverflowError, ValueError) as exc:
        raise EJSONError(f"$date out of range: {ms!r}") from exc


def _decode_binary(value):
    text = value["$binary"]
    if not isinstance(text, str):
        raise EJSONError(f"$binary must be a base64 string, not {text!r}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EJSONError(f"$binary is not valid base64: {text!r}") from exc


def _decode_inf_nan(value):
    sign = value["$InfNaN"]
    if not _is_number(sign):
        raise EJSONError(f"$InfNaN must be a number, not {sign!r}")
    # Meteor computes sign / 0: 0 gives NaN, a positive sign +Inf, a negative -Inf.
    if sign == 0:
        return math.nan
    return math.inf if sign > 0 else -math.inf


def _decode_escape(value):
    inner = value["$escape"]
    if not isinstance(inner, dict):
        raise EJSONError(f"$escape must hold an object, not {inner!r}")
    # One level only: the keys are taken literally, the values are EJSON again.
    return {key: from_ejson(item) for key, item in inner.items()}


def _decode_regexp(value):
    source, flags = value["$regexp"], value["$flags"]
    if not isinstance(source, str) or not isinstance(flags, str):
        raise EJSONError(f"$regexp and $flags must be strings: {value!r}")
    kept = set(flags[:_MAX_FLAGS_READ])
    return Regexp(source, "".join(flag for flag in _REGEXP_FLAGS if flag in kept))


def _decode_custom(value):
    type_name, payload = value["$type"], value["$value"]
    if type_name != "oid":
        raise EJSONError(f"unknown EJSON $type {type_name!r}")
    if not (isinstance(payload, str) and len(payload) == 24 and set(payload) <= _HEX_DIGITS):
        raise EJSONError(f"an ObjectID needs 24 hexadecimal characters, not {payload!r}")
    return ObjectId(payload.lower())


_DECODERS = {
    frozenset(("$date",)): _decode_date,
    frozenset(("$binary",)): _decode_binary,
    frozenset(("$InfNaN",)): _decode_inf_nan,
    frozenset(("$escape",)): _decode_escape,
    frozenset(("$regexp", "$flags")): _decode_regexp,
    frozenset(("$type", "$value")): _decode_custom,
}


def dumps(obj):
    """Serialise an already JSON-able value as strict, compact, ASCII-only JSON (B7).

    ASCII escaping keeps lone surrogates (legal in JS strings) encodable, and
    ``allow_nan=False`` turns a stray NaN, which JS cannot parse, into a ``ValueError``.
    """
    return json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _reject_constant(token):
    raise ValueError(f"{token} is not JSON")


def loads(text):
    """Parse strict JSON: the ``NaN`` and ``Infinity`` tokens Python accepts are errors."""
    return json.loads(text, parse_constant=_reject_constant)
