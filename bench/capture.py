"""What each capture mode costs writers, and how fast a commit reaches clients, in one run.

``python bench/capture.py [--writers 1,8,32] [--seconds 5] [--clients 1,1000]
[--rates 20,200] [--latency-seconds 5]``, from anywhere.

Issue 13 moves change capture out of the writer: with ``DDP["CAPTURE"] = "signals"`` every
``save()`` of a published model matches the row against the live subscriptions and NOTIFYs
in a transaction of its own, and every transaction that NOTIFYs takes a cluster-wide lock at
commit; with ``"database"`` the writer sends nothing and one elected ``ddpserver`` reads
PostgreSQL's logical replication stream instead. This bench measures both sides of that.

**Commits per second.** ``--writers`` processes at most (multiprocessing, spawned once and
reused; each with its own connection and its own ``ROWS_PER_WRITER`` books of the bench's
author) run one cell per mode and writer count: from a common start time, for ``--seconds``,
each one saves its books in turn with ``book.save(update_fields=["title"])``, a new title
each time, one autocommit transaction each, as fast as it can. Counted: the saves that
returned before the end. The modes, run in this order:

* ``off``: no ``ddpserver``, no slot, no publication, and the writers in
  ``DDP["CAPTURE"] = "database"``: their signal handlers return at once and nothing reads the
  WAL, so the writer pays nothing for capture. This is the baseline. The database still runs
  with ``wal_level = logical`` (the embedded server always does), so the WAL carries what
  logical decoding needs in every mode;
* ``signals``: one ``ddpserver`` in ``"signals"`` mode, one client subscribed to
  ``AllBooks``, and the writers in ``"signals"``: each save matches and NOTIFYs;
* ``database``: one ``ddpserver`` in ``"database"`` mode (so it is the elected reader: it
  makes the publication and the slot and reads them), one client subscribed to ``AllBooks``,
  and the writers in ``"database"``;
* ``off`` again, last, to show how far the baseline drifted over the run (PostgreSQL's dead
  rows, autovacuum, the machine's other load). Ratios are against the mean of the two.

Before each mode's cells, one untimed second with every writer warms caches (a signals
writer builds its matching SQL once per process). The writers' Python is kept short: the
model instances are loaded once, ``update_fields`` makes the save one UPDATE, and
``DEBUG`` is off in every process (no query log). Still, on a 2-CPU machine 32 writer
processes, PostgreSQL's 32 backends, and the server (in ``database`` mode the reader)
share the CPUs: the table shows the writers' CPU per commit and the share of the machine
they, the server, the WAL sender decoding the slot (``database`` mode) and everything else
used: what limits a cell shows there.

With a server, its client is read throughout the cell. After the cell this process saves
a marker book; ``catch-up`` is the time from that save's return to the marker's change
reaching the client, i.e. how far behind the writers the changes were delivered when they
stopped (the reader's backlog, in ``database`` mode). ``changes`` is how many ``changed``
messages of the writers' books the client got, against the saves made (each writer's last
save, after the end, is made but not counted in commits/s): the reader announces a run of
transactions at once, reading each changed document once, so several saves of one book in
one run reach a client as one ``changed``.

**Latency.** Then the same server serves, in turn, each number of ``--clients`` subscribed
to ``AllBooks`` (``bench/fanout.py``'s raw-socket clients, one ``selectors`` loop in a child
process), and this process creates books with ``Book.objects.create()`` at each of
``--rates`` saves per second, on a fixed schedule, for ``--latency-seconds`` each, in the
mode's capture setting. Latency is from the moment ``create()`` returned (after its COMMIT,
and in ``signals`` mode its NOTIFY) to the clients' receipt of the ``added``, p50 and p99
over every (save, client) pair, as ``bench/fanout.py`` measures it. One client shows the
capture path alone; 1,000 add the server's fan-out, which ``bench/fanout.py`` measures
(about 18 ms at p50 for 20 saves/s in ``signals`` mode on this machine class).

Targets (issue 13): ``database`` keeps >= 90% of ``off``'s commits/s at 32 writers; latency
p50 <= 10 ms at 20 saves/s.

The clients, the server, PostgreSQL and the writers share the machine: the figures are a
lower bound for a deployment where they do not. Only 127.0.0.1 is used, every wait is
bounded, and the bench's author and books are deleted at the end (and a killed run's at the
start). The ``database`` mode's slot and publication are dropped when it ends, even on
failure (a slot nobody reads keeps WAL), and an inactive one left by a killed run is dropped
at the start.
"""

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

