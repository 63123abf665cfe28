"""How fast ORM saves reach DDP subscribers, against the raw transport, in one run.

``python bench/fanout.py [--clients 100,1000] [--servers 1,3] [--workers 1,2] [--rows 200]
[--rate 20] [--paced-rows 100] [--transport sockjs]``, from anywhere. With ``--transport
sockjs`` the clients speak DDP over SockJS's websocket transport, as Meteor's browsers.

For every number of servers S and clients N, S ``ddpserver`` processes of the example
project (``testproject/``, its embedded PostgreSQL) serve N WebSocket clients, spread round
robin and all subscribed to ``AllBooks``; with ``--workers 1,2`` each run is done with each
``ddpserver --workers W`` (its clients spread over the W workers by whichever accepts), and
the report gives each W's changes/s and p99 as a ratio of W = 1's, from the same run. This
process then saves ``--rows`` books with ``Book.objects.create()``, each in its own
autocommit transaction, as fast as it can, and the clients note when each ``added`` of
``bookstore.book`` arrives. Reported: changes delivered per second (messages received /
(last receipt - first commit)), latency from the moment ``create()`` returned (after the
row's COMMIT and its NOTIFY) to receipt, and the writer's time per save. A burst's latency
is mostly the queue it builds (200 saves to 1,000 clients are 200,000 messages); so the
same servers and clients then get ``--paced-rows`` more saves at ``--rate`` per second, and
their latency is reported apart: what a client waits for a change when the servers keep up.

The baseline, measured in the same run with the same clients: ``bench/raw_push.py`` pushes
one pre-built ``added`` frame the same number of times (rows x N) with ``sendall``, the
most these clients can be fed through this transport. ``ddp/raw`` is the share of it DDP
reaches. The writer's time per save is also compared with the earlier Django
implementation's published figures.

The clients are cheap: raw sockets, a WebSocket handshake and frame parser of a few lines,
one ``selectors`` loop. They live in a child process so that parsing 100,000s of messages
does not compete with the writer for this process's GIL, which showed in the writer's p99
time per save when they ran in a thread. This process, the writer, is not monkey-patched
by eventlet; the servers are separate processes, as in production.

The clients, the servers, PostgreSQL and the writer share the machine's CPUs, so the
figures are a lower bound for a deployment where they do not. Every wait is bounded, only
127.0.0.1 is used, and the books the bench created are deleted at the end.
"""

import argparse
import base64
import json
import multiprocessing
import os
import platform
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAW_PUSH = ROOT / "bench" / "raw_push.py"
MANAGE = ROOT / "testproject" / "manage.py"

#: Every book this bench creates has a title starting with this, and is deleted by it.
PREFIX = "bench-"
#: The author of those books; its ``.invalid`` address cannot be anyone's real one.
AUTHOR_EMAIL = "bench@fanout.invalid"
COLLECTION = "bookstore.book"
#: How ddpserver's ``added`` of COLLECTION begins, up to its id: compact, keys in this order.
ADDED = f'{{"msg":"added","collection":"{COLLECTION}","id":"'

#: The earlier implementation's writer time per save, which re-ran every subscription per
#: save, as quoted in the project's research: (subscribers, milliseconds).
EARLIER = ((100, 140.0), (400, 480.0))

#: Seconds the clients may go without progress (a ``ready``, an ``added`` counted) before
#: they give up waiting for what is missing.
IDLE_TIMEOUT = 30
#: Seconds for anything that talks to a single socket or the clients' process.
TIMEOUT = 10
#: Seconds this process waits for any answer of the clients' process, as a last bound.
ANSWER_TIMEOUT = 600

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA

CONNECT = {"msg": "connect", "version": "1", "support": ["1"]}
#: What every client of this bench subscribes to.
ALL_BOOKS = {"msg": "sub", "id": "1", "name": "AllBooks", "params": []}


# The clients' process ---------------------------------------------------------------------


