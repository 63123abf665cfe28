"""Other clients' method calls while clients that never read hold a large publication.

``python bench/slow_reader.py [--books 200000] [--calls 100] [--stalled 1,4]``, from
anywhere.

One ``ddpserver`` of the example project (``testproject/``, its embedded PostgreSQL) with
``--db-pool 1``, as in the issue that found a slow reader could hold the one database
worker: ``--books`` books are made (bulk, untimed), then one client calls
``bookstore.renameBook``, one call at a time, ``--calls`` times:

* alone first: the baseline, in the same run;
* then, for each number in ``--stalled``, after that many more clients (raw sockets with
  a 4 KB receive buffer) have connected, subscribed to ``AllBooks`` (every book) and
  stopped reading.

Reported per row: the calls' round trips (to ``updated``) at p50, p99 and max, their
ratio to the baseline, and how many stalled clients the server had cut off as slow
clients by the end (``ddp_slow_client_disconnects_total``). A worker that waits on a
client's socket shows here as calls answered seconds late; one that does not, as calls
about as fast as alone.

The server, the clients and PostgreSQL share the machine's CPUs. Every wait is bounded,
only 127.0.0.1 is used, and the books and author the bench made are deleted at the end.
Nothing is asserted: this prints figures.
"""

import argparse
import os
import platform
import statistics
import sys
import time
import urllib.request
from datetime import datetime, timezone

from fanout import MANAGE, ROOT, handshake, hello, setup_django
from roundtrip import DDP, WebSocket

#: The bench's author: its ``.invalid`` address cannot be anyone's, and its books go with it.
AUTHOR_EMAIL = "bench@slow-reader.invalid"
#: The stalled clients' receive buffer: what the kernel takes for them before they block.
RECEIVE_BUFFER = 4096
#: Seconds the stalled clients are given to fill their buffers before the calls.
SETTLE = 2.0


def stalled_client(port):
    """Connect, subscribe to every book, and never read again."""
    sock, _ = handshake(port, receive_buffer=RECEIVE_BUFFER)
    sock.sendall(hello())  # connect, then the sub to AllBooks
    return sock


def make_books(count):
    from bookstore.models import Author, Book

    Author.objects.filter(email=AUTHOR_EMAIL).delete()
    author = Author.objects.create(name="bench", email=AUTHOR_EMAIL)
    Book.objects.bulk_create(
        (Book(title=f"bench-{n}", author=author) for n in range(count)), batch_size=10_000
    )
    return author, Book.objects.filter(author=author).order_by("pk").values_list("pk", flat=True)[0]


def calls(client, book_id, count):
    """Seconds of ``count`` renames, each to its ``updated``."""
    return [
        client.call("bookstore.renameBook", str(book_id), f"bench-renamed-{n}")[1]
        for n in range(count)
    ]


def slow_disconnects(server):
    with urllib.request.urlopen(f"{server.url}metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("ddp_slow_client_disconnects_total"):
                return int(float(line.split()[-1]))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=200_000, help="books (default 200,000)")
    parser.add_argument("--calls", type=int, default=100, help="calls per row (default 100)")
    parser.add_argument(
        "--stalled", default="1,4", help="stalled clients per row, comma-separated (default 1,4)"
    )
    args = parser.parse_args()
    stalled_counts = [int(n) for n in args.stalled.split(",")]
    if args.books < 1 or args.calls < 2 or min(stalled_counts) < 1:
        parser.error("--books must be at least 1, --calls 2 and each --stalled 1")
    load = os.getloadavg()
    setup_django()
    from ddp.testing import ServerProcess

    author, book_id = make_books(args.books)
    rows = []
    server = None
    stalled = []
    try:
        server = ServerProcess(
            "--db-pool",
            "1",
            command=[sys.executable, str(MANAGE), "ddpserver", "--noreload"],
            cwd=ROOT,
        ).start()
        caller = DDP(WebSocket(server.ws_url))
        print(f"{args.books:,} books; {args.calls} calls per row...", flush=True)
        rows.append(("alone (baseline)", calls(caller, book_id, args.calls), 0))
        for count in stalled_counts:
            while len(stalled) < count:
                stalled.append(stalled_client(server.port))
            time.sleep(SETTLE)
            seconds = calls(caller, book_id, args.calls)
            rows.append((f"{count} stalled on AllBooks", seconds, slow_disconnects(server)))
        caller.close()
    finally:
        for sock in stalled:
            sock.close()
        if server is not None:
            server.stop()
        author.delete()  # its books go with it (CASCADE)
    report(args, rows, load)


def report(args, rows, load):
    def ms(values, pct):
        return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] * 1000

    base50 = ms(rows[0][1], 50)
    print()
    print("Method calls beside clients that never read (bench/slow_reader.py)")
    print(f"date      {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine   {platform.platform()}, os.cpu_count() = {os.cpu_count()}")
    print(f"python    {platform.python_version()} ({platform.python_implementation()})")
    print(f"server    ddpserver --db-pool 1, {args.books:,} books in AllBooks")
    print(f"calls     {args.calls} bookstore.renameBook per row, one at a time, to updated")
    print(f"load      {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)")
    print()
    header = (
        f"{'row':<26} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'p50 / alone':>11}"
        f" {'cut as slow':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, seconds, cut in rows:
        print(
            f"{name:<26} {ms(seconds, 50):>9.2f} {ms(seconds, 99):>9.2f}"
            f" {max(seconds) * 1000:>9.2f} {ms(seconds, 50) / base50:>11.2f} {cut:>11}"
        )


if __name__ == "__main__":
    main()
