"""How fast one subscription's initial data reaches its client, and what it costs in memory.

``python bench/initial_data.py [--rows 100000] [--strategies SERVER_MERGE,NO_MERGE]``, from
anywhere.

This process bulk-inserts ``--rows`` books (``bookstore.Book``, titles ``bench-init-<n>``, one
author of its own) into the example project's database (``testproject/``, ``migrate`` run
first). Then, for each publication strategy of ``--strategies`` (``Collection.strategy``, see
the README), it starts a fresh ``ddpserver`` whose collections all use that strategy and
subscribes one raw WebSocket client to ``AllBooks`` (every author and every book). The client
counts the ``added`` messages until ``ready``. Meanwhile a thread of this process reads the
server's ``VmRSS`` from ``/proc/<pid>/status`` every 5 ms; ``VmHWM`` (the kernel's own peak)
is read after. The server is this script itself (``--serve STRATEGY ddpserver ...``): it sets
the strategy on every registered collection, then runs ``ddpserver`` as ``manage.py`` would.

Reported per strategy: rows/s (``added`` received / time from ``sub`` sent to ``ready``), the
server's resident memory before the subscription, its peak during it and after it, and the
difference per document; and, measured in this process with ``tracemalloc``, the bytes a
merge box of that strategy keeps per document when fed the same documents (what a
connection holds, without the allocator's or the server's other costs).

The baseline, in the same run: the same rows read by this process through the ORM with
``.iterator()`` and serialized with ``ddp.serialize.document`` (the query and the documents
without DDP, the socket, or the client), in rows/s. The books are deleted at the end (and at
the start, should a killed run have left some). Client, server and PostgreSQL share the
machine; only 127.0.0.1 is used and every wait is bounded.
"""

import argparse
import json
import os
import platform
import sys
import threading
import time
import tracemalloc
from datetime import datetime, timezone

from fanout import (
    MANAGE,
    PING,
    PONG,
    ROOT,
    TEXT,
    client_frame,
    handshake,
    setup_django,
    stop,
    take_frames,
)