def client_frame(opcode, payload):
    """One client-to-server frame: RFC 6455 wants it masked."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")
    return header + mask + masked


def take_frames(buf):
    """Remove the complete frames at the start of ``buf``; return their (opcode, payload).

    A server sends unmasked frames, and ``ddpserver`` and ``raw_push.py`` one frame per
    message: anything else is an error here rather than a misread.
    """
    frames = []
    pos = 0
    while len(buf) - pos >= 2:
        first, second = buf[pos], buf[pos + 1]
        if second & 0x80 or not first & 0x80 or not first & 0x0F:
            raise ValueError(f"Unexpected masked or fragmented frame: {bytes(buf[pos : pos + 2])}")
        size, start = second & 0x7F, pos + 2
        if size >= 126:
            width = 2 if size == 126 else 8
            if len(buf) < start + width:
                break
            size = int.from_bytes(buf[start : start + width], "big")
            start += width
        if len(buf) < start + size:
            break
        frames.append((first & 0x0F, bytes(buf[start : start + size])))
        pos = start + size
    del buf[:pos]
    return frames


def handshake(port, receive_buffer=None, path="/websocket"):
    """Open a WebSocket to ``path`` on ``port``; return the socket and what followed.

    ``receive_buffer``: the socket's ``SO_RCVBUF``, set before it connects so that the
    window the server sees is that small (a client that stops reading fills it at once).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"Port {port} closed during the WebSocket handshake")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"Port {port} refused the WebSocket: {head.splitlines()[0]!r}")
    return sock, bytearray(rest)


def hello(*messages):
    """What a DDP client sends first, without waiting for ``connected`` as Meteor's does:
    ``connect``, then ``messages`` (by default the ``sub`` to AllBooks), a frame each."""
    frames = [CONNECT, *(messages or [ALL_BOOKS])]
    compact = (json.dumps(message, separators=(",", ":")).encode() for message in frames)
    return b"".join(client_frame(TEXT, text) for text in compact)


