"""The database workers keep their connections across jobs: one that died while idle
(PostgreSQL restarted, or an administrator ended it) must not fail the next job, and what
a job leaves on it (DEBUG's query log) must not pile up.

The pool runs on the fake driver here, its worker on the test's own connection; that each
worker of ``ddpserver`` has a connection of its own (eventlet's green thread-locals) is
checked on the eventlet driver, in a process of its own."""

import os
import subprocess
import sys

import psycopg2
import pytest
from django.db import connection
from django.test import override_settings

from ddp.testing.database import database_url
from tests.live import ROOT, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_connection_ended_while_idle_is_replaced_before_the_next_job(pool):
    first = pool.run(backend_pid)
    assert pool.run(backend_pid) == first  # kept across jobs
    admin = psycopg2.connect(database_url(connection.settings_dict))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])

            def ended():
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [first])
                return not cursor.fetchone()[0]

            wait_until(ended, timeout=10, what="the backend's end")
    finally:
        admin.close()
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


def test_a_job_given_up_on_while_queued_is_withdrawn(pool):
    release = pool.driver.event()
    pool.driver.spawn(pool.run, release.wait)
    pool.driver.run()
    with pytest.raises(TimeoutError, match="no answer within 3 s"):
        pool.run(backend_pid, timeout=3)
    assert pool.waiting == 0
    release.set()
    assert pool.run(lambda: "after") == "after"


def test_a_job_waits_for_a_worker_and_an_idle_worker_is_woken_for_it(pool):
    """One worker, three jobs at once: each waits its turn, none is lost, and the worker
    that waited for work takes the next one as soon as it comes."""
    finished = []

    def job(n):
        pool.driver.sleep(1)
        finished.append((n, pool.driver.clock()))

    start = pool.driver.clock()
    for n in range(3):
        pool.driver.spawn(pool.run, job, n)
    pool.driver.advance(3)
    assert finished == [(0, start + 1), (1, start + 2), (2, start + 3)]
    pool.driver.advance(10)
    pool.driver.spawn(pool.run, job, 3)
    pool.driver.advance(1)
    assert finished[-1] == (3, start + 14)


def test_each_worker_of_an_eventlet_pool_has_a_connection_of_its_own():
    """Django keeps a connection per thread: under ``ddpserver`` a worker's green thread is
    one, once eventlet has patched ``threading.local``."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.server.pool_on_eventlet", "3"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url(connection.settings_dict),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "3", "closed"]
