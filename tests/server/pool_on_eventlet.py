"""A database pool on the eventlet driver, as ``ddpserver`` runs it, in a process of its
own (``python -m tests.server.pool_on_eventlet <size>``, from test_pool.py): the test
process must stay unpatched.

Prints how many jobs ran at once, how many connections they used, and ``closed`` once
the closed pool's connections have all ended.
"""

import sys

from ddp.server import eventlet_driver


def main(size):
    eventlet_driver.monkey_patch()  # before Django makes its thread-locals
    import django

    django.setup()
    from django.db import connection

    from ddp.server.pool import DatabasePool
    from tests.live import wait_until

    driver = eventlet_driver.EventletDriver()
    pool = DatabasePool(size, driver)
    arrived = []
    all_in = driver.event()

    def backend_pid():
        """This worker's backend, once every worker holds a job (one job per worker)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        arrived.append(pid)
        if len(arrived) == size:
            all_in.set()
        all_in.wait(30)
        return pid

    for _ in range(size):
        driver.spawn(pool.run, backend_pid)
    if not all_in.wait(30):
        sys.exit(f"only {len(arrived)} of {size} jobs ran at once")
    print(len(arrived), len(set(arrived)), flush=True)
    pool.close()
    with connection.cursor() as cursor:

        def ended():
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [arrived])
            return not cursor.fetchone()[0]

        wait_until(ended, timeout=10, what="the closed pool's connections to end")
    print("closed", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