class Clients:
    """N WebSocket clients read by one ``selectors`` loop, noting when each change arrives."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.buffers = {}  # socket -> bytes received and not yet parsed
        self.ready = 0
        self.refused = 0
        #: ``(document id, receipt time)`` of every ``added`` to COLLECTION while recording.
        self.receipts = []
        self.recording = False

    def open(self, ports, count, subscribe):
        """Connect ``count`` more clients round robin over ``ports``; with ``subscribe``, each
        sends its :meth:`greeting` and is waited for.

        Returns how many are connected, or with ``subscribe`` how many got ``ready`` in all
        (so a caller can open clients in batches). The first client of each server is
        answered before the others connect: ddpserver answers ``nosub`` 500 to some of the
        concurrent first subscriptions to a collection it does not LISTEN to yet (each
        calls ``Listener.listen``, and two green threads in its wake-up ``os.write`` raise
        "Second simultaneous write").
        """
        answered = self.answered()
        for n in range(count):
            path = self.path(len(self.buffers)) if subscribe else "/websocket"
            sock, rest = handshake(ports[n % len(ports)], path=path)
            if subscribe:
                sock.sendall(self.greeting(sock))
            self.buffers[sock] = rest
            self.selector.register(sock, selectors.EVENT_READ)
            if subscribe and n + 1 == len(ports):
                self.pump(self.answered, answered + n + 1)
        if not subscribe:
            return len(self.buffers)
        self.pump(self.answered, answered + count)
        return self.ready

    def greeting(self, sock):
        """What the new client ``sock`` sends first; a subclass may give each its own."""
        return hello()

    def path(self, n):
        """Where the ``n``-th client of a ddpserver connects (raw_push.py's is /websocket)."""
        return "/websocket"

    def text(self, sock, payload, received):
        self.message(sock, json.loads(payload), received)

    def send_message(self, sock, message):
        sock.sendall(client_frame(TEXT, json.dumps(message).encode()))

    def answered(self):
        return self.ready + self.refused

    def cpu(self):
        """This process's CPU seconds so far: the bench asks before and after a phase."""
        return time.process_time()

    def record(self, goal):
        """Note every change until ``goal`` arrived (or none for IDLE_TIMEOUT s)."""
        self.receipts = []
        self.recording = True
        self.pump(lambda: len(self.receipts), goal)
        self.recording = False
        return self.receipts

    def close(self):
        for sock in self.buffers:
            try:
                sock.sendall(client_frame(CLOSE, (1000).to_bytes(2, "big")))
            except OSError:
                pass  # the server went first
            self.selector.unregister(sock)
            sock.close()
        self.buffers.clear()
        self.ready = self.refused = 0

    def pump(self, progress, goal):
        """Read until ``progress()`` reaches ``goal`` or stalls for IDLE_TIMEOUT seconds."""
        last, moved = progress(), time.monotonic()
        while (now := progress()) < goal:
            if now != last:
                last, moved = now, time.monotonic()
            elif time.monotonic() - moved > IDLE_TIMEOUT:
                return
            for key, _ in self.selector.select(0.2):
                self.read(key.fileobj)

    def read(self, sock):
        data = sock.recv(1 << 16)
        received = time.time()
        if not data:
            self.selector.unregister(sock)
            sock.close()
            del self.buffers[sock]
            return
        buf = self.buffers[sock]
        buf += data
        for opcode, payload in take_frames(buf):
            if opcode == TEXT:
                self.text(sock, payload, received)
            elif opcode == PING:
                sock.sendall(client_frame(PONG, payload))

    def message(self, sock, message, received):
        kind = message.get("msg")
        if kind == "added":
            if self.recording and message["collection"] == COLLECTION:
                self.receipts.append((message["id"], received))
        elif kind == "ready":
            self.ready += 1
        elif kind == "nosub":
            self.refused += 1
        elif kind == "ping":
            # DDP's heartbeat: a client that does not answer is closed after 30 s.
            pong = {"msg": "pong", **({"id": message["id"]} if "id" in message else {})}
            self.send_message(sock, pong)


class FanoutClients(Clients):
    """This bench's clients on raw ``/websocket``: an ``added`` of COLLECTION, while
    recording, is read by its beginning (:data:`ADDED`, then the id up to its quote),
    anything else decoded in full. The clients share the CPUs with the servers; reading
    the changes counted the same cheap way over both transports leaves them little of
    those CPUs, and what they cost more over one transport is that transport's own
    framing (the ``client us`` column shows it)."""

    def text(self, sock, payload, received):
        self.ddp(sock, payload.decode(), received)

    def ddp(self, sock, text, received):
        """One DDP message, ``text``."""
        if self.recording and text.startswith(ADDED):
            end = text.index('"', len(ADDED))
            self.receipts.append((text[len(ADDED) : end], received))
        else:
            self.message(sock, json.loads(text), received)


class SockJSClients(FanoutClients):
    """The same clients on SockJS's websocket transport, as Meteor's browser client: each
    message sent as ``["<message>"]``, received in ``a[...]`` frames (``o``, ``h`` and
    ``c`` frames carry none), each of which is decoded in full, then each DDP message in
    it read as over raw ``/websocket``. raw_push.py's frames, on /websocket, are raw DDP."""

    def path(self, n):
        return f"/sockjs/000/{n:08d}/websocket"

    def greeting(self, sock):
        frames = (json.dumps([json.dumps(m, separators=(",", ":"))]) for m in (CONNECT, ALL_BOOKS))
        return b"".join(client_frame(TEXT, frame.encode()) for frame in frames)

    def text(self, sock, payload, received):
        if payload[:1] == b"a":
            for text in json.loads(payload[1:]):
                self.ddp(sock, text, received)
        elif payload[:1] == b"{":
            super().text(sock, payload, received)

    def send_message(self, sock, message):
        sock.sendall(client_frame(TEXT, json.dumps([json.dumps(message)]).encode()))


#: The clients of each ``--transport``.
TRANSPORTS = {"websocket": FanoutClients, "sockjs": SockJSClients}


def serve_clients(pipe, factory=Clients):
    """The clients' process: run each command from the bench on a ``factory()`` (Clients or
    a subclass), answer with its result."""
    # One descriptor per client: 1,000 clients pass the common soft limits (256, 1,024).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    clients = factory()
    while (command := pipe.recv()) is not None:
        name, *args = command
        pipe.send(getattr(clients, name)(*args))


# The bench ----------------------------------------------------------------------------------


class ClientProcess:
    """The bench's handle on the clients' process; every answer is waited for with a bound."""

    def __init__(self, factory=Clients):
        context = multiprocessing.get_context("spawn")
        self.pipe, child_end = context.Pipe()
        self.process = context.Process(target=serve_clients, args=(child_end, factory), daemon=True)
        self.process.start()

    def send(self, *command):
        self.pipe.send(command)

    def answer(self):
        if not self.pipe.poll(ANSWER_TIMEOUT):
            raise TimeoutError(f"The clients did not answer within {ANSWER_TIMEOUT} s")
        return self.pipe.recv()

    def ask(self, *command):
        self.send(*command)
        return self.answer()

    def stop(self):
        if self.process.is_alive():
            self.pipe.send(None)
            self.process.join(TIMEOUT)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(TIMEOUT)


def percentile(values, pct):
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def stop(server):
    """SIGTERM a ddpserver; say so when it did not exit cleanly, since its registry rows
    then stay, and cost writers, until they time out."""
    status = server.stop()
    if status != 0:
        last = server.output().strip().splitlines()[-1:]
        print(f"  ddpserver on port {server.port} exited with status {status}: {last}", flush=True)


def save_books(clients, count, rows, author, first, rate=None):
    """Save ``rows`` books, as fast as possible or ``rate`` per second on a fixed schedule,
    and collect the clients' receipts; returns ``(commits, saves, receipts)``."""
    from bookstore.models import Book

    clients.send("record", rows * count)
    commits, saves = {}, []
    start = time.perf_counter()
    for n in range(rows):
        if rate is not None:
            time.sleep(max(0.0, start + n / rate - time.perf_counter()))
        before = time.perf_counter()
        book = Book.objects.create(title=f"{PREFIX}{first + n:06d}", author=author)
        saves.append(time.perf_counter() - before)
        commits[str(book.pk)] = time.time()
    receipts = [(commits[pk], t) for pk, t in clients.answer() if pk in commits]
    if not receipts:
        raise RuntimeError(f"No change reached the {count} clients")
    return commits, saves, receipts


def cpu_seconds(pid):
    """utime + stime of ``pid`` and of its child processes (``--workers``), in seconds
    (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        workers = [int(child) for child in children.read().split()]
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(map(cpu_seconds, workers))


def latencies(receipts):
    values = [(t - committed) * 1000 for committed, t in receipts]
    return percentile(values, 50), percentile(values, 99)


def run_ddp(clients, servers, count, rows, author, rate, paced_rows, workers=1):
    """One S x N run (``workers`` per server): a burst of saves, then saves at a sustained
    rate; returns figures."""
    from bookstore.models import Book
    from ddp.testing import ServerProcess

    started = []
    try:
        for _ in range(servers):
            server = ServerProcess(
                "--workers",
                str(workers),
                command=[sys.executable, str(MANAGE), "ddpserver", "--noreload"],
                cwd=ROOT,
            )
            started.append(server.start())
        ready = clients.ask("open", [s.port for s in started], count, True)
        if ready < count:
            output = "".join(server.output()[-2000:] for server in started)
            raise RuntimeError(f"{ready} of {count} subscriptions ready; servers said:\n{output}")
        pids = [server.process.pid for server in started]
        cpu = sum(map(cpu_seconds, pids)), clients.ask("cpu")
        commits, saves, receipts = save_books(clients, count, rows, author, 0)
        servers_cpu = sum(map(cpu_seconds, pids)) - cpu[0]
        clients_cpu = clients.ask("cpu") - cpu[1]
        paced = save_books(clients, count, paced_rows, author, rows, rate)
    finally:
        for server in started:
            stop(server)
        Book.objects.filter(title__startswith=PREFIX).delete()
    # After the servers, which close every client themselves and unsubscribe it before
    # they leave the registry.
    clients.ask("close")
    last = max(t for _, t in receipts)
    p50, p99 = latencies(receipts)
    paced_p50, paced_p99 = latencies(paced[2])
    return {
        "delivered": len(receipts),
        "expected": rows * count,
        "rate": len(receipts) / (last - min(commits.values())),
        "p50": p50,
        "p99": p99,
        "save_mean": statistics.fmean(saves) * 1000,
        "save_p99": percentile(saves, 99) * 1000,
        "servers_us": servers_cpu / len(receipts) * 1e6,
        "clients_us": clients_cpu / len(receipts) * 1e6,
        "paced_delivered": len(paced[2]),
        "paced_expected": paced_rows * count,
        "paced_p50": paced_p50,
        "paced_p99": paced_p99,
        "paced_save_mean": statistics.fmean(paced[1]) * 1000,
    }


def added_text(book):
    """The exact text ``ddpserver`` sends for ``book``'s ``added``."""
    from ddp.api import API
    from ddp.protocol import Added, encode
    from ddp.serialize import document

    collection = API.collections_for_model(type(book))[0]
    return encode(Added(collection.get_name(), *document(book, collection)))


def run_raw(clients, count, frames, text):
    """Push ``frames`` copies of ``text`` to ``count`` clients.

    Returns frames/s received by the clients, frames/s of raw_push.py's ``sendall`` loop
    alone (when the second is far above the first, the clients are the bound), and the
    clients' CPU microseconds per frame.
    """
    from ddp.testing import ServerProcess

    server = ServerProcess(command=[sys.executable, str(RAW_PUSH)], cwd=ROOT).start()
    try:
        clients.ask("open", [server.port], count, False)
        cpu = clients.ask("cpu")
        clients.send("record", frames * count)
        triggered = time.time()
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/push?frames={frames}&clients={count}",
            data=text.encode(),
        )
        with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT) as response:
            pushed = json.load(response)
        receipts = clients.answer()
        cpu = clients.ask("cpu") - cpu
        clients.ask("close")
    finally:
        server.stop()
    if len(receipts) < frames * count:
        raise RuntimeError(f"Raw push: {len(receipts)} of {frames * count} frames arrived")
    received = len(receipts) / (max(t for _, t in receipts) - triggered)
    sent = pushed["clients"] * pushed["frames"] / pushed["seconds"]
    return received, sent, cpu / len(receipts) * 1e6


