"""1,000 clients dropped at once and reconnecting, with session resumption and without.

``python bench/reconnect.py [--clients 1000] [--books 100]``, from anywhere.

What a load balancer's reload does to a server: every client loses its connection at the
same moment and reconnects. For each of two ``ddpserver`` processes of the example project
(``testproject/``, ``migrate`` run first), one with ``DDP["DISCONNECT_GRACE_PERIOD"] = 15``
(Meteor's default: sessions are held for resumption) and one with 0 (resumption off, every
reconnection is a new session):

1. ``--clients`` raw WebSocket clients connect and subscribe to ``AllBooks`` (the example's
   books, plus ``--books`` made here: each new session's subscription sends them all);
2. every client closes its TCP connection at once (no WebSocket close, no ``disconnect``);
3. every client reconnects at once as Meteor 3.4's client does: ``connect`` with its
   ``session`` and ``receivedCount`` (the messages it got, pings and pongs left out), and its
   ``sub`` again, in one burst.

A client is live again when it has its session back (``connected`` with the same id: the
server ignores the repeated ``sub``), or, given a new session, when its subscription is
``ready`` again. Reported per server: the wall time from the first close to the last client
live, the server's CPU seconds over that time (``utime + stime`` of ``/proc/<pid>/stat``),
and how many clients resumed. The two runs take turns (``--rounds``), so that a change of the
machine's load shifts both alike; the ratio of the medians is printed.

The clients run in this process, one ``selectors`` loop; they, the servers and PostgreSQL
share the machine's CPUs; only 127.0.0.1 is used and every wait is bounded. The books made
here are deleted at the end; the servers are stopped.
"""

import argparse
import json
import os
import platform
import selectors
import statistics
import sys
import time
from datetime import datetime, timezone

