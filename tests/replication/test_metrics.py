"""``/metrics`` shows database capture's slot lag, only while there is a slot."""

import pytest

from ddp.replication import setup
from tests.replication.conftest import reading_slot
from tests.server.test_observability import scrape, server_state

pytestmark = pytest.mark.django_db(transaction=True)

LAG_BYTES = ("ddp_replication_slot_lag_bytes", ())
LAG_SECONDS = ("ddp_replication_slot_lag_seconds", ())


def test_no_slot_no_lag_series(pool, cursor):
    values = scrape(server_state(pool.run))
    assert LAG_BYTES not in values and LAG_SECONDS not in values
    assert ("ddp_notification_queue_usage", ()) in values


def test_the_lag_of_a_slot_nobody_reads_grows_with_writes(pool, cursor):
    setup.ensure_slot(cursor)
    before = scrape(server_state(pool.run))
    cursor.execute("INSERT INTO bookstore_author (name, email) VALUES ('Lag', 'lag@example.com')")
    after = scrape(server_state(pool.run))
    assert after[LAG_BYTES] > before[LAG_BYTES]
    # Nobody has read it since it was made: PostgreSQL 17's inactive_since.
    assert after[LAG_SECONDS] >= 0


def test_a_read_slot_has_its_lag_in_bytes(pool, cursor):
    with reading_slot(cursor):
        values = scrape(server_state(pool.run))
    assert values[LAG_BYTES] >= 0
