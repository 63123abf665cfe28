"""What a real PostgreSQL's pgoutput sends for each kind of write, decoded.

The changes are read with ``pg_logical_slot_get_binary_changes``, the SQL face of the same
decoding a replication connection streams.
"""

from ddp.replication.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Decoder,
    Delete,
    Insert,
    Message,
    Old,
    Origin,
    ReplicaIdentity,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    Type,
    Update,
    parse_lsn,
)

# Random hex of 6,400 characters, stored out of line uncompressed: always TOASTed.
LONG_TEXT = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) AS i)"


def changes(db, slot, *options, version="1"):
    """Every change the slot holds, consumed, as ``(lsn, message)`` pairs."""
    rows = db.rows(
        "SELECT lsn, data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL, "
        "'proto_version', %s, 'publication_names', 'pub'" + ", %s" * len(options) + ")",
        [slot, version, *options],
    )
    decoder = Decoder(int(version))
    return [(parse_lsn(lsn), decoder.decode(bytes(data))) for lsn, data in rows]


def kinds(decoded):
    return [type(message).__name__ for _, message in decoded]


def create_slot(db, slot):
    db.run(("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot]))


def test_every_kind_of_write_decoded(db, slot):
    db.run(
        "CREATE TYPE mood AS ENUM ('calm', 'loud')",
        "CREATE TABLE book (id integer PRIMARY KEY, title text, notes text)",
        "ALTER TABLE book ALTER notes SET STORAGE EXTERNAL",
        "CREATE TABLE shelf (id integer PRIMARY KEY, name text, mood mood)",
        "ALTER TABLE shelf REPLICA IDENTITY FULL",
        "CREATE PUBLICATION pub FOR TABLE book, shelf",
    )
    create_slot(db, slot)
    long_text = db.value(LONG_TEXT)
    db.run(
        "BEGIN",
        ("INSERT INTO book VALUES (1, 'Dune', %s)", [long_text]),
        "INSERT INTO book VALUES (2, NULL, NULL)",
        "COMMIT",
        # The TOASTed notes are left as they are: pgoutput does not send them.
        "UPDATE book SET title = 'Dune Messiah' WHERE id = 1",
        # The primary key changes: the old key comes too.
        "UPDATE book SET id = 10 WHERE id = 2",
        "DELETE FROM book WHERE id = 10",
        "INSERT INTO shelf VALUES (1, 'a', 'calm')",
        "UPDATE shelf SET name = 'b' WHERE id = 1",
        "DELETE FROM shelf WHERE id = 1",
        # The schema changes between two changes of one table.
        "ALTER TABLE book ADD COLUMN pages integer",
        "INSERT INTO book VALUES (3, 'Emma', NULL, 474)",
        "TRUNCATE book, shelf RESTART IDENTITY",
    )
    got = changes(db, slot)
    messages = [message for _, message in got]
    assert kinds(got) == [
        *("Begin", "Relation", "Insert", "Insert", "Commit"),
        *("Begin", "Update", "Commit"),
        *("Begin", "Update", "Commit"),
        *("Begin", "Delete", "Commit"),
        *("Begin", "Type", "Relation", "Insert", "Commit"),
        *("Begin", "Update", "Commit"),
        *("Begin", "Delete", "Commit"),
        *("Begin", "Relation", "Insert", "Commit"),
        # The ALTER TABLE made pgoutput describe both tables again.
        *("Begin", "Relation", "Type", "Relation", "Truncate", "Commit"),
    ]
    book, mood, shelf, wider_book = messages[1], messages[15], messages[16], messages[26]

    assert (book.namespace, book.name, book.replica_identity) == (
        "public",
        "book",
        ReplicaIdentity.DEFAULT,
    )
    assert [(c.name, c.type_oid, c.is_key) for c in book.columns] == [
        ("id", 23, True),
        ("title", 25, False),
        ("notes", 25, False),
    ]
    assert messages[2:4] == [
        Insert(book, ("1", "Dune", long_text)),
        Insert(book, ("2", None, None)),
    ]
    assert messages[6] == Update(book, ("1", "Dune Messiah", UNCHANGED_TOAST))
    assert messages[9] == Update(book, ("10", None, None), old=("2", None, None), old_kind=Old.KEY)
    assert messages[12] == Delete(book, ("10", None, None), Old.KEY)

    assert (mood.namespace, mood.name) == ("public", "mood")
    assert mood == Type(db.value("SELECT 'mood'::regtype::oid"), "public", "mood")
    assert shelf.replica_identity is ReplicaIdentity.FULL
    assert [(c.name, c.type_oid, c.is_key) for c in shelf.columns] == [
        # With REPLICA IDENTITY FULL, every column is part of the identity.
        ("id", 23, True),
        ("name", 25, True),
        ("mood", mood.oid, True),
    ]
    assert messages[17] == Insert(shelf, ("1", "a", "calm"))
    assert messages[20] == Update(
        shelf, ("1", "b", "calm"), old=("1", "a", "calm"), old_kind=Old.ROW
    )
    assert messages[23] == Delete(shelf, ("1", "b", "calm"), Old.ROW)

    assert wider_book.oid == book.oid
    assert [c.name for c in wider_book.columns] == ["id", "title", "notes", "pages"]
    assert wider_book.named(messages[27].new) == {
        "id": "3",
        "title": "Emma",
        "notes": None,
        "pages": "474",
    }
    assert messages[30:33] == [wider_book, mood, shelf]
    assert messages[33] == Truncate((wider_book, shelf), cascade=False, restart_identity=True)


def test_transaction_positions_agree_with_the_slot(db, slot):
    db.run(
        "CREATE TABLE book (id integer PRIMARY KEY)",
        "CREATE PUBLICATION pub FOR TABLE book",
    )
    create_slot(db, slot)
    db.run("INSERT INTO book VALUES (1)", "INSERT INTO book VALUES (2)")
    got = changes(db, slot)
    assert kinds(got) == ["Begin", "Relation", "Insert", "Commit", "Begin", "Insert", "Commit"]
    (_, first_begin), (commit_row_lsn, first_commit) = got[0], got[3]
    assert isinstance(first_begin, Begin) and isinstance(first_commit, Commit)
    assert first_begin.final_lsn == first_commit.commit_lsn
    assert first_commit.commit_time == first_begin.commit_time
    # The slot gives a Commit the position just past it: what a consumer confirms.
    assert commit_row_lsn == first_commit.end_lsn > first_commit.commit_lsn
    assert got[4][1].final_lsn > first_commit.commit_lsn
    assert got[4][1].xid > first_begin.xid


def test_a_rolled_back_transaction_sends_nothing(db, slot):
    db.run(
        "CREATE TABLE book (id integer PRIMARY KEY)",
        "CREATE PUBLICATION pub FOR TABLE book",
    )
    create_slot(db, slot)
    db.run("BEGIN", "INSERT INTO book VALUES (1)", "ROLLBACK", "INSERT INTO book VALUES (2)")
    got = changes(db, slot)
    assert [message.new for _, message in got if isinstance(message, Insert)] == [("2",)]


def test_logical_messages_and_origins(db, slot):
    db.run(
        "CREATE TABLE book (id integer PRIMARY KEY)",
        "CREATE PUBLICATION pub FOR TABLE book",
    )
    create_slot(db, slot)
    db.run(
        "SELECT pg_logical_emit_message(false, 'ddp', 'outside')",
        "SELECT pg_replication_origin_create('elsewhere')",
        "SELECT pg_replication_origin_session_setup('elsewhere')",
        "BEGIN",
        "SELECT pg_replication_origin_xact_setup('0/2A', now())",
        "SELECT pg_logical_emit_message(true, 'ddp', convert_to('inside', 'UTF8'))",
        "INSERT INTO book VALUES (1)",
        "COMMIT",
    )
    got = [message for _, message in changes(db, slot, "messages", "true")]
    assert kinds([(None, message) for message in got]) == [
        *("Message",),
        *("Begin", "Origin", "Message", "Relation", "Insert", "Commit"),
    ]
    outside, inside = got[0], got[3]
    assert isinstance(outside, Message) and isinstance(inside, Message)
    assert (outside.transactional, outside.prefix, outside.content) == (False, "ddp", b"outside")
    assert (inside.transactional, inside.prefix, inside.content) == (True, "ddp", b"inside")
    assert got[2] == Origin(commit_lsn=0x2A, name="elsewhere")


def test_protocol_2_streams_a_transaction_larger_than_the_decoding_memory(db, slot):
    db.run(
        "CREATE TABLE book (id integer PRIMARY KEY, title text)",
        "CREATE PUBLICATION pub FOR TABLE book",
        "SET logical_decoding_work_mem = '64kB'",
    )
    create_slot(db, slot)
    db.run("INSERT INTO book SELECT i, 'title ' || i FROM generate_series(1, 5000) AS i")
    got = [message for _, message in changes(db, slot, "streaming", "on", version="2")]
    starts = [m for m in got if isinstance(m, StreamStart)]
    assert len(starts) == len([m for m in got if isinstance(m, StreamStop)]) > 1
    assert starts[0].first_segment and not any(s.first_segment for s in starts[1:])
    xid = starts[0].xid
    assert {s.xid for s in starts} == {xid}
    inserts = [m for m in got if isinstance(m, Insert)]
    assert {insert.xid for insert in inserts} == {xid}
    assert [int(insert.new[0]) for insert in inserts] == list(range(1, 5001))
    assert isinstance(got[-1], StreamCommit) and got[-1].xid == xid