from fanout import (
    COLLECTION,
    MANAGE,
    ROOT,
    ClientProcess,
    Clients,
    latencies,
    live_servers,
    numbers,
    percentile,
    save_books,
    setup_django,
    stop,
)
from peers import cpu_seconds

#: The bench's author; its ``.invalid`` address cannot be anyone's real one. Deleting it
#: deletes every book the bench made.
AUTHOR_EMAIL = "bench@capture.invalid"
#: The titles the bench writes start with this.
PREFIX = "bench-capture-"
#: The order the modes run in; the last ``off`` checks the first.
MODES = ("off", "signals", "database", "off")
#: What each run of a mode is called in the table, and the baseline's.
LABELS = ("off", "signals", "database", "off again")
OFF_LABELS = ("off", "off again")
#: Each mode's ``DDP["CAPTURE"]`` in the writers (``off``: handlers that return at once).
WRITER_CAPTURE = {"off": "database", "signals": "signals", "database": "database"}
#: Books each writer saves in turn: its own, so that writers never wait on each other's row
#: locks.
ROWS_PER_WRITER = 4
#: Seconds between sending the writers their common start time and that time.
START_DELAY = 1.0
#: Seconds of the untimed cell before each mode's cells.
WARM_UP = 1.0
#: Seconds the changes of a cell may take to reach the client after it.
CATCH_UP_TIMEOUT = 300
#: Seconds for a server to start reading its slot, or to let go of it.
SLOT_TIMEOUT = 60
#: Seconds a writer process may take to start, or to answer beyond its cell.
WRITER_TIMEOUT = 120


# The clients' process ---------------------------------------------------------------------


class FollowingClients(Clients):
    """fanout's clients, which also count ``changed`` messages of COLLECTION and note when
    one carries a given title."""

    def __init__(self):
        super().__init__()
        self.changes = 0
        self.awaited = None
        self.arrived = None

    def follow(self, title, timeout):
        """Read every client until a ``changed`` with ``title`` has arrived (at the first
        client to get it) or ``timeout`` seconds passed; return (``changed`` messages
        counted meanwhile, the marker's receipt time or None)."""
        self.changes, self.awaited, self.arrived = 0, title, None
        deadline = time.monotonic() + timeout
        while self.arrived is None and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.2):
                self.read(key.fileobj)
        self.awaited = None
        return self.changes, self.arrived

    def message(self, sock, message, received):
        if message.get("msg") != "changed" or message.get("collection") != COLLECTION:
            return super().message(sock, message, received)
        title = message.get("fields", {}).get("title")
        if title is not None and title == self.awaited:
            self.arrived = received
        else:
            self.changes += 1


# The writers' processes -------------------------------------------------------------------


def serve_writer(pipe, pks):
    """One writer: Django with its own connection, the books ``pks``; it runs each cell it
    is sent, ``(capture mode, start time, seconds, tag)``, and answers its counts."""
    import django

    django.setup()
    from django.test import override_settings

    from bookstore.models import Book

    books = list(Book.objects.filter(pk__in=pks).order_by("pk"))
    pipe.send(len(books))
    while (command := pipe.recv()) is not None:
        capture, start, seconds, tag = command
        # ddp reads DDP on every access: the mode changes without a new process.
        with override_settings(DDP={"CAPTURE": capture}):
            pipe.send(write(books, start, seconds, tag))


def write(books, start, seconds, tag):
    """Save ``books`` in turn from ``start`` for ``seconds``; return (saves that returned
    before the end, saves made, CPU seconds of this process meanwhile)."""
    time.sleep(max(0.0, start - time.time()))
    end = start + seconds
    cpu = time.process_time()
    saves = 0
    while True:
        book = books[saves % len(books)]
        book.title = f"{PREFIX}{tag}-{saves}"
        book.save(update_fields=["title"])
        saves += 1
        if time.time() > end:
            return saves - 1, saves, time.process_time() - cpu


