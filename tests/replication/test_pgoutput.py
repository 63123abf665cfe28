"""pgoutput's binary messages, built by hand from PostgreSQL's "Logical Replication Message
Formats", decoded; and every malformed one refused with DecodeError alone."""

import struct
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddp.replication.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Column,
    Commit,
    DecodeError,
    Decoder,
    Delete,
    Insert,
    Message,
    Old,
    Origin,
    ReplicaIdentity,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    Type,
    Update,
    format_lsn,
    parse_lsn,
)

pytestmark = pytest.mark.quick

BOOK = 16385
SHELF = 16390
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
WHEN_MICROSECONDS = (WHEN - datetime(2000, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def string(text):
    return text.encode() + b"\0"


def int8(value):
    return struct.pack("!b", value)


def int16(value):
    return struct.pack("!h", value)


def int32(value):
    return struct.pack("!i", value)


def oid(value):
    return struct.pack("!I", value)


def int64(value):
    return struct.pack("!Q", value)


def xid_prefix(xid):
    return b"" if xid is None else oid(xid)


def begin(final_lsn=0x1718320, xid=754):
    return b"B" + int64(final_lsn) + int64(WHEN_MICROSECONDS) + oid(xid)


def commit(commit_lsn=0x1718480, end_lsn=0x17184B0):
    return b"C" + int8(0) + int64(commit_lsn) + int64(end_lsn) + int64(WHEN_MICROSECONDS)


def relation(
    relid=BOOK, name="book", identity=b"d", columns=((1, "id", 23), (0, "title", 25)), xid=None
):
    body = b"R" + xid_prefix(xid) + oid(relid) + string("public") + string(name) + identity
    body += int16(len(columns))
    for flags, column, type_oid in columns:
        body += int8(flags) + string(column) + oid(type_oid) + int32(-1)
    return body


def tuple_data(*values):
    body = int16(len(values))
    for value in values:
        if value is None:
            body += b"n"
        elif value is UNCHANGED_TOAST:
            body += b"u"
        else:
            raw = value.encode()
            body += b"t" + int32(len(raw)) + raw
    return body


def insert(*values, relid=BOOK, xid=None):
    return b"I" + xid_prefix(xid) + oid(relid) + b"N" + tuple_data(*values)


def decoder_after(*messages, version=1):
    decoder = Decoder(version)
    for message in messages:
        decoder.decode(message)
    return decoder


def decoded(*messages):
    """``messages`` decoded in order, inside a transaction (whose Begin is left out)."""
    decoder = decoder_after(begin())
    return [decoder.decode(message) for message in messages]


BOOK_RELATION = decoded(relation())[0]


def test_begin_and_commit_carry_positions_and_time():
    decoder = Decoder()
    assert decoder.transaction is None
    first = decoder.decode(begin())
    assert first == Begin(final_lsn=0x1718320, commit_time=WHEN, xid=754)
    assert decoder.transaction == first
    got = decoder.decode(commit())
    assert got == Commit(commit_lsn=0x1718480, end_lsn=0x17184B0, commit_time=WHEN)
    assert decoder.transaction is None


def test_origin():
    assert decoded(b"O" + int64(0x2A) + string("node b")) == [Origin(0x2A, "node b")]


def test_relation_describes_columns_keys_and_identity():
    decoder = decoder_after(begin())
    got = decoder.decode(relation(identity=b"f"))
    assert (got.oid, got.namespace, got.name) == (BOOK, "public", "book")
    assert got.replica_identity is ReplicaIdentity.FULL
    assert got.columns == (Column("id", 23, -1, True), Column("title", 25, -1, False))
    assert decoder.relations == {BOOK: got}


@pytest.mark.parametrize("identity", list(ReplicaIdentity))
def test_every_replica_identity(identity):
    [got] = decoded(relation(identity=identity.value.encode()))
    assert got.replica_identity is identity


def test_a_new_relation_message_replaces_the_cached_one():
    wider = relation(columns=((1, "id", 23), (0, "title", 25), (0, "pages", 23)))
    got = decoded(relation(), insert("1", "Dune"), wider, insert("1", "Dune", "412"))
    assert got[1].relation.named(got[1].new) == {"id": "1", "title": "Dune"}
    assert got[3].relation == got[2]
    assert got[3].relation.named(got[3].new) == {"id": "1", "title": "Dune", "pages": "412"}


def test_type():
    body = b"Y" + oid(16400) + string("public") + string("mood")
    assert decoded(body) == [Type(16400, "public", "mood")]


def test_insert_keeps_text_as_text_and_null_as_none():
    got = decoded(relation(), insert("1", None))[1]
    assert got == Insert(BOOK_RELATION, ("1", None))


def test_an_unchanged_toast_value_is_not_null():
    body = b"U" + oid(BOOK) + b"N" + tuple_data("1", UNCHANGED_TOAST)
    got = decoded(relation(), body)[1]
    assert got == Update(BOOK_RELATION, ("1", UNCHANGED_TOAST))
    assert got.new[1] is UNCHANGED_TOAST and got.new[1] is not None


def test_update_with_the_old_key():
    body = b"U" + oid(BOOK) + b"K" + tuple_data("1", None) + b"N" + tuple_data("2", "Dune")
    assert decoded(relation(), body)[1] == Update(
        BOOK_RELATION, ("2", "Dune"), old=("1", None), old_kind=Old.KEY
    )


def test_update_with_the_old_row():
    body = b"U" + oid(BOOK) + b"O" + tuple_data("1", "Dune") + b"N" + tuple_data("1", "Emma")
    assert decoded(relation(), body)[1] == Update(
        BOOK_RELATION, ("1", "Emma"), old=("1", "Dune"), old_kind=Old.ROW
    )


@pytest.mark.parametrize("kind", [Old.KEY, Old.ROW])
def test_delete(kind):
    body = b"D" + oid(BOOK) + kind.value.encode() + tuple_data("7", None)
    assert decoded(relation(), body)[1] == Delete(BOOK_RELATION, ("7", None), kind)


@pytest.mark.parametrize(
    ("options", "cascade", "restart_identity"),
    [(0, False, False), (1, True, False), (2, False, True), (3, True, True)],
)
def test_truncate(options, cascade, restart_identity):
    shelf = relation(relid=SHELF, name="shelf")
    body = b"T" + int32(2) + int8(options) + oid(BOOK) + oid(SHELF)
    got = decoded(relation(), shelf, body)
    assert got[2] == Truncate((got[0], got[1]), cascade, restart_identity)


@pytest.mark.parametrize("transactional", [False, True])
def test_message(transactional):
    body = b"M" + int8(int(transactional)) + int64(99) + string("ddp") + int32(3) + b"a\0b"
    assert decoded(body) == [Message(transactional, 99, "ddp", b"a\0b")]


def test_text_is_utf8():
    assert decoded(relation(), insert("1", "Žižek — 東京"))[1].new == ("1", "Žižek — 東京")


def test_streamed_transaction_changes_carry_their_xid():
    decoder = Decoder(2)
    raw = [
        b"S" + oid(900) + int8(1),
        relation(xid=900),
        insert("1", "Dune", xid=900),
        b"E",
        b"S" + oid(900) + int8(0),
        insert("2", None, xid=900),
        b"E",
        b"c" + oid(900) + int8(0) + int64(0x30) + int64(0x58) + int64(WHEN_MICROSECONDS),
        b"A" + oid(901) + oid(902),
    ]
    got = [decoder.decode(message) for message in raw]
    rel = got[1]
    assert rel.xid == 900
    assert got == [
        StreamStart(900, True),
        rel,
        Insert(rel, ("1", "Dune"), xid=900),
        StreamStop(),
        StreamStart(900, False),
        Insert(rel, ("2", None), xid=900),
        StreamStop(),
        StreamCommit(900, 0x30, 0x58, WHEN),
        StreamAbort(901, 902),
    ]


def test_lsn_text():
    assert parse_lsn("16/B374D848") == 0x16B374D848
    assert format_lsn(0x16B374D848) == "16/B374D848"
    assert format_lsn(parse_lsn("0/0")) == "0/0"


# Malformed input: one exception type, with a message that says what was wrong.

VALID = {
    "Begin": [begin()],
    "Commit": [begin(), commit()],
    "Origin": [begin(), b"O" + int64(1) + string("x")],
    "Relation": [begin(), relation()],
    "Type": [begin(), b"Y" + oid(16400) + string("public") + string("mood")],
    "Insert": [begin(), relation(), insert("1", "Dune")],
    "Update": [
        begin(),
        relation(),
        b"U" + oid(BOOK) + b"K" + tuple_data("1", None) + b"N" + tuple_data("2", "x"),
    ],
    "Delete": [begin(), relation(), b"D" + oid(BOOK) + b"O" + tuple_data("1", "x")],
    "Truncate": [begin(), relation(), b"T" + int32(1) + int8(0) + oid(BOOK)],
    "Message": [begin(), b"M" + int8(1) + int64(5) + string("p") + int32(2) + b"hi"],
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_truncation_of_every_message_is_refused(name):
    *setup, message = VALID[name]
    for length in range(1, len(message)):
        decoder = decoder_after(*setup)
        with pytest.raises(DecodeError, match=rf"^{name} message: .*truncated"):
            decoder.decode(message[:length])


@pytest.mark.parametrize("name", sorted(VALID))
def test_bytes_after_the_last_field_are_refused(name):
    *setup, message = VALID[name]
    decoder = decoder_after(*setup)
    with pytest.raises(DecodeError, match=rf"^{name} message: extra bytes after the last field: 1"):
        decoder.decode(message + b"\0")


def test_a_refused_message_leaves_the_decoder_as_it_was():
    decoder = Decoder()
    with pytest.raises(DecodeError):
        decoder.decode(begin() + b"\0")
    assert decoder.transaction is None
    decoder.decode(begin())
    with pytest.raises(DecodeError):
        decoder.decode(relation() + b"\0")
    assert decoder.relations == {}
    with pytest.raises(DecodeError):
        decoder.decode(commit() + b"\0")
    assert decoder.transaction is not None


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([b""], "An empty pgoutput message"),
        ([b"Z"], "Unknown pgoutput message type 'Z'"),
        ([b"x" + b"\0" * 20], "Unknown pgoutput message type 'x'"),
        # Streaming is protocol 2: a version 1 decoder does not guess.
        ([b"S" + oid(1) + int8(1)], "Unknown pgoutput message type 'S'"),
        ([insert("1", "Dune")], "Insert message: relation 16385 has not been described"),
        (
            [b"U" + oid(BOOK) + b"N" + tuple_data("1", "x")],
            "Update message: relation 16385 has not been described",
        ),
        (
            [b"D" + oid(BOOK) + b"K" + tuple_data("1", None)],
            "Delete message: relation 16385 has not been described",
        ),
        (
            [relation(), b"T" + int32(2) + int8(0) + oid(BOOK) + oid(SHELF)],
            "Truncate message: relation 16390 has not been described",
        ),
        (
            [relation(), b"I" + oid(BOOK) + b"N" + int16(2) + b"t" + int32(1) + b"1" + b"x"],
            "Insert message: unknown tuple value kind 'x'",
        ),
        (
            [relation(), b"I" + oid(BOOK) + b"N" + int16(2) + b"n" + b"b" + int32(1) + b"1"],
            "Insert message: unknown tuple value kind 'b'",
        ),
        (
            [relation(), b"I" + oid(BOOK) + b"N" + int16(2) + b"t" + int32(-1) + b"n"],
            "Insert message: negative value length -1",
        ),
        (
            [relation(), b"I" + oid(BOOK) + b"N" + int16(-1)],
            "Insert message: negative column count -1",
        ),
        ([relation(), insert("1")], r"Insert message: 1 values for the 2 columns of public.book"),
        ([relation(), b"I" + oid(BOOK) + b"K" + tuple_data("1", "x")], "expected 'N', found 'K'"),
        (
            [relation(), b"U" + oid(BOOK) + b"X" + tuple_data("1", "x")],
            "Update message: expected 'K', 'O' or 'N', found 'X'",
        ),
        (
            [relation(), b"U" + oid(BOOK) + b"K" + tuple_data("1", None) + b"K"],
            "Update message: expected 'K', 'O' or 'N', found 'K'",
        ),
        (
            [relation(), b"D" + oid(BOOK) + b"N" + tuple_data("1", "x")],
            "Delete message: expected 'K' or 'O', found 'N'",
        ),
        ([relation(identity=b"z")], "Relation message: unknown replica identity 'z'"),
        ([relation(columns=((2, "id", 23),))], "Relation message: unknown column flags 2"),
        ([relation(), b"T" + int32(-1) + int8(0)], "Truncate message: negative relation count -1"),
        ([relation(), b"T" + int32(1) + int8(4) + oid(BOOK)], "Truncate message: unknown options"),
        ([b"M" + int8(2) + int64(5) + string("p") + int32(0)], "Message message: unknown flags 2"),
        (
            [b"M" + int8(0) + int64(5) + string("p") + int32(-2)],
            "Message message: negative content length -2",
        ),
        (
            [relation(), b"I" + oid(BOOK) + b"N" + int16(2) + b"n" + b"t" + int32(1) + b"\xff"],
            "Insert message: text that is not UTF-8",
        ),
        ([b"O" + int64(1) + b"\xc3\0"], "Origin message: text that is not UTF-8"),
        (
            [commit(), b"B" + int64(1) + struct.pack("!q", 2**62) + oid(1)],
            "Begin message: timestamp 4611686018427387904 is out of range",
        ),
    ],
)
def test_malformed_messages(messages, error):
    *setup, bad = messages
    decoder = decoder_after(begin(), *setup)
    with pytest.raises(DecodeError, match=error):
        decoder.decode(bad)


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([insert("1", "Dune")], "Insert message: outside a transaction"),
        ([relation()], "Relation message: outside a transaction"),
        ([begin(), relation(), commit(), insert("1", "x")], "Insert message: outside a"),
        ([commit()], "Commit message: no transaction to commit"),
        ([begin(), begin()], "Begin message: the transaction before has no Commit"),
        (
            [b"M" + int8(1) + int64(5) + string("p") + int32(0)],
            "Message message: a transactional message outside a transaction",
        ),
    ],
)
def test_messages_out_of_their_place(messages, error):
    *setup, bad = messages
    decoder = decoder_after(*setup)
    with pytest.raises(DecodeError, match=error):
        decoder.decode(bad)