def setup_django():
    """Django as ``manage.py`` sets it up, then the example's tables (``migrate``)."""
    sys.path[:0] = [str(ROOT), str(ROOT / "testproject")]
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    import django

    # Importing the settings starts the embedded PostgreSQL (or attaches to it), and this
    # process keeps it running for migrate and the servers.
    django.setup()
    subprocess.run(
        [sys.executable, str(MANAGE), "migrate", "--verbosity", "0"],
        cwd=ROOT,
        check=True,
        timeout=300,
    )


def live_servers():
    """ddpservers already on this database: their subscriptions cost the writer too."""
    from django.db import connection

    from ddp.conf import ddp_settings

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM ddp_server WHERE heartbeat > now() - make_interval(secs => %s)",
            [ddp_settings.SERVER_TIMEOUT],
        )
        return cursor.fetchone()[0]


def earlier_reference(count):
    """The earlier figure with the most subscribers not above ``count`` (else the first)."""
    fitting = [entry for entry in EARLIER if entry[0] <= count]
    return fitting[-1] if fitting else EARLIER[0]


def table(results, prefix, columns):
    """One row per (servers, workers, clients): the delivered count (``prefix`` picks the
    burst's or the sustained phase's), then ``columns`` of (title, width, format,
    value(r, clients))."""
    header = f"{'servers':>7} {'workers':>7} {'clients':>7} {'delivered':>17} " + " ".join(
        f"{title:>{width}}" for title, width, _, _ in columns
    )
    print(header)
    print("-" * len(header))
    for (servers, workers, count), r in results.items():
        delivered = f"{r[prefix + 'delivered']:,}/{r[prefix + 'expected']:,}"
        values = " ".join(
            format(value(r, count), f">{width}{spec}") for _, width, spec, value in columns
        )
        print(f"{servers:>7} {workers:>7} {count:>7} {delivered:>17} {values}")


