"""``manage.py ddp_capture_status``: the mode, the publication, the slot and its lag."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from ddp.replication import setup
from tests.replication.conftest import TABLES, reading_slot

pytestmark = pytest.mark.django_db(transaction=True)


def status(*args):
    out = io.StringIO()
    call_command("ddp_capture_status", *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.fixture
def name():
    return setup.replication_name(connection.settings_dict["NAME"])


def test_before_anything_is_set_up(cursor, name):
    mode, publication, slot = status()
    # Writers send their changes until a ddpserver has made the slot.
    assert mode.startswith(
        "mode: signals (until a ddpserver makes the slot; database capture is possible: "
        'DDP["CAPTURE"] is "auto", wal_level is logical'
    )
    assert (publication, slot) == (f"publication {name}: none", f"slot {name}: none")


def test_the_publication_its_missing_tables_and_the_slots_lag(cursor, name):
    setup.ensure_publication(cursor, TABLES)
    setup.ensure_slot(cursor)
    cursor.execute("INSERT INTO bookstore_author (name, email) VALUES ('Lag', 'lag@example.com')")
    lines = status()
    assert lines[0].startswith('mode: database (DDP["CAPTURE"] is "auto", wal_level is logical')
    assert lines[1] == f"publication {name}: bookstore_author, bookstore_book"
    others = sorted(set(setup.published_tables()) - set(TABLES))
    assert lines[2] == f"  not in it yet: {', '.join(others)}"
    assert lines[3] == f"slot {name}: nobody reads it; WAL reserved"
    lag = setup.slot_status(cursor).lag_bytes
    assert lines[4].startswith("  lag: ") and lines[4].endswith(" s")
    assert 0 < int(lines[4].split()[1]) <= lag


def test_the_reader_is_named_and_its_slot_is_not_dropped(cursor, name):
    with reading_slot(cursor):
        pid = setup.slot_status(cursor).active_pid
        assert status()[3] == (
            f"slot {name}: read by process {pid} (ddp-test-reader from a local socket); "
            "WAL reserved"
        )
        with pytest.raises(CommandError, match=f"being read by process {pid}: stop the"):
            status("--drop")
    assert status("--drop") == [f"dropped slot {name} and publication {name}"]
    assert status("--drop") == ["nothing to drop"]
    assert setup.slot_status(cursor) is None and setup.publication_tables(cursor) is None
