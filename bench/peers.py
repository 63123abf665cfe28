"""CPU a ddpserver spends per change delivered to its clients, beside the writer's per save.

``python bench/peers.py [--servers 3] [--clients 20] [--rows 2000]``, from anywhere.

``--servers`` ``ddpserver`` processes of the example project (``testproject/``, its database,
``migrate`` run first) each serve ``--clients`` raw WebSocket clients subscribed to
``AllBooks`` (``bench/fanout.py``'s clients: one ``selectors`` loop in a child process). This
process, the writer, then saves ``--rows`` books with ``Book.objects.create()``, one
autocommit transaction each, and waits until every client has every ``added``.

Reported, for each server: its CPU time (``utime + stime`` of ``/proc/<pid>/stat``) from just
before the first save to the last receipt, divided by the messages delivered to its clients
(rows x its clients) and by the rows (what one change costs a server, all its clients
included); and its CPU over an idle window of the same servers and clients before the saves
(heartbeats, the registry), scaled to the same length, which is included in the first. Beside
them, the writer's CPU per save (``getrusage`` of this process, whose only work in the window is
the saves) and its wall time per save: the cost of a write is paid once by the writer and
then by every server with a subscriber. The ratio of the two is printed.

The clients, servers, PostgreSQL and the writer share the machine's CPUs; only 127.0.0.1 is
used, every wait is bounded, and the books are deleted at the end.
"""

import argparse
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone

from fanout import MANAGE, ROOT, ClientProcess, setup_django, stop

PREFIX = "bench-peers-"
AUTHOR_EMAIL = "bench@peers.invalid"
#: Seconds of idle CPU measured before the saves.
IDLE = 5
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of ``pid``, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=3, help="ddpservers (default 3)")
    parser.add_argument("--clients", type=int, default=20, help="clients per server (default 20)")
    parser.add_argument("--rows", type=int, default=2000, help="books saved (default 2000)")
    args = parser.parse_args()

    load = os.getloadavg()
    setup_django()
    from bookstore.models import Author, Book
    from ddp.testing import ServerProcess

    Book.objects.filter(title__startswith=PREFIX).delete()
    author, _ = Author.objects.get_or_create(email=AUTHOR_EMAIL, defaults={"name": PREFIX})
    clients = ClientProcess()
    started = []
    total = args.servers * args.clients
    try:
        for _ in range(args.servers):
            server = ServerProcess(
                command=[sys.executable, str(MANAGE), "ddpserver", "--noreload"], cwd=ROOT
            )
            started.append(server.start())
        pids = [server.process.pid for server in started]
        ready = clients.ask("open", [server.port for server in started], total, True)
        if ready < total:
            raise RuntimeError(f"{ready} of {total} subscriptions ready")
        time.sleep(1)
        idle_before = [cpu_seconds(pid) for pid in pids]
        time.sleep(IDLE)
        idle = [cpu_seconds(pid) - b for pid, b in zip(pids, idle_before, strict=True)]

        print(f"{args.servers} servers x {args.clients} clients, {args.rows} saves...", flush=True)
        clients.send("record", args.rows * total)
        cpu_before = [cpu_seconds(pid) for pid in pids]
        wall_before, writer_before = time.time(), own_cpu()
        for n in range(args.rows):
            Book.objects.create(title=f"{PREFIX}{n:06d}", author=author)
        writer_cpu, writer_wall = own_cpu() - writer_before, time.time() - wall_before
        receipts = clients.answer()
        cpu = [cpu_seconds(pid) - b for pid, b in zip(pids, cpu_before, strict=True)]
        window = max(t for _, t in receipts) - wall_before if receipts else float("nan")
    finally:
        for server in started:
            stop(server)
        clients.ask("close")
        clients.stop()
        author.delete()
        Book.objects.filter(title__startswith=PREFIX).delete()

    delivered = len(receipts)
    # fanout's clients spread themselves round robin: server i has these many.
    per_server = [len(range(i, total, args.servers)) for i in range(args.servers)]
    writer_ms = writer_cpu / args.rows * 1000
    cpus = os.cpu_count()
    print()
    print("CPU per delivered change on each ddpserver vs the writer's per save (bench/peers.py)")
    print(f"date      {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine   {platform.platform()}, os.cpu_count() = {cpus}")
    print(f"python    {platform.python_version()} ({platform.python_implementation()})")
    print(f"setup     {args.servers} ddpservers, {args.clients} clients each on AllBooks;")
    print(f"          {args.rows} Book.objects.create(), one autocommit transaction each")
    print(f"shared    clients, servers, PostgreSQL and the writer share these {cpus} CPUs")
    print(f"clock     /proc/<pid>/stat counts in ticks of {1000 / TICK:.0f} ms")
    print(f"load      {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)")
    print()
    print(f"delivered        {delivered:,} of {args.rows * total:,} added messages")
    print(f"window           {window:.2f} s, first save to last receipt")
    print(f"writer           {writer_ms:.3f} ms CPU per save (this process),")
    print(f"                 {writer_wall / args.rows * 1000:.3f} ms wall per save")
    print()
    header = (
        f"{'server':>6} {'clients':>7} {'messages':>9} {'cpu s':>7} {'idle cpu s':>10} "
        f"{'us/message':>10} {'us/change':>10} {'change/save':>11}"
    )
    print(header)
    print("-" * len(header))
    for i, (n, seconds) in enumerate(zip(per_server, cpu, strict=True)):
        messages = n * args.rows if delivered == args.rows * total else float("nan")
        idle_same = idle[i] / IDLE * window
        per_change_ms = seconds / args.rows * 1000
        print(
            f"{i + 1:>6} {n:>7} {messages:>9,} {seconds:>7.2f} {idle_same:>10.2f} "
            f"{seconds / messages * 1e6:>10.1f} {per_change_ms * 1000:>10.1f} "
            f"{per_change_ms / writer_ms:>11.2f}"
        )
    print()
    print("us/message: the server's CPU in the window / messages delivered to its clients.")
    print("us/change: the same / rows saved. change/save: us/change / the writer's CPU per save.")
    print(f"idle cpu s: the server's CPU over {IDLE} s before the saves, scaled to the window.")


if __name__ == "__main__":
    main()
