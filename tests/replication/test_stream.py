"""Reading a slot over a real replication connection: per transaction, as it comes, confirmed
positions kept across a lost connection, status updates while idle, green under eventlet."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from ddp.replication.pgoutput import Begin, Commit, Insert, parse_lsn
from ddp.replication.stream import Received, StreamLost
from tests.live import ROOT, wait_until

#: Seconds a test waits for something the server does at once: generous, for a busy machine.
PATIENCE = 30


@pytest.fixture
def books(db, slot):
    """A published table ``book`` and a pgoutput slot created before any change."""
    db.run(
        "CREATE TABLE book (id integer PRIMARY KEY, title text)",
        "CREATE PUBLICATION pub FOR TABLE book",
        ("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot]),
    )
    return db


def read_transactions(stream, count):
    """Everything ``stream`` hands over up to its ``count``-th Commit."""
    received = []
    while count:
        item = stream.read(timeout=PATIENCE)
        assert item is not None, f"no message within {PATIENCE} s after {received[-5:]}"
        received.append(item)
        count -= isinstance(item.message, Commit)
    return received


def inserted_ids(received):
    return [int(r.message.new[0]) for r in received if isinstance(r.message, Insert)]


def slot_confirmed(db, slot):
    return parse_lsn(
        db.value(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s", [slot]
        )
    )


def slot_active(db, slot):
    return db.value("SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot])


def terminate_reader(db, slot):
    db.run(
        (
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            [slot],
        )
    )


def test_messages_come_with_their_transaction(books, slot, open_stream):
    stream = open_stream(slot)
    books.run(
        "BEGIN",
        "INSERT INTO book VALUES (1, 'Dune')",
        "INSERT INTO book VALUES (2, NULL)",
        "COMMIT",
        "UPDATE book SET title = 'Emma' WHERE id = 2",
    )
    received = read_transactions(stream, 2)
    kinds = [type(r.message).__name__ for r in received]
    assert kinds == ["Begin", "Relation", "Insert", "Insert", "Commit", "Begin", "Update", "Commit"]
    first, second = received[0].message, received[5].message
    assert isinstance(first, Begin) and isinstance(second, Begin)
    assert [r.transaction for r in received] == [first] * 5 + [second] * 3
    assert received[3].message.new == ("2", None)
    commit = received[-1].message
    assert commit.commit_lsn == second.final_lsn
    # A Commit's position is its end_lsn, the position to confirm.
    assert received[-1].lsn == commit.end_lsn == stream.received_lsn
    assert stream.confirmed_lsn == 0
    assert stream.read(timeout=0.2) is None


def test_a_huge_transaction_is_handed_over_before_it_is_all_received(books, slot, open_stream):
    stream = open_stream(slot)
    books.run("INSERT INTO book SELECT i, 'title ' || i FROM generate_series(1, 20000) AS i")
    begin = stream.read(timeout=PATIENCE)
    assert isinstance(begin.message, Begin)
    stream.read(timeout=PATIENCE)  # The Relation.
    first = stream.read(timeout=PATIENCE)
    assert first.message.new == ("1", "title 1")
    # The transaction's Commit is still ahead: nothing held it back to hand it over whole.
    assert stream.received_lsn < begin.message.final_lsn
    rest = read_transactions(stream, 1)
    assert inserted_ids([first, *rest]) == list(range(1, 20001))


def test_confirm_refuses_a_position_not_received(books, slot, open_stream):
    stream = open_stream(slot)
    books.run("INSERT INTO book VALUES (1, 'Dune')")
    commit = read_transactions(stream, 1)[-1].message
    with pytest.raises(ValueError, match="Cannot confirm"):
        stream.confirm(commit.end_lsn + 1)
    assert stream.confirmed_lsn == 0


@pytest.mark.parametrize("reader", ["the same stream", "a new stream"])
def test_after_a_lost_connection_only_unconfirmed_transactions_come_again(
    books, slot, open_stream, reader
):
    stream = open_stream(slot)
    books.run("INSERT INTO book VALUES (1, 'Dune')", "INSERT INTO book VALUES (2, 'Emma')")
    received = read_transactions(stream, 2)
    assert inserted_ids(received) == [1, 2]
    first_commit, second_commit = [r.message for r in received if isinstance(r.message, Commit)]
    stream.confirm(first_commit.end_lsn)
    assert stream.confirmed_lsn == first_commit.end_lsn
    wait_until(
        lambda: slot_confirmed(books, slot) >= first_commit.end_lsn, PATIENCE, "the confirmation"
    )
    assert slot_confirmed(books, slot) < second_commit.end_lsn

    terminate_reader(books, slot)
    with pytest.raises(StreamLost, match=f"Lost the replication of slot {slot}"):
        read_transactions(stream, 1)

    wait_until(lambda: not slot_active(books, slot), PATIENCE, "the walsender's exit")
    if reader == "the same stream":
        stream.connect()
    else:
        stream = open_stream(slot)
    books.run("INSERT INTO book VALUES (3, 'Ulysses')")
    again = read_transactions(stream, 2)
    assert inserted_ids(again) == [2, 3]


def test_a_confirmation_made_while_disconnected_reaches_the_slot_on_reconnecting(
    books, slot, open_stream
):
    stream = open_stream(slot)
    books.run("INSERT INTO book VALUES (1, 'Dune')", "INSERT INTO book VALUES (2, 'Emma')")
    received = read_transactions(stream, 2)
    first_commit = next(r.message for r in received if isinstance(r.message, Commit))
    terminate_reader(books, slot)
    with pytest.raises(StreamLost):
        read_transactions(stream, 1)
    # The first transaction's events commit while the connection is down.
    stream.confirm(first_commit.end_lsn)
    assert slot_confirmed(books, slot) < first_commit.end_lsn
    wait_until(lambda: not slot_active(books, slot), PATIENCE, "the walsender's exit")
    stream.connect()
    wait_until(
        lambda: slot_confirmed(books, slot) >= first_commit.end_lsn, PATIENCE, "the confirmation"
    )
    assert inserted_ids(read_transactions(stream, 1)) == [2]


def test_a_stream_holding_a_taken_slot_is_lost(books, slot, open_stream):
    open_stream(slot)
    with pytest.raises(StreamLost, match=f"Cannot replicate slot {slot}:.*active"):
        open_stream(slot)


def test_an_idle_stream_sends_status_updates(books, slot, open_stream):
    stream = open_stream(slot, keepalive_interval=0.1)
    pid = books.value("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [slot])
    seen = set()
    reader = threading.Thread(target=stream.read, kwargs={"timeout": 2.0})
    reader.start()
    while reader.is_alive():
        seen.add(books.value("SELECT reply_time FROM pg_stat_replication WHERE pid = %s", [pid]))
        time.sleep(0.05)
    reader.join()
    # One status update every 0.1 s: many distinct reply times in 2 s, not one at the end.
    assert len(seen - {None}) >= 5


GREEN_READER = """
import json, sys
import psycopg2
from ddp.server import eventlet_driver
import eventlet
from ddp.replication.stream import ReplicationStream