def report(args, results, raw, others, load):
    cpus = os.cpu_count()
    print()
    print("DDP fan-out: ORM saves to subscribed clients (bench/fanout.py)")
    print(f"date      {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine   {platform.platform()}, os.cpu_count() = {cpus}")
    print(f"python    {platform.python_version()} ({platform.python_implementation()})")
    print(f"writes    {args.rows} Book.objects.create() per run, one autocommit transaction each")
    print(f"transport {args.transport} (the raw push baseline: /websocket)")
    print(f"shared    clients, servers, PostgreSQL and the writer all run on these {cpus} CPUs")
    print(f"registry  {others} ddpserver(s) already registered as live on this database")
    print(f"load      {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)")
    print()
    burst = [
        ("changes/s", 10, ",.0f", lambda r, count: r["rate"]),
        ("lat p50 ms", 10, ".1f", lambda r, count: r["p50"]),
        ("lat p99 ms", 10, ".1f", lambda r, count: r["p99"]),
        ("save mean ms", 12, ".1f", lambda r, count: r["save_mean"]),
        ("save p99 ms", 11, ".1f", lambda r, count: r["save_p99"]),
        ("raw frames/s", 12, ",.0f", lambda r, count: raw[count][0]),
        ("ddp/raw", 7, ".3f", lambda r, count: r["rate"] / raw[count][0]),
        ("server us", 9, ".1f", lambda r, count: r["servers_us"]),
        ("client us", 9, ".1f", lambda r, count: r["clients_us"]),
    ]
    table(results, "", burst)
    print("(server us, client us: CPU microseconds per delivered message in the burst, of the")
    print("ddpservers and of the clients' one process, which share the machine's CPUs)")
    print()
    print(f"Sustained: then {args.paced_rows} more saves at {args.rate:g} per second, on a fixed")
    print("schedule (latency from COMMIT to receipt when the servers keep up):")
    sustained = [
        ("messages/s", 10, ",.0f", lambda r, count: args.rate * count),
        ("lat p50 ms", 10, ".1f", lambda r, count: r["paced_p50"]),
        ("lat p99 ms", 10, ".1f", lambda r, count: r["paced_p99"]),
        ("save mean ms", 12, ".1f", lambda r, count: r["paced_save_mean"]),
    ]
    table(results, "paced_", sustained)
    print()
    print(f"raw: bench/raw_push.py sends one pre-built added frame {args.rows} times to each of")
    print("the same clients with sendall; frames/s received, sent by its loop alone, and the")
    print("clients' CPU per frame:")
    for count, (received, sent, cpu) in raw.items():
        print(
            f"  {count:>5} clients: {received:>10,.0f} received/s, {sent:>10,.0f} sent/s,"
            f" {cpu:5.1f} us/frame"
        )
    print()
    print("Writer's time per save against the earlier implementation, which re-ran every")
    print("subscription per save: 140 ms with 100 subscribers, 480 ms with 400.")
    for (servers, workers, count), r in results.items():
        subscribers, earlier = earlier_reference(count)
        print(
            f"  {servers} server(s) x {workers} worker(s), {count:>5} clients:"
            f" {r['save_mean']:6.1f} ms"
            f" = {r['save_mean'] / earlier:.3f} x {earlier:.0f} ms ({subscribers} subscribers)"
        )


