"""Exact wire text of every message (PROTOCOL.md sections 2-8), D1, D2, R3 and E1."""

import dataclasses
import datetime
import pickle

import pytest

from ddp.protocol.ejson import EPOCH
from ddp.protocol.errors import MeteorError, ProtocolError, sanitize
from ddp.protocol.messages import (
    MISSING,
    Added,
    Changed,
    Connect,
    Connected,
    Disconnect,
    Error,
    Failed,
    Method,
    NoSub,
    Ping,
    Pong,
    Ready,
    Removed,
    Result,
    Sub,
    Unsub,
    Updated,
    encode,
)

pytestmark = pytest.mark.quick

UTC = datetime.timezone.utc
NOT_FOUND_404 = (
    '{"isClientSafe":true,"error":404,"reason":"Subscription \'nope\' not found",'
    '"message":"Subscription \'nope\' not found [404]","errorType":"Meteor.Error"}'
)


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (
            Connect("1", ["1", "pre2", "pre1"]),
            '{"msg":"connect","version":"1","support":["1","pre2","pre1"]}',
        ),
        (
            Connect("1", ("1", "pre2", "pre1"), session="4hDmBgTzW6bE3t2kq"),
            '{"msg":"connect","session":"4hDmBgTzW6bE3t2kq","version":"1",'
            '"support":["1","pre2","pre1"]}',
        ),
        (
            Connect("1", ("1",), session="4hDmBgTzW6bE3t2kq", received_count=12),
            '{"msg":"connect","session":"4hDmBgTzW6bE3t2kq","version":"1",'
            '"support":["1"],"receivedCount":12}',
        ),
        (Disconnect(), '{"msg":"disconnect"}'),
        (Connected("Jjwjg6gouWLXhMGKW"), '{"msg":"connected","session":"Jjwjg6gouWLXhMGKW"}'),
        (Failed("1"), '{"msg":"failed","version":"1"}'),
        (Ping(), '{"msg":"ping"}'),
        (Ping("a1b2"), '{"msg":"ping","id":"a1b2"}'),
        (Pong(), '{"msg":"pong"}'),
        (Pong("a1b2"), '{"msg":"pong","id":"a1b2"}'),
        (
            Sub("cK4s9HqbDTyiMJfXa", "bookstore.books", ({"author": "x"},)),
            '{"msg":"sub","id":"cK4s9HqbDTyiMJfXa","name":"bookstore.books",'
            '"params":[{"author":"x"}]}',
        ),
        (Sub("1", "all"), '{"msg":"sub","id":"1","name":"all","params":[]}'),
        (Unsub("cK4s9HqbDTyiMJfXa"), '{"msg":"unsub","id":"cK4s9HqbDTyiMJfXa"}'),
        (Unsub(), '{"msg":"unsub"}'),
        (
            Method("1", "bookstore.add", [{"title": "Dune"}], "8f1c0e0a5a4b6a7c9d2e"),
            '{"msg":"method","id":"1","method":"bookstore.add","params":[{"title":"Dune"}],'
            '"randomSeed":"8f1c0e0a5a4b6a7c9d2e"}',
        ),
        (
            Method("2", "at", (EPOCH,)),
            '{"msg":"method","id":"2","method":"at","params":[{"$date":0}]}',
        ),
        (
            Added(
                "bookstore.book",
                "42",
                {"title": "Dune", "published": datetime.datetime(1965, 7, 14, tzinfo=UTC)},
            ),
            '{"msg":"added","collection":"bookstore.book","id":"42",'
            '"fields":{"title":"Dune","published":{"$date":-141004800000}}}',
        ),
        # D1: fields always present, even empty.
        (Added("c", "x", {}), '{"msg":"added","collection":"c","id":"x","fields":{}}'),
        (
            Changed("bookstore.book", "42", {"title": "Dune Messiah"}, ["subtitle"]),
            '{"msg":"changed","collection":"bookstore.book","id":"42",'
            '"fields":{"title":"Dune Messiah"},"cleared":["subtitle"]}',
        ),
        (
            Changed("bookstore.book", "42", cleared=("subtitle",)),
            '{"msg":"changed","collection":"bookstore.book","id":"42","cleared":["subtitle"]}',
        ),
        (
            Changed("bookstore.book", "42", {}, ["subtitle"]),
            '{"msg":"changed","collection":"bookstore.book","id":"42","cleared":["subtitle"]}',
        ),
        (
            Changed("c", "x", {"a": None}),
            '{"msg":"changed","collection":"c","id":"x","fields":{"a":null}}',
        ),
        (
            Removed("bookstore.book", "42"),
            '{"msg":"removed","collection":"bookstore.book","id":"42"}',
        ),
        (Ready(["cK4s9HqbDTyiMJfXa"]), '{"msg":"ready","subs":["cK4s9HqbDTyiMJfXa"]}'),
        (Ready(("a", "b")), '{"msg":"ready","subs":["a","b"]}'),
        (NoSub("cK4s9HqbDTyiMJfXa"), '{"msg":"nosub","id":"cK4s9HqbDTyiMJfXa"}'),
        # S6: an unsub without id is answered without id.
        (NoSub(), '{"msg":"nosub"}'),
        (
            NoSub("zz", MeteorError(404, "Subscription 'nope' not found")),
            '{"msg":"nosub","id":"zz","error":' + NOT_FOUND_404 + "}",
        ),
        (Updated(["1"]), '{"msg":"updated","methods":["1"]}'),
        (Result("1", "42"), '{"msg":"result","id":"1","result":"42"}'),
        # R3: no result key when the method returned nothing; null when it returned None.
        (Result("2"), '{"msg":"result","id":"2"}'),
        (Result("2", None), '{"msg":"result","id":"2","result":null}'),
        (Result("2", []), '{"msg":"result","id":"2","result":[]}'),
        (
            Result("3", error=MeteorError(404, "Method 'nope' not found")),
            '{"msg":"result","id":"3","error":{"isClientSafe":true,"error":404,'
            '"reason":"Method \'nope\' not found","message":"Method \'nope\' not found [404]",'
            '"errorType":"Meteor.Error"}}',
        ),
        (
            Result(
                "2",
                {
                    "id": "Ah3Kq9",
                    "token": "Xy9",
                    "tokenExpires": datetime.datetime(2025, 2, 18, 11, 2, 23, 210000, tzinfo=UTC),
                    "type": "password",
                },
            ),
            '{"msg":"result","id":"2","result":{"id":"Ah3Kq9","token":"Xy9",'
            '"tokenExpires":{"$date":1739876543210},"type":"password"}}',
        ),
        (Error("Bad request"), '{"msg":"error","reason":"Bad request"}'),
        (
            Error("Must connect first", {"msg": "ping"}),
            '{"msg":"error","reason":"Must connect first","offendingMessage":{"msg":"ping"}}',
        ),
        (
            Error("Malformed method invocation", {"msg": "method", "params": [EPOCH]}),
            '{"msg":"error","reason":"Malformed method invocation",'
            '"offendingMessage":{"msg":"method","params":[{"$date":0}]}}',
        ),
        (
            Error("Bad request", [1, None]),
            '{"msg":"error","reason":"Bad request","offendingMessage":[1,null]}',
        ),
        (
            Error("Bad request", None),
            '{"msg":"error","reason":"Bad request","offendingMessage":null}',
        ),
    ],
)
def test_wire_text(message, wire):
    assert encode(message) == wire


