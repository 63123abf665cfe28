"""The reader in this process, on the fake driver, for what its log says when the
database fails it.

A database error while announcing (PostgreSQL restarting under the database workers) is
an expected fault the reader recovers from by reading again from the slot: one warning
line, as for the stream's own errors, not an error with a traceback.
"""

import logging

import pytest
from django.db import OperationalError, connection

from ddp.replication.reader import Reader
from ddp.testing.driver import FakeDriver
from tests.live import wait_until
from tests.replication.conftest import drive_until, slot_active

pytestmark = pytest.mark.django_db(transaction=True)


class FlakyDatabase:
    """``run_db`` whose first job fails as Django fails when PostgreSQL goes away."""

    def __init__(self):
        self.calls = 0
        self.ran = False

    def __call__(self, func, *args):
        self.calls += 1
        if self.calls == 1:
            raise OperationalError("terminating connection due to administrator command")
        result = func(*args)
        self.ran = True
        return result


def test_a_database_error_while_announcing_is_a_warning_and_the_reader_goes_on(cursor, caplog):
    run_db = FlakyDatabase()
    driver = FakeDriver()
    reader = Reader(connection.get_connection_params(), run_db, driver)
    caplog.set_level(logging.INFO, logger="ddp.replication")
    reader.start()
    try:
        drive_until(driver, lambda: slot_active(cursor), "the reader's stream")
        cursor.execute("INSERT INTO bookstore_author (name, email) VALUES ('R', 'r@example.com')")
        drive_until(driver, lambda: run_db.ran, "the reader's announcing again")
    finally:
        reader.stop()
        wait_until(lambda: not slot_active(cursor), timeout=30)
    records = [r for r in caplog.records if r.name == "ddp.replication"]
    assert [r.levelno for r in records if r.levelno >= logging.WARNING] == [logging.WARNING]
    [warning] = [r for r in records if r.levelno == logging.WARNING]
    assert "terminating connection" in warning.getMessage() and warning.exc_info is None
