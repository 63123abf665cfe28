"""The database workers keep their connections across jobs: one that died while idle
(PostgreSQL restarted, or an administrator ended it) must not fail the next job, and what
a job leaves on it (DEBUG's query log) must not pile up."""

import time

import pytest
from django.db import connection
from django.test import override_settings

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


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


def queries_logged():
    """The query log of the worker's connection, after one query of its own."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return len(connection.queries_log)


@override_settings(DEBUG=True)
def test_debug_query_log_is_per_job_as_django_keeps_it_per_request(pool):
    """With DEBUG on, Django logs every query of a connection and clears the log when a
    request starts. A worker's connection lives for the server's life: a job is its
    request, or the log would hold the last 9,000 statements (a replication batch's
    NOTIFYs are a megabyte each)."""
    assert [pool.run(queries_logged) for _ in range(5)] == [1] * 5
