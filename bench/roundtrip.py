"""DDP round-trip latency against a bare WebSocket echo on the same stack, in one run.

``python bench/roundtrip.py [--calls 2000] [--warmup 100] [--logins 50] [--in-flight 20]``,
from anywhere.

One client (websocket-client, one thread, one call in flight at a time) measures, from just
before it sends to the moment the last answer is parsed, against one ``ddpserver`` of the
example project (``testproject/``, its embedded PostgreSQL, ``migrate`` run first), over
both of its DDP transports: raw DDP at ``/websocket`` (one message per frame) and SockJS's
websocket transport at ``/sockjs/<server>/<session>/websocket``, which a Meteor browser app
uses by default (``o`` first, then ``a["<json>",...]`` frames; the client sends
``["<json>"]``: every message is JSON inside a JSON string, both ways). Each target has a
connection of its own:

* ``ping``: DDP ``ping`` -> ``pong``. Answered by the connection itself: the DDP parsing
  and encoding (and, on ``/sockjs``, the SockJS framing) and nothing else.
* ``logout``: a DDP ``method`` call of ``logout`` (registered by ``ddp.accounts``) on a
  connection that is not logged in, so the method has nothing to do: no row to read or
  write and no subscription to re-run. What it measures is the path every method takes:
  the hand-over to the server's database worker pool, the method's ``transaction.atomic()``
  block, then ``result`` and ``updated``. Reported both to ``result`` and to ``updated``
  (the end of the call for a Meteor client), from the same calls, as every method here.
  No method was added for the bench.
* ``login (resume)``: ``login`` with ``{resume: token}``, what a Meteor client sends on every
  page load and reconnection. The token is looked up by its hash (one query, joined to the
  user), Django's ``user_logged_in`` updates ``last_login`` (one UPDATE), and the
  connection's subscriptions and ``users`` document are redone before ``result``. The
  connection stays logged in with the one token between calls, so after the first call
  the ``users`` document has no difference to send.
* ``login (password)``: ``login`` with ``{user: {username}, password: {digest, algorithm:
  "sha-256"}}``, on ``/websocket`` only: the transport's share is already measured above,
  and here it is lost in the hashing. The example's first hasher is
  ``MeteorPBKDF2PasswordHasher``, Django's PBKDF2 with Django's iteration count, which
  costs hundreds of milliseconds per check on purpose (it is what makes a stolen hash slow
  to crack), so it makes ``--logins`` calls rather than ``--calls``. Each is followed by an
  untimed ``logout``, which deletes the token the login made: tokens do not pile up, and
  the next login starts logged out, as a real one does. The same check, run in this
  process without a server, is printed with the figures to show how much of the login
  is PBKDF2.
* ``echo``: the same client against ``bench/echo_server.py``, which sends each text frame
  straight back, on the same stack (eventlet, ``eventlet.wsgi``, simple-websocket,
  TCP_NODELAY); the frame is the ``ping`` message, JSON-encoded and decoded by the client as
  for ``ddpserver``. The baseline: the ratios say how much DDP (and SockJS, and the method)
  adds to the transport.

Then *logins in flight*: ``--in-flight`` connections each send one password login at
once, as users do at 9 am, while a bystander's connection pings, one ping at a time, until
every login is answered (three rounds). Its round trips are the ``... logins in flight``
row, beside the idle ``/websocket ping -> pong`` row; the time until the last login's
answer is printed under the table. The server checks the hashes in OS threads, beside the
hub; if it did not, every ping would wait for the hashes before it.

The logins log in as a user made here through the ORM with a random password, and resume
the token of one password login made before the timed calls; that user, and with it every
token it still has, is deleted at the end.

The targets take turns in blocks of 100 calls, so that a change of the machine's load during
the run shifts all of them alike; the password logins are spread over the same turns, a
few after each round. Warm-up calls are made first the same way and not counted. Client,
servers and PostgreSQL share the machine's CPUs; only 127.0.0.1 is used and every wait is
bounded. Nothing is asserted: this prints figures.
"""

import argparse
import collections
import itertools
import json
import math
import os
import platform
import secrets
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from fanout import setup_django  # the same Django set-up and migrate as the other benches

ROOT = Path(__file__).resolve().parents[1]
ECHO_SERVER = ROOT / "bench" / "echo_server.py"
MANAGE = ROOT / "testproject" / "manage.py"

