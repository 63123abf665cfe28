"""What an idle DDP connection costs one ddpserver in memory, and how fast N of them connect.

``python bench/connections.py [--clients 10000] [--in-flight 200] [--transport sockjs]``,
from anywhere.

One ``ddpserver`` of the example project (``testproject/``, its database, ``migrate`` run
first) is sent ``--clients`` raw WebSocket connections to ``/websocket``. Each sends DDP
``connect`` and a ``sub`` to ``meteor.loginServiceConfiguration`` (a built-in publication with
no documents: no query, no data) and then stays idle, answering the server's heartbeat
pings. With ``--transport sockjs`` each connects as Meteor's browser client does by
default: SockJS's websocket transport at ``/sockjs/000/<session>/websocket``, each DDP
message in a SockJS frame.
The clients are raw non-blocking sockets in one ``selectors`` loop in a child process, with at
most ``--in-flight`` handshakes under way at once (the server's listen backlog is 2,048).

Reported: the server's resident memory (``VmRSS`` of ``/proc/<pid>/status``) before the
clients, with ten warm-up connections already open so that lazy imports and first-use caches
are paid for, and after all are ``ready`` and the server has been left alone for a few
seconds; ``(after - before) / N``; its peak (``VmHWM``); and the time from the first
``connect()`` to the last ``ready``. The baselines are figures, not runs: the issue's target
(40 KB per connection or less) and the stock simple-websocket idle cost the project's research
measured (55-63 KB per connection); the ratios to each are printed.

The clients, the server and PostgreSQL share the machine; only 127.0.0.1 is used and every
wait is bounded. The server is stopped at the end; nothing is written to the database.
"""

import argparse
import base64
import itertools
import json
import multiprocessing
import os
import platform
import resource
import selectors
import socket
import sys
import time
from datetime import datetime, timezone

from fanout import MANAGE, PING, PONG, ROOT, TEXT, client_frame, setup_django, stop, take_frames

#: Connections opened and measured apart, before the "before" reading.
WARMUP = 10
#: Seconds the server is left alone after the last ``ready`` before "after" is read.
SETTLE = 5
#: Seconds without progress after which the clients give up on the rest.
IDLE_TIMEOUT = 30
#: Seconds the bench waits for any answer of the clients' process.
ANSWER_TIMEOUT = 900
#: The issue's target and the stock simple-websocket idle cost (research), in KB.
TARGET_KB = 40
STOCK_KB = (55, 63)

PUBLICATION = "meteor.loginServiceConfiguration"
CONNECT = {"msg": "connect", "version": "1", "support": ["1"]}
SUB = {"msg": "sub", "id": "1", "name": PUBLICATION, "params": []}


class Raw:
    """DDP straight over the WebSocket, one message per frame."""

    path = "/websocket"

    @staticmethod
    def frame(message):
        return client_frame(TEXT, json.dumps(message).encode())

    @staticmethod
    def has(payload, kind):
        return b'"%s"' % kind in payload


class SockJS:
    """DDP in SockJS frames: the client sends ``["<message>"]``, the server ``a["<message>"]``."""

    path = "/sockjs/000/{n:08d}/websocket"

    @staticmethod
    def frame(message):
        return client_frame(TEXT, json.dumps([json.dumps(message)]).encode())

    @staticmethod
    def has(payload, kind):
        return b'\\"%s\\"' % kind in payload


TRANSPORTS = {"websocket": Raw, "sockjs": SockJS}


# The clients' process ---------------------------------------------------------------------