class Writers:
    """The writer processes, spawned once; each answer is waited for with a bound."""

    def __init__(self, books):
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = [], []
        for pks in books:
            pipe, child_end = context.Pipe()
            process = context.Process(target=serve_writer, args=(child_end, pks), daemon=True)
            process.start()
            self.pipes.append(pipe)
            self.processes.append(process)
        loaded = [self.answer(pipe, WRITER_TIMEOUT) for pipe in self.pipes]
        if loaded != [ROWS_PER_WRITER] * len(books):
            raise RuntimeError(f"The writers loaded {loaded} books, not {ROWS_PER_WRITER} each")

    @staticmethod
    def answer(pipe, timeout):
        if not pipe.poll(timeout):
            raise TimeoutError(f"A writer did not answer within {timeout} s")
        return pipe.recv()

    def start(self, count, capture, start, seconds, tag):
        for pipe in self.pipes[:count]:
            pipe.send((capture, start, seconds, tag))

    def results(self, count, timeout):
        return [self.answer(pipe, timeout) for pipe in self.pipes[:count]]

    def stop(self):
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            if process.is_alive():
                pipe.send(None)
        for process in self.processes:
            process.join(WRITER_TIMEOUT / 10)
            if process.is_alive():
                process.kill()
                process.join(WRITER_TIMEOUT / 10)


# The bench ----------------------------------------------------------------------------------


def machine_busy():
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def run_cell(writers, count, mode, seconds, tag, server=None, clients=None, marker=None):
    """One cell: ``count`` writers for ``seconds`` in ``mode``; with a server, its client
    is read throughout and ``marker`` saved after. Returns the cell's figures."""
    decoder = walsender() if mode == "database" else None
    capture = WRITER_CAPTURE[mode]
    if clients is not None:
        clients.send("follow", f"{PREFIX}mark-{tag}", START_DELAY + seconds + CATCH_UP_TIMEOUT)
    start = time.time() + START_DELAY
    writers.start(count, capture, start, seconds, tag)
    time.sleep(max(0.0, start - time.time()))
    busy, total = machine_busy()
    server_cpu = cpu_seconds(server.process.pid) if server else 0.0
    decoder_cpu = cpu_seconds(decoder) if decoder else 0.0
    time.sleep(max(0.0, start + seconds - time.time()))
    busy_after, total_after = machine_busy()
    busy, total = busy_after - busy, total_after - total
    server_cpu = cpu_seconds(server.process.pid) - server_cpu if server else None
    decoder_cpu = cpu_seconds(decoder) - decoder_cpu if decoder else None
    results = writers.results(count, seconds + WRITER_TIMEOUT)
    figures = {
        "commits": sum(r[0] for r in results),
        "saves": sum(r[1] for r in results),
        "writer_cpu": sum(r[2] for r in results),
        "server_cpu": server_cpu,
        "decoder_cpu": decoder_cpu,
        "busy": busy / total,
        "seconds": seconds,
        "changes": None,
        "catch_up": None,
    }
    if clients is not None:
        from django.test import override_settings

        with override_settings(DDP={"CAPTURE": capture}):
            marker.title = f"{PREFIX}mark-{tag}"
            marker.save(update_fields=["title"])
            saved = time.time()
        changes, arrived = clients.answer()
        figures["changes"] = changes
        figures["catch_up"] = None if arrived is None else (arrived - saved) * 1000
    return figures


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.1)


def walsender():
    """The PostgreSQL process that decodes the slot for the reader (its WAL sender)."""
    from django.db import connection

    from ddp.replication import setup

    with connection.cursor() as cursor:
        return setup.slot_status(cursor).active_pid


def slot_active():
    from django.db import connection

    from ddp.replication import setup

    with connection.cursor() as cursor:
        status = setup.slot_status(cursor)
    return status is not None and status.active


def drop_slot():
    """Drop the slot and publication once no reader holds the slot; say what was dropped."""
    from django.db import connection

    from ddp.replication import setup

    wait_for(lambda: not slot_active(), SLOT_TIMEOUT, "The slot was not let go of")
    with connection.cursor() as cursor:
        slot, publication = setup.drop(cursor)
    print(f"  dropped: slot {slot}, publication {publication}", flush=True)


def start_server(mode):
    from ddp.testing import ServerProcess

    server = ServerProcess(
        command=[sys.executable, str(MANAGE), "ddpserver", "--noreload"],
        settings="capture_settings",
        env={"DDP_BENCH_CAPTURE": mode},
        cwd=ROOT,
    ).start()
    said = [line.strip() for line in server.lines if line.strip().startswith("changes:")]
    print(f"  ddpserver on port {server.port}: {said[0] if said else '(no changes: line)'}")
    if mode == "database":
        wait_for(slot_active, SLOT_TIMEOUT, "The server did not start reading its slot")
    return server