def test_only_ejson_fields_are_converted():
    # B3: ids and names are verbatim; a dict-shaped field value is escaped (J2).
    wire = encode(Added("c", "-~1", {"doc": {"$date": 5}}))
    assert wire == (
        '{"msg":"added","collection":"c","id":"-~1","fields":{"doc":{"$escape":{"$date":5}}}}'
    )


def test_encoding_is_ascii():
    assert encode(Added("c", "x", {"name": "Zoë 中"})) == (
        '{"msg":"added","collection":"c","id":"x","fields":{"name":"Zo\\u00eb \\u4e2d"}}'
    )


@pytest.mark.parametrize("fields", [None, {}])
def test_empty_changed_is_a_bug(fields):
    # D2
    with pytest.raises(ProtocolError):
        Changed("c", "x", fields, ())


def test_changed_normalises_empty_parts():
    assert Changed("c", "x", {}, ["a"]) == Changed("c", "x", cleared=("a",))
    assert Changed("c", "x", {}, ["a"]).fields is None


def test_result_cannot_carry_both_value_and_error():
    with pytest.raises(ProtocolError):
        Result("1", None, MeteorError(500))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Added("c", 42, {}),
        lambda: Changed("c", None, {"a": 1}),
        lambda: Removed("c", 42),
        lambda: Result(1),
        lambda: NoSub(1),
        lambda: NoSub("1", ValueError("boom")),
        lambda: Result("1", error=ValueError("boom")),
    ],
)
def test_server_messages_refuse_what_meteor_clients_reject(build):
    # B5: outbound ids are strings; errors must be sanitised MeteorErrors (E3).
    with pytest.raises(ProtocolError):
        build()


