"""The database workers keep their connections across jobs: one that died while idle
(PostgreSQL restarted, or an administrator ended it) must not fail the next job."""

import time

import pytest
from django.db import connection

from ddp.server.pool import DatabasePool

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.fixture
def pool():
    pool = DatabasePool(1)
    yield pool
    pool.close()


def test_a_connection_ended_while_idle_is_replaced_before_the_next_job(pool):
    first = pool.run(backend_pid)
    assert pool.run(backend_pid) == first  # kept across jobs
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        deadline = time.monotonic() + 10
        while True:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [first])
            if not cursor.fetchone()[0]:
                break
            assert time.monotonic() < deadline, "the backend never ended"
            time.sleep(0.05)
    assert pool.run(backend_pid) != first
