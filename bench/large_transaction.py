"""How a very large transaction goes through database capture: time, and the reader's memory.

``python bench/large_transaction.py [--rows 10000,100000,1000000]``, from anywhere.

Issue 13 asks that a transaction of a million rows be streamed and bounded in memory, never
held whole. One ``ddpserver`` runs in ``DDP["CAPTURE"] = "database"`` mode, so it is the
elected reader; one client (``ddp.testing``'s websocket client) subscribes to the books of a
marker author. For each ``--rows``, in one transaction, this process inserts that many
books of the bench's author with one ``INSERT ... SELECT generate_series`` and, last, one
book of the marker author; then it waits for the marker's ``added`` at the client.

Every one of those rows goes through the reader: read from the slot, matched against the
live subscriptions (none holds the bench author's books) and sent to every server as an
event, which each server then checks against its own subscriptions. The marker arrives
only after all of them, so its arrival time is the time the transaction took to go
through capture. Reported for each size:

* ``write``: the transaction's own time, from its first statement to the return of its
  COMMIT: the baseline, measured in the same run;
* ``through capture``: from the COMMIT's return to the marker's ``added`` at the client,
  its rows per second, and its ratio to ``write``;
* the server's peak resident memory (``VmHWM`` of ``/proc/<pid>/status``, the kernel's own
  peak) before and after. It only grows, and sizes run from small to large: if the reader
  held a transaction whole, the peak would grow with the rows; if it streams, it stays.

The bench's rows are deleted at the end (and a killed run's at the start), and the slot and
publication are dropped once the server has stopped, even on failure.
"""

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone

from capture import check_slot, drop_slot, start_server
from connections import status_kb
from fanout import numbers, setup_django, stop

AUTHOR_EMAIL = "bench@large-transaction.invalid"
MARKER_EMAIL = "marker@large-transaction.invalid"
#: Seconds the marker may take to arrive: a million rows at the slowest rate seen.
ARRIVAL_TIMEOUT = 1800


def delete_rows():
    """The bench's authors and books, in SQL: a cascade of signals for each of a million
    books would take longer than the bench."""
    from django.db import connection

    from bookstore.models import Author, Book

    authors = Author.objects.filter(email__in=[AUTHOR_EMAIL, MARKER_EMAIL])
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {Book._meta.db_table} WHERE author_id = ANY(%s)",
            [list(authors.values_list("pk", flat=True))],
        )
    authors.delete()


def authors():
    from bookstore.models import Author

    delete_rows()  # a killed run's
    return (
        Author.objects.create(name="bench", email=AUTHOR_EMAIL),
        Author.objects.create(name="marker", email=MARKER_EMAIL),
    )


def write(rows, author, marker, title):
    """One transaction of ``rows`` books of ``author`` and the marker's; its seconds."""
    from django.db import connection, transaction
    from django.test import override_settings

    from bookstore.models import Book

    started = time.monotonic()
    # As every writer in this mode: its own signals send nothing; only the reader does.
    with override_settings(DDP={"CAPTURE": "database"}), transaction.atomic(), \
            connection.cursor() as cursor:  # fmt: skip
        cursor.execute(
            f"INSERT INTO {Book._meta.db_table} (title, author_id)"
            " SELECT 'bench-large-' || n, %s FROM generate_series(1, %s) AS n",
            [author.pk, rows],
        )
        Book.objects.create(title=title, author=marker)
    return time.monotonic() - started


def wait_for_marker(client, title):
    """The time the marker's ``added`` arrived; answers the server's pings meanwhile."""
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    seen = len(client.messages)
    while time.monotonic() < deadline:
        books = client.collection("bookstore.book")
        if any(fields.get("title") == title for fields in books.values()):
            return time.monotonic()
        client._pump(1.0)
        for message in client.messages[seen:]:
            if message.get("msg") == "ping":
                client.send({"msg": "pong", **({"id": message["id"]} if "id" in message else {})})
        seen = len(client.messages)
    raise TimeoutError(f"The marker {title!r} did not arrive within {ARRIVAL_TIMEOUT} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=numbers, default=[10_000, 100_000, 1_000_000],
        help="rows per transaction, comma separated (default 10000,100000,1000000)",
    )  # fmt: skip
    args = parser.parse_args()
    setup_django()
    from ddp.replication.reader import BATCH
    from ddp.testing import WebSocketDDPClient

    check_slot()
    author, marker = authors()
    server = client = None
    results = []
    try:
        server = start_server("database")
        pid = server.process.pid
        client = WebSocketDDPClient(f"ws://127.0.0.1:{server.port}/websocket", timeout=60)
        client.subscribe("BooksByAuthorEmail", MARKER_EMAIL)
        for rows in sorted(args.rows):
            before = status_kb(pid, "VmHWM")
            title = f"bench-marker-{rows}"
            wrote = write(rows, author, marker, title)
            committed = time.monotonic()
            took = wait_for_marker(client, title) - committed
            after = status_kb(pid, "VmHWM")
            results.append((rows, wrote, took, before, after))
            print(f"  {rows:,} rows: write {wrote:.2f} s, through capture {took:.2f} s", flush=True)
    finally:
        if client is not None:
            client.close()
        if server is not None:
            stop(server)
        delete_rows()
        drop_slot()

    print()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()},"
          f" {os.cpu_count()} CPUs; reader batch {BATCH:,} rows")  # fmt: skip
    print(
        f"{'rows':>10} {'write s':>8} {'capture s':>10} {'rows/s':>9} {'capture/write':>14}"
        f" {'VmHWM before':>13} {'VmHWM after':>12}"
    )
    for rows, wrote, took, before, after in results:
        print(
            f"{rows:>10,} {wrote:>8.2f} {took:>10.2f} {rows / took:>9,.0f} {took / wrote:>13.1f}x"
            f" {before / 1024:>10.1f} MB {after / 1024:>9.1f} MB"
        )


if __name__ == "__main__":
    sys.exit(main())