PREFIX = "bench-init-"
AUTHOR_EMAIL = "bench@initial-data.invalid"
#: Seconds without a message after which the client gives up.
IDLE_TIMEOUT = 60
BATCH = 5000


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class Sampler(threading.Thread):
    """Polls a process's VmRSS until stopped; keeps the peak."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, 0, 0
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.005):
            self.peak = max(self.peak, status_kb(self.pid, "VmRSS"))
            self.samples += 1


def subscribe(port):
    """Subscribe to AllBooks; return (added messages, seconds from sub to ready)."""
    sock, buf = handshake(port)
    sock.sendall(client_frame(TEXT, b'{"msg":"connect","version":"1","support":["1"]}'))
    sock.settimeout(IDLE_TIMEOUT)
    started = time.perf_counter()
    sock.sendall(client_frame(TEXT, b'{"msg":"sub","id":"1","name":"AllBooks","params":[]}'))
    added = 0
    try:
        while True:
            data = sock.recv(1 << 18)
            if not data:
                raise ConnectionError(f"Closed after {added} added")
            buf += data
            for opcode, payload in take_frames(buf):
                if opcode == PING:
                    sock.sendall(client_frame(PONG, payload))
                    continue
                if opcode != TEXT:
                    continue
                if payload.startswith(b'{"msg":"added"'):
                    added += 1
                    continue
                message = json.loads(payload)
                kind = message.get("msg")
                if kind == "added":
                    added += 1
                elif kind == "ready":
                    return added, time.perf_counter() - started
                elif kind == "ping":
                    sock.sendall(client_frame(TEXT, b'{"msg":"pong"}'))
                elif kind in ("nosub", "error"):
                    raise RuntimeError(f"Server answered {message}")
    finally:
        sock.close()


def baseline():
    """Rows/s of the same query and serialization in this process, without DDP."""
    from ddp.serialize import document

    started = time.perf_counter()
    count = 0
    for model, collection in published():
        for obj in model.objects.all().iterator(chunk_size=2000):
            json.dumps(document(obj, collection))
            count += 1
    return count, time.perf_counter() - started


def published():
    """``(model, Collection)`` of what ``AllBooks`` publishes."""
    from bookstore.models import Author, Book
    from ddp.api import API

    return [(model, API.collection_for_model(model)) for model in (Author, Book)]


def box_bytes(strategy):
    """Bytes per document a merge box of ``strategy`` keeps, fed every AllBooks document
    (tracemalloc: the box's own allocations, the documents being dropped after each)."""
    from ddp.protocol import MergeBox
    from ddp.serialize import documents

    pairs = [(model.objects.all(), collection) for model, collection in published()]
    box = MergeBox({collection.get_name(): strategy for _, collection in pairs})
    tracemalloc.start()
    before, count = tracemalloc.get_traced_memory()[0], 0
    for queryset, collection in pairs:
        name = collection.get_name()
        for doc_id, fields in documents(queryset, collection):
            box.added(("N", "1"), name, doc_id, fields)
            count += 1
    # The ORM's last chunk of rows is gone with the iterator; what is left is the box's.
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def serve(strategy, argv):
    """The server of one row: ``ddpserver`` with every collection using ``strategy``."""
    from ddp.server import eventlet_driver

    if not eventlet_driver.is_patched():
        eventlet_driver.exec_patched()  # starts this script again, eventlet first
    sys.path[:0] = [str(ROOT), str(ROOT / "testproject")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    import django

    django.setup()
    from django.core.management import execute_from_command_line

    from ddp.api import API

    if strategy != "SERVER_MERGE":
        for collection in list(API.collections.values()):
            API.register(type(collection.__name__, (collection,), {"strategy": strategy}))
    execute_from_command_line([str(MANAGE), *argv])


def measure(strategy):
    """Start a server with ``strategy``, subscribe, stop it: the figures of one row."""
    from ddp.testing import ServerProcess

    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--serve",
        strategy,
        "ddpserver",
        "--noreload",
    ]
    server = ServerProcess(command=command, cwd=ROOT)
    server.start()
    try:
        pid = server.process.pid
        time.sleep(2)  # let it finish starting (listener, registry) before "before"
        before = status_kb(pid, "VmRSS")
        sampler = Sampler(pid)
        sampler.start()
        added, seconds = subscribe(server.port)
        sampler.done.set()
        sampler.join(5)
        after, hwm = status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM")
    finally:
        stop(server)
    peak = max(sampler.peak, hwm)
    return {
        "strategy": strategy,
        "added": added,
        "seconds": seconds,
        "before": before,
        "peak": peak,
        "after": after,
        "per_doc": (peak - before) * 1024 / added,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="books (default 100000)")
    parser.add_argument(
        "--strategies",
        default="SERVER_MERGE,NO_MERGE",
        help="publication strategies to measure, comma-separated (default SERVER_MERGE,NO_MERGE)",
    )
    parser.add_argument("--serve", metavar="STRATEGY", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve:
        serve(args.serve, rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    strategies = args.strategies.split(",")

    load = os.getloadavg()
    setup_django()
    from bookstore.models import Author, Book
    from ddp.protocol import PUBLICATION_STRATEGIES

    unknown = set(strategies) - set(PUBLICATION_STRATEGIES)
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)}; choose from {PUBLICATION_STRATEGIES}")

    Book.objects.filter(title__startswith=PREFIX).delete()
    author, _ = Author.objects.get_or_create(email=AUTHOR_EMAIL, defaults={"name": PREFIX})
    rows = []
    try:
        print(f"inserting {args.rows:,} books...", flush=True)
        inserted = time.perf_counter()
        for start in range(0, args.rows, BATCH):
            Book.objects.bulk_create(
                Book(title=f"{PREFIX}{n}", author=author)
                for n in range(start, min(start + BATCH, args.rows))
            )
        inserted = time.perf_counter() - inserted
        published_count = Book.objects.count() + Author.objects.count()
        base_rows, base_seconds = baseline()
        for strategy in strategies:
            print(f"{strategy}: subscribing to AllBooks ({published_count:,} documents)...")
            row = measure(strategy)
            row["box"] = box_bytes(strategy)
            rows.append(row)
    finally:
        author.delete()  # and its books
        Book.objects.filter(title__startswith=PREFIX).delete()

    base_rate = base_rows / base_seconds
    cpus = os.cpu_count()
    print()
    print("Initial data of one subscription (bench/initial_data.py)")
    print(f"date      {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine   {platform.platform()}, os.cpu_count() = {cpus}")
    print(f"python    {platform.python_version()} ({platform.python_implementation()})")
    print(f"data      {args.rows:,} books bulk-inserted in {inserted:.1f} s; AllBooks publishes")
    print(f"          {published_count:,} documents (every author and book in the database)")
    print(f"shared    client, server and PostgreSQL share these {cpus} CPUs")
    print(f"load      {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)")
    print(f"baseline  {base_rate:,.0f} rows/s: ORM .iterator() + document() + json.dumps")
    print(f"          in this process, {base_rows:,} rows")
    print()
    header = (
        f"{'strategy':<14} {'added':>8} {'s':>6} {'rows/s':>8} {'/base':>6} "
        f"{'before MB':>9} {'peak MB':>8} {'after MB':>8} {'B/doc':>6} {'box B/doc':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        rate = row["added"] / row["seconds"]
        print(
            f"{row['strategy']:<14} {row['added']:>8,} {row['seconds']:>6.2f} {rate:>8,.0f} "
            f"{rate / base_rate:>6.3f} {row['before'] / 1024:>9.1f} {row['peak'] / 1024:>8.1f} "
            f"{row['after'] / 1024:>8.1f} {row['per_doc']:>6,.0f} {row['box']:>9,.0f}"
        )
    print()
    print("s: sub sent to ready; /base: rows/s over the baseline's. The server's VmRSS before")
    print("the sub, its peak (polled every 5 ms, and VmHWM) and after ready; B/doc: (peak -")
    print("before) / added. box B/doc: tracemalloc, in this process, of a MergeBox of that")
    print("strategy fed the same documents: what one connection keeps per document.")


if __name__ == "__main__":
    main()