#: Seconds any single answer may take before the run is abandoned as broken.
TIMEOUT = 10
#: Calls a target makes before the next target's turn.
BLOCK = 100
#: The method timed: cheap, and registered by every project with ``ddp.accounts``.
METHOD = "logout"
#: The user the logins log in as. A run killed outright (no ``finally``) leaves it behind:
#: the next run deletes it first.
BENCH_USER = "bench-roundtrip"
#: Messages the server may send during a login or logout: the ``users`` document.
DATA = {"added", "changed", "removed"}
#: Untimed ``check_digest`` calls made in this process to show what PBKDF2 costs alone.
HASH_CHECKS = 5
ECHO = "echo server (baseline)"
#: Seconds between the bystander's pings while logins are in flight: a client that pings,
#: not one that floods (``MESSAGES_PER_SECOND`` would close it).
PING_PAUSE = 0.002


class WebSocket:
    """One websocket-client connection carrying one JSON message per text frame."""

    def __init__(self, url):
        import websocket

        # websocket-client sets TCP_NODELAY on its socket by default.
        self.ws = websocket.create_connection(url, timeout=TIMEOUT)

    def send(self, message):
        self.ws.send(json.dumps(message))

    def recv(self):
        return json.loads(self.ws.recv())

    def close(self):
        self.ws.close()


class SockJS(WebSocket):
    """SockJS's websocket transport, framed as sockjs-client frames it."""

    def __init__(self, base_url):
        # sockjs-client picks a random 3-digit server and an 8-character session per
        # connection; the server only routes on them.
        server, session = f"{secrets.randbelow(1000):03d}", secrets.token_hex(4)
        super().__init__(f"{base_url}sockjs/{server}/{session}/websocket")
        # One ``a`` frame may carry several messages (a login's ``added``, ``result`` and
        # ``updated``): they wait here for the next ``recv``.
        self.pending = collections.deque()
        frame = self.ws.recv()
        if frame != "o":
            raise RuntimeError(f"Expected SockJS's open frame, got {frame!r}")

    def send(self, message):
        self.ws.send(json.dumps([json.dumps(message)]))

    def recv(self):
        while not self.pending:
            # Heartbeats come as RFC 6455 pings, which websocket-client answers itself, so
            # anything but ``a`` (a close frame) ends the run.
            frame = self.ws.recv()
            if not frame.startswith("a"):
                raise RuntimeError(f"Unexpected SockJS frame: {frame[:200]!r}")
            self.pending.extend(json.loads(frame[1:]))
        return json.loads(self.pending.popleft())


class DDP:
    """A DDP connection over ``transport``; each call returns its exchange in seconds."""

    def __init__(self, transport):
        self.transport = transport
        self.ids = itertools.count(1)
        transport.send({"msg": "connect", "version": "1", "support": ["1"]})
        reply = transport.recv()
        if reply.get("msg") != "connected":
            raise RuntimeError(f"ddpserver did not connect: {reply}")

    def ping(self):
        call_id = str(next(self.ids))
        started = time.perf_counter()
        self.transport.send({"msg": "ping", "id": call_id})
        reply = self.transport.recv()
        elapsed = time.perf_counter() - started
        if reply != {"msg": "pong", "id": call_id}:
            raise RuntimeError(f"Expected the pong of {call_id}, got {reply}")
        return (elapsed,)

    def call(self, method, *params):
        """Seconds to the call's ``result`` and to its ``updated``, and the result."""
        call_id = str(next(self.ids))
        started = time.perf_counter()
        self.transport.send({"msg": "method", "id": call_id, "method": method, "params": params})
        result = updated = None
        while result is None or updated is None:
            reply = self.transport.recv()
            now = time.perf_counter()
            if reply.get("msg") == "result" and reply.get("id") == call_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                result = now - started
                value = reply.get("result")
            elif reply.get("msg") == "updated" and call_id in reply.get("methods", ()):
                updated = now - started
            elif reply.get("msg") not in DATA:
                raise RuntimeError(f"Unexpected message during {method}: {reply}")
        return result, updated, value

    def close(self):
        self.transport.close()


class Echo:
    """The baseline's client: the same transport and JSON work as ``DDP.ping``, no DDP."""

    def __init__(self, transport):
        self.transport = transport
        self.ids = itertools.count(1)

    def ping(self):
        """The DDP ping's exchange, minus DDP: the same text out, the same parse back."""
        message = {"msg": "ping", "id": str(next(self.ids))}
        started = time.perf_counter()
        self.transport.send(message)
        reply = self.transport.recv()
        elapsed = time.perf_counter() - started
        if reply != message:
            raise RuntimeError(f"Expected the echo of {message}, got {reply}")
        return (elapsed,)

    def close(self):
        self.transport.close()