from fanout import (
    CLOSE,
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

CONNECT = {"msg": "connect", "version": "1", "support": ["1"]}
SUB = {"msg": "sub", "id": "b", "name": "AllBooks", "params": []}
PREFIX = "bench-reconnect-"
AUTHOR_EMAIL = "bench@reconnect.invalid"
#: Seconds without progress after which the clients give up on the rest.
IDLE_TIMEOUT = 60


def frames(*messages):
    texts = (json.dumps(m, separators=(",", ":")).encode() for m in messages)
    return b"".join(client_frame(TEXT, text) for text in texts)


class Client:
    __slots__ = ("sock", "buf", "session", "received", "live")

    def __init__(self):
        self.sock = None
        self.buf = bytearray()
        self.session = None
        self.received = 0
        self.live = False


class Clients:
    """N DDP clients over raw WebSockets, read by one ``selectors`` loop."""

    def __init__(self, port, count):
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.clients = [Client() for _ in range(count)]
        self.resumed = 0

    def connect(self, client, *messages):
        client.sock, client.buf = handshake(self.port)
        client.sock.sendall(frames(*messages))
        client.sock.setblocking(False)
        client.live = False
        self.selector.register(client.sock, selectors.EVENT_READ, client)

    def start(self):
        """Connect and subscribe every client; return once all are ready."""
        for client in self.clients:
            self.connect(client, CONNECT, SUB)
        self.pump()

    def settle(self):
        """Read what still comes (changes announced after a subscription's query, say)
        until the server has been quiet for a second: a client counts all it received."""
        while events := self.selector.select(1.0):
            for key, _ in events:
                client = key.data
                client.buf += client.sock.recv(65536)
                for opcode, payload in take_frames(client.buf):
                    if opcode == PING:
                        client.sock.sendall(client_frame(PONG, payload))
                    elif opcode == TEXT:
                        self.count(client, payload)

    def drop_and_reconnect(self):
        """Close every connection at once, then reconnect every client at once."""
        for client in self.clients:
            self.selector.unregister(client.sock)
            client.sock.close()
        self.resumed = 0
        for client in self.clients:
            resume = {**CONNECT, "session": client.session, "receivedCount": client.received}
            self.connect(client, resume, SUB)
        self.pump()

    def pump(self):
        """Read until every client is live again, or none progressed for IDLE_TIMEOUT."""
        waiting = sum(not c.live for c in self.clients)
        moved = time.monotonic()
        while waiting:
            events = self.selector.select(1.0)
            if not events and time.monotonic() - moved > IDLE_TIMEOUT:
                raise TimeoutError(f"{waiting} clients never came back")
            for key, _ in events:
                client = key.data
                chunk = client.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed a client")
                client.buf += chunk
                for opcode, payload in take_frames(client.buf):
                    if opcode == PING:
                        client.sock.sendall(client_frame(PONG, payload))
                    elif opcode != TEXT:
                        continue
                    elif client.live:
                        self.count(client, payload)
                    elif self.take(client, payload):
                        client.live = True
                        waiting -= 1
                        moved = time.monotonic()

    def count(self, client, payload):
        if not payload.startswith((b'{"msg":"ping"', b'{"msg":"pong"')):
            client.received += 1
        if payload.startswith(b'{"msg":"ping"'):
            client.sock.sendall(frames({"msg": "pong"}))

    def take(self, client, payload):
        """Count one message; return whether the client is live with it."""
        self.count(client, payload)
        message = json.loads(payload)
        if message.get("msg") == "connected":
            if message["session"] == client.session:
                self.resumed += 1
                return True
            client.session = message["session"]
            client.received = 1
        return message.get("msg") == "ready"

    def close(self):
        for client in self.clients:
            self.selector.unregister(client.sock)
            try:
                client.sock.sendall(frames({"msg": "disconnect"}))
                client.sock.sendall(client_frame(CLOSE, (1000).to_bytes(2, "big")))
            except OSError:
                pass
            client.sock.close()


def cpu_seconds(pid):
    """``utime + stime`` of process ``pid``, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--books", type=int, default=100, help="books made for the bench")
    parser.add_argument("--rounds", type=int, default=3, help="drops per server (default 3)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    setup_django()
    from bookstore.models import Author, Book
    from ddp.testing import ServerProcess

    author, _ = Author.objects.get_or_create(email=AUTHOR_EMAIL, defaults={"name": PREFIX})
    Book.objects.bulk_create(Book(title=f"{PREFIX}{n}", author=author) for n in range(args.books))
    documents = Book.objects.count() + Author.objects.count()
    modes = {"resumption (15 s)": "15", "resumption off (0)": "0"}
    servers, clients, results = {}, {}, {name: [] for name in modes}
    try:
        for name, grace in modes.items():
            servers[name] = ServerProcess(
                command=[sys.executable, str(MANAGE), "ddpserver", "--noreload"],
                cwd=ROOT,
                settings="reconnect_settings",
                env={"DDP_BENCH_GRACE": grace},
            ).start()
            clients[name] = Clients(servers[name].port, args.clients)
            clients[name].start()
        for _ in range(args.rounds):
            for name in modes:
                clients[name].settle()
                pid = servers[name].process.pid
                cpu, started = cpu_seconds(pid), time.monotonic()
                clients[name].drop_and_reconnect()
                wall = time.monotonic() - started
                results[name].append((wall, cpu_seconds(pid) - cpu, clients[name].resumed))
        for name in modes:
            clients[name].close()
    finally:
        for server in servers.values():
            stop(server)
        author.delete()
    report(args, documents, results)


def report(args, documents, results):
    print(f"# bench/reconnect.py, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"{args.clients} clients on AllBooks ({documents} documents each), all dropped and "
        f"reconnecting at once; {args.rounds} rounds, medians\n"
    )
    print("| server | wall s to all live | server CPU s | resumed |")
    print("|---|---|---|---|")
    medians = {}
    for name, rounds in results.items():
        wall = statistics.median(r[0] for r in rounds)
        cpu = statistics.median(r[1] for r in rounds)
        resumed = statistics.median(r[2] for r in rounds)
        medians[name] = (wall, cpu)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {resumed:.0f} / {args.clients} |")
    (on_wall, on_cpu), (off_wall, off_cpu) = medians.values()
    print(
        f"\nWith resumption: {off_wall / on_wall:.1f}x less wall time, "
        f"{off_cpu / max(on_cpu, 0.01):.1f}x less server CPU."
    )
    for name, rounds in results.items():
        each = ", ".join(f"{w:.2f} s / {c:.2f} CPU s / {r}" for w, c, r in rounds)
        print(f"  {name} rounds: {each}")


if __name__ == "__main__":
    main()