def test_messages_are_frozen_values():
    message = Sub("1", "all", [1, 2])
    assert message == Sub("1", "all", (1, 2))
    assert message.params == (1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.id = "2"


def test_missing_is_distinct_from_none():
    assert MISSING is not None
    assert repr(MISSING) == "MISSING"
    assert Ping().id is MISSING
    assert Ping() != Ping(None)


@pytest.mark.parametrize(
    ("error", "wire"),
    [
        (
            MeteorError(404, "Subscription '__no_such_pub__' not found"),
            {
                "isClientSafe": True,
                "error": 404,
                "reason": "Subscription '__no_such_pub__' not found",
                "message": "Subscription '__no_such_pub__' not found [404]",
                "errorType": "Meteor.Error",
            },
        ),
        (
            MeteorError("not-authorized"),
            {
                "isClientSafe": True,
                "error": "not-authorized",
                "message": "[not-authorized]",
                "errorType": "Meteor.Error",
            },
        ),
        (
            MeteorError("x", ""),
            {
                "isClientSafe": True,
                "error": "x",
                "reason": "",
                "message": "[x]",
                "errorType": "Meteor.Error",
            },
        ),
        (
            MeteorError(
                "too-many-requests",
                "Error, too many requests. Please slow down. You must wait 3 seconds before "
                "trying again.",
                {"timeToReset": 2999, "at": EPOCH},
            ),
            {
                "isClientSafe": True,
                "error": "too-many-requests",
                "reason": "Error, too many requests. Please slow down. You must wait 3 seconds "
                "before trying again.",
                "details": {"timeToReset": 2999, "at": {"$date": 0}},
                "message": "Error, too many requests. Please slow down. You must wait 3 seconds "
                "before trying again. [too-many-requests]",
                "errorType": "Meteor.Error",
            },
        ),
    ],
)
def test_meteor_error_wire_form(error, wire):
    # E1; key order as Meteor's constructor sets them.
    assert error.to_dict() == wire
    assert list(error.to_dict()) == list(wire)


def test_meteor_error_str_is_its_message():
    assert str(MeteorError(403, "Match failed")) == "Match failed [403]"
    assert str(MeteorError(500)) == "[500]"


def test_meteor_error_pickles():
    error = MeteorError("e", "r", {"d": 1})
    assert pickle.loads(pickle.dumps(error)).to_dict() == error.to_dict()


def test_sanitize_passes_client_safe_errors():
    error = MeteorError(400, "Match failed")
    assert sanitize(error) is error


@pytest.mark.parametrize("exc", [ValueError("secret password in here"), KeyError("x"), Exception()])
def test_sanitize_hides_everything_else(exc):
    # E3
    assert sanitize(exc).to_dict() == {
        "isClientSafe": True,
        "error": 500,
        "reason": "Internal server error",
        "message": "Internal server error [500]",
        "errorType": "Meteor.Error",
    }