def test_a_non_transactional_message_comes_outside_transactions():
    body = b"M" + int8(0) + int64(5) + string("p") + int32(0)
    assert Decoder().decode(body) == Message(False, 5, "p", b"")


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([b"E"], "StreamStop message: not inside a stream"),
        ([b"S" + oid(1) + int8(1), begin()], "Begin message: inside a stream"),
        ([begin(), b"S" + oid(1) + int8(1)], "StreamStart message: the transaction before"),
        ([b"S" + oid(1) + int8(1), b"S" + oid(1) + int8(0)], "StreamStart message: inside"),
        ([b"S" + oid(1) + int8(3)], "StreamStart message: unknown first-segment flag 3"),
        ([b"S" + oid(1) + int8(1), b"A" + oid(1) + oid(1)], "StreamAbort message: inside a"),
        (
            [b"S" + oid(1) + int8(1), b"c" + oid(1) + int8(0) + int64(1) + int64(2) + int64(3)],
            "StreamCommit message: inside a stream",
        ),
    ],
)
def test_malformed_streams(messages, error):
    *setup, bad = messages
    decoder = decoder_after(*setup, version=2)
    with pytest.raises(DecodeError, match=error):
        decoder.decode(bad)


def test_an_unknown_protocol_version_is_refused():
    with pytest.raises(ValueError, match="pgoutput protocol version 3 is not supported"):
        Decoder(3)


@given(st.binary(max_size=64), st.sampled_from([1, 2]))
def test_arbitrary_bytes_decode_or_raise_decode_error(data, version):
    decoder = decoder_after(begin(), relation(), version=version)
    try:
        decoder.decode(data)
    except DecodeError:
        pass


@given(st.sampled_from(sorted(VALID)), st.integers(min_value=0), st.integers(0, 255))
def test_a_corrupted_byte_decodes_or_raises_decode_error(name, position, value):
    *setup, message = VALID[name]
    position %= len(message)
    corrupted = message[:position] + bytes([value]) + message[position + 1 :]
    decoder = decoder_after(*setup)
    try:
        decoder.decode(corrupted)
    except DecodeError:
        pass