def make_user():
    """The bench user, with a random password hashed by the first hasher; and its digest,
    which is what a Meteor client sends in place of the password."""
    from django.contrib.auth import get_user_model

    from ddp.accounts.passwords import digest_of

    users = get_user_model()._default_manager
    users.filter(username=BENCH_USER).delete()
    password = secrets.token_urlsafe(16)
    return users.create_user(username=BENCH_USER, password=password), digest_of(password)


def hashing(user, digest):
    """The user's hash and its PBKDF2 iterations, and one digest check's median seconds in
    this process: the part of a password login that no server can make faster."""
    from django.contrib.auth.hashers import identify_hasher

    from ddp.accounts.passwords import check_digest

    hasher = identify_hasher(user.password)
    seconds = []
    for _ in range(HASH_CHECKS):
        started = time.perf_counter()
        if not check_digest(user.password, digest):
            raise RuntimeError("The bench user's digest does not check")
        seconds.append(time.perf_counter() - started)
    iterations = hasher.decode(user.password)["iterations"]
    return hasher.algorithm, iterations, statistics.median(seconds)


def measure(fast, slow, args):
    """Seconds of each row's exchanges: ``--calls`` of each fast target, ``--logins`` of
    the slow one.

    ``fast`` and ``slow`` are ``(row names, exchange)``, the exchange returning one time per
    row. The fast targets take turns in blocks; the slow one makes its share after each
    round, so its few calls see the same load as the others. The warm-up goes the same way,
    untimed.
    """
    times = {name: [] for names, _ in (*fast, slow) for name in names}
    for total, slow_total, kept in (
        (args.warmup, args.warmup_logins, False),
        (args.calls, args.logins, True),
    ):
        done = slow_done = 0
        while done < total:
            block = min(BLOCK, total - done)
            done += block
            due = slow_total * done // total - slow_done
            slow_done += due
            for (names, exchange), count in [*((target, block) for target in fast), (slow, due)]:
                for _ in range(count):
                    sample = exchange()
                    if kept:
                        for name, seconds in zip(names, sample, strict=True):
                            times[name].append(seconds)
    return times


def logins_in_flight(url, bystander, password, count, rounds=3):
    """The bystander's ping round trips while ``count`` password logins are checked at
    once, each on a connection of its own; and each round's seconds until the last answer."""
    import threading

    pings, spans = [], []
    for _ in range(rounds):
        logins = [DDP(WebSocket(url)) for _ in range(count)]
        answered = []
        try:
            started = time.perf_counter()
            threads = [
                threading.Thread(
                    target=lambda client=client, answered=answered: answered.append(
                        client.call("login", password)
                    ),
                    daemon=True,
                )
                for client in logins
            ]
            for thread in threads:
                thread.start()
            while len(answered) < count:
                pings.append(bystander.ping()[0])
                time.sleep(PING_PAUSE)
            spans.append(time.perf_counter() - started)
            for thread in threads:
                thread.join(TIMEOUT)
        finally:
            for client in logins:
                client.close()
    return pings, spans


def percentile(values, pct):
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def report(args, times, load, hashed, spans):
    cpus = os.cpu_count()
    ms = {
        name: (percentile(values, 50) * 1000, percentile(values, 99) * 1000)
        for name, values in times.items()
    }
    echo50, echo99 = ms[ECHO]
    algorithm, iterations, check = hashed
    print()
    print("DDP round trip against a bare WebSocket echo (bench/roundtrip.py)")
    print(f"date      {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine   {platform.platform()}, os.cpu_count() = {cpus}")
    print(f"python    {platform.python_version()} ({platform.python_implementation()})")
    print(f"calls     {args.calls} per target after {args.warmup} warm-up, one at a time,")
    print(f"          targets alternating every {BLOCK}; client, servers and PostgreSQL")
    print(f"          share these {cpus} CPUs")
    print(
        f"logins    {args.logins} by password after {args.warmup_logins} warm-up, spread over the"
    )
    print("          same turns, each followed by an untimed logout")
    print(f"hashing   {algorithm}, {iterations:,} iterations: one digest check in")
    print(
        f"          this process, without a server: {check * 1000:.1f} ms (median of {HASH_CHECKS})"
    )
    print(f"load      {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)")
    print()
    header = (
        f"{'target':<38} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'p50 / echo':>10} {'p99 / echo':>10}"
    )
    print(header)
    print("-" * len(header))
    # The baseline last, below what is compared with it.
    for name in [*(name for name in times if name != ECHO), ECHO]:
        p50, p99 = ms[name]
        print(
            f"{name:<38} {len(times[name]):>5} {p50:>9.3f} {p99:>9.3f}"
            f" {p50 / echo50:>10.2f} {p99 / echo99:>10.2f}"
        )
    print()
    print(
        f"{args.in_flight} logins in flight: the last answered after"
        f" {', '.join(f'{span:.2f}' for span in spans)} s (each round)"
    )


