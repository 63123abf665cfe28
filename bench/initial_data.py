"""How fast one subscription's initial data reaches its client, and what it costs in memory.

``python bench/initial_data.py [--rows 100000]``, from anywhere.

This process bulk-inserts ``--rows`` books (``bookstore.Book``, titles ``bench-init-<n>``, one
author of its own) into the example project's database (``testproject/``, ``migrate`` run
first), then starts one ``ddpserver`` and subscribes one raw WebSocket client to ``AllBooks``
(every author and every book). The client counts the ``added`` messages until ``ready``.
Meanwhile a thread of this process reads the server's ``VmRSS`` from ``/proc/<pid>/status``
every 5 ms; ``VmHWM`` (the kernel's own peak) is read before and after.

Reported: rows/s (``added`` received / time from ``sub`` sent to ``ready``), the server's
resident memory before the subscription, its peak during it, and the difference per row: if
the server held the whole result in memory, that difference would grow with the rows.

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
    from bookstore.models import Author, Book
    from ddp.api import API
    from ddp.serialize import document

    started = time.perf_counter()
    count = 0
    for model in (Author, Book):
        collection = API.collections_for_model(model)[0]
        for obj in model.objects.all().iterator(chunk_size=2000):
            json.dumps(document(obj, collection))
            count += 1
    return count, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="books (default 100000)")
    args = parser.parse_args()

    load = os.getloadavg()
    setup_django()
    from bookstore.models import Author, Book
    from ddp.testing import ServerProcess

    Book.objects.filter(title__startswith=PREFIX).delete()
    author, _ = Author.objects.get_or_create(email=AUTHOR_EMAIL, defaults={"name": PREFIX})
    server = None
    try:
        print(f"inserting {args.rows:,} books...", flush=True)
        inserted = time.perf_counter()
        for start in range(0, args.rows, BATCH):
            Book.objects.bulk_create(
                Book(title=f"{PREFIX}{n}", author=author)
                for n in range(start, min(start + BATCH, args.rows))
            )
        inserted = time.perf_counter() - inserted
        published = Book.objects.count() + Author.objects.count()
        base_rows, base_seconds = baseline()

        server = ServerProcess(command=[sys.executable, str(MANAGE), "ddpserver"], cwd=ROOT)
        server.start()
        pid = server.process.pid
        time.sleep(2)  # let it finish starting (listener, registry) before "before"
        before, hwm_before = status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM")
        sampler = Sampler(pid)
        sampler.start()
        print(f"subscribing to AllBooks ({published:,} documents)...", flush=True)
        added, seconds = subscribe(server.port)
        sampler.done.set()
        sampler.join(5)
        after, hwm_after = status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM")
    finally:
        if server is not None:
            stop(server)
        author.delete()  # and its books
        Book.objects.filter(title__startswith=PREFIX).delete()

    peak = max(sampler.peak, hwm_after)
    rate, base_rate = added / seconds, base_rows / base_seconds
    cpus = os.cpu_count()
    print()
    print("Initial data of one subscription (bench/initial_data.py)")
    print(f"date      {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine   {platform.platform()}, os.cpu_count() = {cpus}")
    print(f"python    {platform.python_version()} ({platform.python_implementation()})")
    print(f"data      {args.rows:,} books bulk-inserted in {inserted:.1f} s; AllBooks publishes")
    print(f"          {published:,} documents (every author and book in the database)")
    print(f"shared    client, server and PostgreSQL share these {cpus} CPUs")
    print(f"load      {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)")
    print()
    print(f"added received   {added:,} in {seconds:.2f} s, sub to ready")
    print(f"rate             {rate:,.0f} rows/s")
    print(f"baseline         {base_rate:,.0f} rows/s: ORM .iterator() + document() + json.dumps")
    print(f"                 in this process, {base_rows:,} rows")
    print(f"ddp / baseline   {rate / base_rate:.3f}")
    print()
    print(f"server VmRSS     {before / 1024:,.1f} MB before the sub, {after / 1024:,.1f} MB after")
    print(f"server peak      {peak / 1024:,.1f} MB: VmRSS polled every 5 ms, {sampler.samples:,}")
    print(f"                 samples, peak {sampler.peak / 1024:,.1f} MB; VmHWM")
    print(f"                 {hwm_before / 1024:,.1f} MB before, {hwm_after / 1024:,.1f} MB after")
    per_doc = (peak - before) * 1024 / added
    grown = (peak - before) / 1024
    print(f"peak - before    {grown:,.1f} MB = {per_doc:,.0f} bytes per document sent")


if __name__ == "__main__":
    main()
