"""A transaction of a million rows goes through database capture streamed, never held whole.

One ``ddpserver`` in ``DDP["CAPTURE"] = "database"`` mode reads the test database's slot.
One transaction inserts a million books of one author and, last, one book of a marker
author, whose books a client follows. Every row is read from the slot, matched (none is
followed) and sent to the server as an event: the marker reaches the client only after all
of them. The server's peak memory may grow by what a batch and the libraries' buffers take,
never by what a million rows would: each decoded row change is a dict of its columns
(several hundred bytes in Python), so holding them would add hundreds of megabytes.
``bench/large_transaction.py`` shows the same figures for several sizes.
"""

import time

import pytest
from django.db import connection, transaction
from django.test import override_settings

from bookstore.models import Author, Book
from ddp.testing import WebSocketDDPClient
from tests.live import ServerProcess, metric, wait_until
from tests.replication.conftest import slot_active, titles, wait_until_reading

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 1_000_000
#: What the server's peak memory may grow by while the transaction goes through: a few
#: batches and buffers (about 40 MB in the bench), far from the rows held whole.
MAX_GROWTH_MB = 150
#: Seconds the transaction may take to go through capture (about 60 on a 2-CPU machine).
TIMEOUT = 900
DATABASE = {"CAPTURE": "database"}
ANNOUNCED = "ddp_replication_changes_total"


def peak_mb(pid):
    """``VmHWM``, the kernel's record of the process's peak resident memory, in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def wait_for_title(client, title):
    """Read ``client`` until it holds a book titled ``title``, answering pings meanwhile
    (a test client does not, and the wait is longer than a heartbeat)."""
    deadline = time.monotonic() + TIMEOUT
    seen = 0
    while title not in titles(client).values():
        assert time.monotonic() < deadline, f"{title!r} never arrived"
        client._pump(1.0)
        for message in client.messages[seen:]:
            if message.get("msg") == "ping":
                client.send({"msg": "pong", **({"id": message["id"]} if "id" in message else {})})
        seen = len(client.messages)


def test_a_million_row_transaction_is_streamed_in_bounded_memory(cursor):
    bulk = Author.objects.create(name="Bulk", email="bulk@example.com")
    marker = Author.objects.create(name="Marker", email="marker@example.com")
    server = ServerProcess(ddp=DATABASE).start()
    try:
        wait_until_reading(cursor, server)
        client = WebSocketDDPClient(server.ws_url, timeout=60)
        client.subscribe("BooksByAuthorEmail", marker.email)
        before = metric(server, ANNOUNCED), peak_mb(server.process.pid)
        with override_settings(DDP=DATABASE), transaction.atomic():
            with connection.cursor() as writer:
                writer.execute(
                    f"INSERT INTO {Book._meta.db_table} (title, author_id)"
                    " SELECT 'bulk ' || n, %s FROM generate_series(1, %s) AS n",
                    [bulk.pk, ROWS],
                )
            Book.objects.create(title="the last row", author=marker)
        wait_for_title(client, "the last row")
        announced, peak = metric(server, ANNOUNCED), peak_mb(server.process.pid)
        # Every row went through the reader; none of the bulk author's reached the client.
        assert announced - before[0] >= ROWS + 1
        assert list(titles(client).values()) == ["the last row"]
        assert peak - before[1] < MAX_GROWTH_MB, f"peak {before[1]:.0f} -> {peak:.0f} MB"
        client.close()
    finally:
        server.stop()
        wait_until(lambda: not slot_active(cursor), timeout=30)  # for ``cursor`` to drop it