def targets(ddp_server, echo_server, user, digest, clients):
    """The fast targets and the slow one, each on a connection of its own (put in
    ``clients`` as they open, to be closed whatever happens)."""

    def connect(client):
        clients.append(client)
        return client

    sockjs_url = ddp_server.ws_url.removesuffix("websocket")
    raw = connect(DDP(WebSocket(ddp_server.ws_url)))
    sockjs = connect(DDP(SockJS(sockjs_url)))
    raw_resume = connect(DDP(WebSocket(ddp_server.ws_url)))
    sockjs_resume = connect(DDP(SockJS(sockjs_url)))
    raw_password = connect(DDP(WebSocket(ddp_server.ws_url)))
    echo = connect(Echo(WebSocket(echo_server.ws_url)))

    password = {
        "user": {"username": user.get_username()},
        "password": {"digest": digest, "algorithm": "sha-256"},
    }
    # The one token both resume connections log in with, again and again.
    resume = {"resume": raw_resume.call("login", password)[2]["token"]}

    def password_login():
        result, updated, _ = raw_password.call("login", password)
        raw_password.call("logout")
        return result, updated

    fast = [
        (("/websocket ping -> pong",), raw.ping),
        (("/sockjs    ping -> pong",), sockjs.ping),
        (
            (f"/websocket {METHOD} -> result", f"/websocket {METHOD} -> updated"),
            lambda: raw.call(METHOD)[:2],
        ),
        (
            (f"/sockjs    {METHOD} -> result", f"/sockjs    {METHOD} -> updated"),
            lambda: sockjs.call(METHOD)[:2],
        ),
        (
            ("/websocket login (resume) -> result", "/websocket login (resume) -> updated"),
            lambda: raw_resume.call("login", resume)[:2],
        ),
        (
            ("/sockjs    login (resume) -> result", "/sockjs    login (resume) -> updated"),
            lambda: sockjs_resume.call("login", resume)[:2],
        ),
        ((ECHO,), echo.ping),
    ]
    slow = (
        ("/websocket login (password) -> result", "/websocket login (password) -> updated"),
        password_login,
    )
    return fast, slow, raw, password


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=2000, help="timed calls per target (default 2000)"
    )
    parser.add_argument(
        "--warmup", type=int, default=100, help="untimed calls per target first (default 100)"
    )
    parser.add_argument("--logins", type=int, default=50, help="timed password logins (default 50)")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=20,
        help="password logins sent at once while a bystander pings (default 20)",
    )
    args = parser.parse_args()
    if args.calls < 2 or args.logins < 2 or args.warmup < 0 or args.in_flight < 1:
        parser.error(
            "--calls and --logins must be at least 2, --in-flight 1 and --warmup at least 0"
        )
    # The password logins' warm-up: the same share of theirs as the other targets'.
    args.warmup_logins = math.ceil(args.warmup * args.logins / args.calls)

    # Whatever else runs on the machine takes CPU from the bench: shown with the figures.
    load = os.getloadavg()
    setup_django()
    from ddp.testing import ServerProcess

    user, digest = make_user()
    servers = []
    clients = []
    try:
        hashed = hashing(user, digest)
        # Meteor's accounts rule (5 logins per 10 s per connection) would refuse the bench's
        # thousands of logins on one connection, and the message budget its thousands of
        # calls: the test settings (the example's, plus a DDP override from the
        # environment) lift both for this server only.
        servers.append(
            ServerProcess(
                command=[sys.executable, str(MANAGE), "ddpserver", "--noreload"],
                cwd=ROOT,
                settings="tests.settings",
                ddp={"RATE_LIMITS": [], "MESSAGES_PER_SECOND": None},
            ).start()
        )
        servers.append(ServerProcess(command=[sys.executable, str(ECHO_SERVER)], cwd=ROOT).start())
        ddp_server, echo_server = servers
        fast, slow, bystander, password = targets(ddp_server, echo_server, user, digest, clients)
        print(
            f"{args.warmup} + {args.calls} calls per target,"
            f" {args.warmup_logins} + {args.logins} password logins...",
            flush=True,
        )
        times = measure(fast, slow, args)
        in_flight = f"/websocket ping, {args.in_flight} logins in flight"
        times[in_flight], spans = logins_in_flight(
            ddp_server.ws_url, bystander, password, args.in_flight
        )
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
        # Its tokens go with it (CASCADE).
        user.delete()
    report(args, times, load, hashed, spans)


if __name__ == "__main__":
    main()