class Conn:
    __slots__ = ("sock", "state", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"  # -> "upgrading" -> "subscribing" -> "ready"
        self.buf = bytearray()


class Clients:
    """Non-blocking clients in one selector loop; opened with a bound on handshakes in flight."""

    def __init__(self, transport):
        self.transport = TRANSPORTS[transport]
        self.hello = self.transport.frame(CONNECT) + self.transport.frame(SUB)
        self.pong = self.transport.frame({"msg": "pong"})
        self.numbers = itertools.count()
        self.selector = selectors.DefaultSelector()
        self.conns = []
        self.ready = 0
        self.failed = []  # (stage, error) of each connection that did not make it

    def open(self, port, count, in_flight):
        """Open ``count`` connections; return (ready, seconds, first failures)."""
        start = time.monotonic()
        ready0, failed0 = self.ready, len(self.failed)
        self.request_head = (
            f"HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        )
        opened = 0
        last, moved = 0, start
        while True:
            done = (self.ready - ready0) + (len(self.failed) - failed0)
            if done >= count:
                break
            while opened < count and opened - done < in_flight:
                self.connect(port)
                opened += 1
            if done != last:
                last, moved = done, time.monotonic()
            elif time.monotonic() - moved > IDLE_TIMEOUT:
                break
            self.poll(0.2)
        seconds = time.monotonic() - start
        return self.ready - ready0, seconds, self.failed[failed0:][:5]

    def connect(self, port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(sock)
        self.conns.append(conn)
        err = sock.connect_ex(("127.0.0.1", port))
        if err not in (0, 115):  # EINPROGRESS
            self.fail(conn, "connect", os.strerror(err))
            return
        self.selector.register(sock, selectors.EVENT_WRITE, conn)

    def fail(self, conn, stage, error):
        self.failed.append((stage, error))
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        conn.state = "failed"

    def poll(self, timeout):
        for key, _ in self.selector.select(timeout):
            conn = key.data
            try:
                if conn.state == "connecting":
                    err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self.fail(conn, "connect", os.strerror(err))
                        continue
                    key_b64 = base64.b64encode(os.urandom(16)).decode()
                    path = self.transport.path.format(n=next(self.numbers))
                    request = f"GET {path} {self.request_head}Sec-WebSocket-Key: {key_b64}\r\n\r\n"
                    conn.sock.send(request.encode())  # a few hundred bytes: fits the buffer
                    conn.state = "upgrading"
                    self.selector.modify(conn.sock, selectors.EVENT_READ, conn)
                else:
                    self.read(conn)
            except OSError as exc:
                self.fail(conn, conn.state, str(exc))

    def read(self, conn):
        data = conn.sock.recv(1 << 16)
        if not data:
            if conn.state == "ready":
                self.ready -= 1
            self.fail(conn, conn.state, "closed by the server")
            return
        conn.buf += data
        if conn.state == "upgrading":
            if b"\r\n\r\n" not in conn.buf:
                return
            head, _, rest = bytes(conn.buf).partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                self.fail(conn, "upgrading", head.splitlines()[0].decode(errors="replace"))
                return
            conn.buf = bytearray(rest)
            conn.sock.send(self.hello)
            conn.state = "subscribing"
        for opcode, payload in take_frames(conn.buf):
            if opcode == PING:
                conn.sock.send(client_frame(PONG, payload))
            elif opcode == TEXT:
                has = self.transport.has
                if has(payload, b"ready") and conn.state == "subscribing":
                    conn.state = "ready"
                    self.ready += 1
                elif has(payload, b"ping"):
                    # DDP's heartbeat: unanswered, the server closes the client after 30 s.
                    conn.sock.send(self.pong)
                elif has(payload, b"nosub") or has(payload, b"failed"):
                    self.fail(conn, conn.state, payload[:200].decode(errors="replace"))

    def hold(self, seconds):
        """Keep answering heartbeats for ``seconds``; return how many are still ready."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll(0.2)
        return self.ready

    def close(self):
        for conn in self.conns:
            if conn.state != "failed":
                conn.sock.close()
        self.conns.clear()


def serve_clients(pipe, hard, transport):
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    clients = Clients(transport)
    while True:
        # Between commands the clients keep answering the server's heartbeats.
        while not pipe.poll(0):
            clients.poll(0.2)
        command = pipe.recv()
        if command is None:
            clients.close()
            return
        name, *args = command
        pipe.send(getattr(clients, name)(*args))


class ClientProcess:
    def __init__(self, hard, transport):
        context = multiprocessing.get_context("spawn")
        self.pipe, child_end = context.Pipe()
        self.process = context.Process(
            target=serve_clients, args=(child_end, hard, transport), daemon=True
        )
        self.process.start()

    def ask(self, *command):
        self.pipe.send(command)
        if not self.pipe.poll(ANSWER_TIMEOUT):
            raise TimeoutError(f"The clients did not answer within {ANSWER_TIMEOUT} s")
        return self.pipe.recv()

    def stop(self):
        if self.process.is_alive():
            self.pipe.send(None)
            self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


# The bench ----------------------------------------------------------------------------------


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000, help="connections (default 10000)")
    parser.add_argument(
        "--in-flight", type=int, default=200, help="handshakes under way at once (default 200)"
    )
    parser.add_argument(
        "--transport",
        choices=sorted(TRANSPORTS),
        default="websocket",
        help="raw /websocket (default) or SockJS's websocket transport, as Meteor browsers",
    )
    args = parser.parse_args()

    load = os.getloadavg()
    # One descriptor per client here and in the server (which inherits the limit, and raises
    # its own soft limit to the hard one anyway).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    setup_django()
    from ddp.testing import ServerProcess

    clients = ClientProcess(hard, args.transport)
    server = ServerProcess(
        command=[sys.executable, str(MANAGE), "ddpserver", "--noreload"], cwd=ROOT
    ).start()
    pid = server.process.pid
    try:
        warm, _, warm_failed = clients.ask("open", server.port, WARMUP, WARMUP)
        if warm < WARMUP:
            raise RuntimeError(f"Warm-up: {warm} of {WARMUP} ready: {warm_failed}")
        clients.ask("hold", 2)
        before, hwm_before = status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM")
        print(f"{args.clients} connections to one ddpserver...", flush=True)
        ready, seconds, failures = clients.ask("open", server.port, args.clients, args.in_flight)
        still = clients.ask("hold", SETTLE) - WARMUP
        after, hwm_after = status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM")
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    finally:
        stop(server)
        clients.stop()

    per_kb = (after - before) / max(ready, 1)
    cpus = os.cpu_count()
    print()
    print("Idle DDP connections on one ddpserver (bench/connections.py)")
    print(f"date      {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine   {platform.platform()}, os.cpu_count() = {cpus}")
    print(f"python    {platform.python_version()} ({platform.python_implementation()})")
    print(f"fds       RLIMIT_NOFILE {soft} soft / {hard} hard; raised to {hard} here and in the")
    print(f"          clients' process; the server had {fds} descriptors open at the end")
    path = TRANSPORTS[args.transport].path.format(n=0)
    print(f"clients   {args.transport} ({path}), connect + sub {PUBLICATION},")
    print("          then idle; one selectors loop in a child process,")
    print(f"          {args.in_flight} handshakes in flight")
    print(f"shared    clients, server and PostgreSQL share these {cpus} CPUs")
    print(f"load      {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)")
    print()
    print(f"ready            {ready:,} of {args.clients:,} ({still:,} still open {SETTLE} s later)")
    if failures:
        print(f"first failures   {failures}")
    print(f"connect time     {seconds:.2f} s, first connect() to last ready")
    print(f"                 = {ready / seconds:,.0f} connections/s")
    print(f"server VmRSS     {before / 1024:,.1f} MB before ({WARMUP} warm-up connections open),")
    print(f"                 {after / 1024:,.1f} MB after, {SETTLE} s after the last ready")
    print(f"server VmHWM     {hwm_before / 1024:,.1f} MB before, {hwm_after / 1024:,.1f} MB after")
    print(f"per connection   {per_kb:.1f} KB  ((after - before) / {ready:,})")
    print()
    print(f"against the issue's target, {TARGET_KB} KB:          {per_kb / TARGET_KB:.2f} x")
    print(
        f"against stock simple-websocket idle, {STOCK_KB[0]}-{STOCK_KB[1]} KB: "
        f"{per_kb / STOCK_KB[1]:.2f}-{per_kb / STOCK_KB[0]:.2f} x"
    )


if __name__ == "__main__":
    main()