def run_mode(args, writers, clients, mode, label, marker, author, results, latency):
    """Every cell of ``mode`` (its server and client first), then its latencies."""
    from django.test import override_settings

    print(f"{label}...", flush=True)
    server = None
    try:
        if mode != "off":
            server = start_server(mode)
            if clients.ask("open", [server.port], 1, True) != 1:
                raise RuntimeError(f"The client's subscription failed:\n{server.output()[-2000:]}")
        follow = clients if server else None
        run_cell(writers, max(args.writers), mode, WARM_UP, f"{label}-warm", server, follow, marker)
        for count in args.writers:
            tag = f"{label}-{count}"
            results[label, count] = run_cell(
                writers, count, mode, args.seconds, tag, server, follow, marker
            )
            r = results[label, count]
            print(f"  {count} writers: {r['commits'] / r['seconds']:,.0f} commits/s", flush=True)
        if server is None:
            return
        for count in args.clients:
            clients.ask("close")
            ready = clients.ask("open", [server.port], count, True)
            if ready < count:
                raise RuntimeError(f"{ready} of {count} subscriptions ready")
            with override_settings(DDP={"CAPTURE": WRITER_CAPTURE[mode]}):
                for rate in args.rates:
                    latency[mode, count, rate] = measure_latency(
                        clients, count, rate, args.latency_seconds, author, len(latency)
                    )
    finally:
        if server is not None:
            stop(server)
            clients.ask("close")
        if mode == "database":
            drop_slot()