params, slot = json.loads(sys.argv[1]), sys.argv[2]
ticks = 0

def tick():
    global ticks
    while True:
        eventlet.sleep(0.01)
        ticks += 1

eventlet.spawn_n(tick)
stream = ReplicationStream(params, slot, ["pub"], eventlet_driver.wait_readable)
stream.connect()
idle = stream.read(timeout=1.0)
ticks_while_idle = ticks
writer = psycopg2.connect(**params)
writer.autocommit = True
writer.cursor().execute("INSERT INTO book VALUES (1, 'Dune')")
kinds = []
while "Commit" not in kinds:
    kinds.append(type(stream.read(timeout=30).message).__name__)
print(json.dumps({"idle": idle, "ticks": ticks_while_idle, "kinds": kinds}))
"""


def test_under_eventlet_other_green_threads_run_while_it_waits(books, slot, logical_db):
    result = subprocess.run(
        [sys.executable, "-c", GREEN_READER, json.dumps(logical_db), slot],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["idle"] is None
    # A ticker sleeping 0.01 s at a time ran on while the reader waited for 1 s.
    assert got["ticks"] >= 20
    assert got["kinds"] == ["Begin", "Relation", "Insert", "Commit"]


def test_received_carries_its_position(books, slot, open_stream):
    stream = open_stream(slot)
    books.run("INSERT INTO book VALUES (1, 'Dune')")
    begin, relation, insert, commit = read_transactions(stream, 1)
    assert isinstance(insert, Received)
    assert relation.lsn == 0 < begin.lsn <= insert.lsn < commit.lsn