def worker_ratios(results):
    """Each ``--workers W`` run against W = 1 with the same servers and clients."""
    lines = []
    for (servers, workers, count), r in results.items():
        base = results.get((servers, 1, count))
        if workers == 1 or base is None:
            continue
        lines.append(
            f"  {servers} server(s), {count:>5} clients, {workers} workers / 1:"
            f" changes/s {r['rate'] / base['rate']:.2f}x, burst p99 {r['p99'] / base['p99']:.2f}x,"
            f" sustained p99 {r['paced_p99'] / base['paced_p99']:.2f}x"
        )
    if lines:
        print()
        print("ddpserver --workers W against --workers 1, same run (p99 below 1 is better):")
        print("\n".join(lines))


def numbers(text):
    return [int(part) for part in text.split(",")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients", type=numbers, default=[100, 1000], help="client counts (default 100,1000)"
    )
    parser.add_argument(
        "--servers", type=numbers, default=[1, 3], help="ddpserver counts (default 1,3)"
    )
    parser.add_argument(
        "--workers",
        type=numbers,
        default=[1],
        help="ddpserver --workers counts, each run with each (default 1)",
    )
    parser.add_argument(
        "--rows", type=int, default=200, help="books saved at once per run (default 200)"
    )
    parser.add_argument(
        "--rate", type=float, default=20.0, help="saves per second, sustained (default 20)"
    )
    parser.add_argument(
        "--paced-rows", type=int, default=100, help="books saved at --rate (default 100)"
    )
    parser.add_argument(
        "--transport",
        choices=sorted(TRANSPORTS),
        default="websocket",
        help="raw /websocket (default) or SockJS's websocket transport, as Meteor browsers",
    )
    args = parser.parse_args()

    # Whatever else runs on the machine takes CPU from the bench: shown with the figures.
    load = os.getloadavg()
    setup_django()
    from bookstore.models import Author, Book

    others = live_servers()
    author, _ = Author.objects.get_or_create(email=AUTHOR_EMAIL, defaults={"name": PREFIX})
    clients = ClientProcess(TRANSPORTS[args.transport])
    results, raw = {}, {}
    try:
        for servers in args.servers:
            for workers in args.workers:
                for count in args.clients:
                    print(f"{servers} server(s) x {workers} worker(s), {count} clients...")
                    results[servers, workers, count] = run_ddp(
                        clients,
                        servers,
                        count,
                        args.rows,
                        author,
                        args.rate,
                        args.paced_rows,
                        workers,
                    )
        # An unsaved book shaped like the runs' last one: its frame has their size.
        text = added_text(Book(pk=10**6, title=f"{PREFIX}{args.rows - 1:06d}", author=author))
        for count in args.clients:
            print(f"raw push, {count} clients...", flush=True)
            raw[count] = run_raw(clients, count, args.rows, text)
    finally:
        clients.stop()
        author.delete()  # and, by cascade, any book of the bench still there
    report(args, results, raw, others, load)
    worker_ratios(results)


if __name__ == "__main__":
    main()