def measure_latency(clients, count, rate, seconds, author, run):
    """Create books at ``rate`` per second for ``seconds``; the figures of their receipts."""
    rows = round(rate * seconds)
    _, saves, receipts = save_books(clients, count, rows, author, run * 10**6, rate)
    p50, p99 = latencies(receipts)
    print(f"  {count} clients, {rate:g} saves/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)
    return {
        "delivered": len(receipts),
        "expected": rows * count,
        "p50": p50,
        "p99": p99,
        "save_mean": statistics.fmean(saves) * 1000,
        "save_p99": percentile(saves, 99) * 1000,
    }


def make_books(writers):
    """The bench's author, ROWS_PER_WRITER books per writer and the marker book."""
    from bookstore.models import Author, Book

    Author.objects.filter(email=AUTHOR_EMAIL).delete()  # a killed run's
    author = Author.objects.create(name=PREFIX, email=AUTHOR_EMAIL)
    books = Book.objects.bulk_create(
        Book(title=f"{PREFIX}{n}", author=author) for n in range(writers * ROWS_PER_WRITER + 1)
    )
    pks = [book.pk for book in books]
    per_writer = [pks[n * ROWS_PER_WRITER : (n + 1) * ROWS_PER_WRITER] for n in range(writers)]
    return author, per_writer, books[-1]


def check_slot():
    """Drop an inactive slot a killed run left; refuse to run beside a reader."""
    if slot_active():
        raise SystemExit("A reader already reads this database's slot: stop its ddpservers.")
    from django.db import connection

    from ddp.replication import setup

    with connection.cursor() as cursor:
        if setup.slot_status(cursor) is not None or setup.publication_tables(cursor) is not None:
            print("dropping the slot and publication of an earlier run...", flush=True)
            setup.drop(cursor)


def report(args, results, latency, others, load):
    cpus = os.cpu_count()
    print()
    print("Capture modes: what writers pay, and commit-to-client latency (bench/capture.py)")
    print(f"date      {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine   {platform.platform()}, os.cpu_count() = {cpus}")
    print(f"python    {platform.python_version()} ({platform.python_implementation()})")
    print(f"writes    book.save(update_fields=['title']), autocommit, {args.seconds:g} s per cell,")
    print(f"          each writer a process with its own {ROWS_PER_WRITER} books")
    print("modes     off: no server, writers in 'database' (send nothing), nothing reads;")
    print("          signals / database: one ddpserver and writers in that mode, 1 client")
    print(f"shared    writers, server, clients and PostgreSQL all run on these {cpus} CPUs")
    print(f"registry  {others} other ddpserver(s) registered as live on this database")
    print(f"load      {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)")
    print()
    header = (
        f"{'writers':>7} {'mode':<8} {'commits/s':>10} {'/ off':>6} {'changes/saves':>15}"
        f" {'catch-up ms':>11} {'writer us/commit':>16} {'writers %':>9} {'server %':>8}"
        f" {'decoder %':>9}"
        f" {'machine %':>9}"
    )
    print(header)
    print("-" * len(header))
    for count in args.writers:
        base = statistics.fmean(results[label, count]["commits"] for label in OFF_LABELS)
        for label in LABELS:
            r = results[label, count]
            capacity = cpus * r["seconds"]
            changes = "-" if r["changes"] is None else f"{r['changes']:,}/{r['saves']:,}"
            catch_up = "-" if r["catch_up"] is None else f"{r['catch_up']:.0f}"
            server = "-" if r["server_cpu"] is None else f"{100 * r['server_cpu'] / capacity:.0f}"
            decoder = (
                "-" if r["decoder_cpu"] is None else f"{100 * r['decoder_cpu'] / capacity:.0f}"
            )
            print(
                f"{count:>7} {label:<8} {r['commits'] / r['seconds']:>10,.0f}"
                f" {r['commits'] / base:>6.2f} {changes:>15} {catch_up:>11}"
                f" {1e6 * r['writer_cpu'] / max(r['saves'], 1):>16.0f}"
                f" {100 * r['writer_cpu'] / capacity:>9.0f} {server:>8} {decoder:>9}"
                f" {100 * r['busy']:>9.0f}"
            )
    print()
    print("/ off: against the mean of the two off rows. writers %, server %, decoder % (the")
    print("PostgreSQL process that decodes the slot for the reader): their CPU time over the")
    print(f"cell as a share of the machine ({cpus} CPUs); machine %: all processes (the writers'")
    print("PostgreSQL backends are most of the rest).")
    print()
    print("Latency, COMMIT to receipt of the added, clients on one ddpserver,")
    print(f"Book.objects.create() at a fixed rate for {args.latency_seconds:g} s:")
    header = (
        f"{'mode':<8} {'clients':>7} {'saves/s':>7} {'messages/s':>10} {'delivered':>19}"
        f" {'lat p50 ms':>10} {'lat p99 ms':>10} {'save mean ms':>12} {'save p99 ms':>11}"
    )
    print(header)
    print("-" * len(header))
    for (mode, count, rate), r in sorted(latency.items(), key=lambda item: item[0][1:]):
        delivered = f"{r['delivered']:,}/{r['expected']:,}"
        print(
            f"{mode:<8} {count:>7} {rate:>7g} {rate * count:>10,.0f} {delivered:>19}"
            f" {r['p50']:>10.1f} {r['p99']:>10.1f} {r['save_mean']:>12.2f} {r['save_p99']:>11.2f}"
        )
    print()
    print("Targets (issue 13):")
    top = max(args.writers)
    base = statistics.fmean(results[label, top]["commits"] for label in OFF_LABELS)
    ratio = results["database", top]["commits"] / base
    print(f"  database >= 0.90 x off commits/s at {top} writers: {ratio:.2f}")
    slowest = min(args.rates)
    for count in args.clients:
        p50 = latency["database", count, slowest]["p50"]
        print(
            f"  database latency p50 <= 10 ms at {slowest:g} saves/s, {count} clients: {p50:.1f} ms"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--writers", type=numbers, default=[1, 8, 32], help="writer counts (default 1,8,32)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per cell (default 5)")
    parser.add_argument(
        "--clients",
        type=numbers,
        default=[1, 1000],
        help="clients for the latency (default 1,1000)",
    )
    parser.add_argument(
        "--rates", type=numbers, default=[20, 200], help="saves per second (default 20,200)"
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=5.0, help="seconds per rate (default 5)"
    )
    args = parser.parse_args()

    load = os.getloadavg()
    # Every process of the bench runs as in production: no query log.
    os.environ["DEBUG"] = "false"
    setup_django()
    from django.db import connection

    from bookstore.models import Author
    from ddp.testing.database import database_url

    # The writers and servers connect straight to this database.
    os.environ["DATABASE_URL"] = database_url(connection.settings_dict)
    others = live_servers()
    check_slot()
    author, per_writer, marker = make_books(max(args.writers))
    clients = ClientProcess(FollowingClients)
    writers = None
    results, latency = {}, {}
    try:
        print(f"starting {len(per_writer)} writer processes...", flush=True)
        writers = Writers(per_writer)
        for mode, label in zip(MODES, LABELS, strict=True):
            run_mode(args, writers, clients, mode, label, marker, author, results, latency)
    finally:
        if writers is not None:
            writers.stop()
        clients.stop()
        Author.objects.filter(email=AUTHOR_EMAIL).delete()  # and every book of the bench
    report(args, results, latency, others, load)


if __name__ == "__main__":
    main()
