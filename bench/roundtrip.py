"""DDP round-trip latency against a bare WebSocket echo on the same stack, in one run.

``python bench/roundtrip.py [--calls 2000] [--warmup 100]``, from anywhere.

One client (websocket-client, one thread, one call in flight at a time) measures, from just
before it sends to the moment the last answer is parsed:

* ``ping``: DDP ``ping`` -> ``pong`` against a ``ddpserver`` of the example project
  (``testproject/``, its embedded PostgreSQL, ``migrate`` run first). Answered by the
  connection itself: the DDP parsing and encoding and nothing else.
* ``logout``: a DDP ``method`` call of ``logout`` (registered by ``ddp.accounts``) on the
  same connection, which is not logged in, so the method has nothing to do: no row to read
  or write and no subscription to re-run. What it measures is the path every method takes:
  the hand-over to the server's database worker pool, the method's ``transaction.atomic()``
  block, then ``result`` and ``updated``. Reported both to ``result`` and to ``updated``
  (the end of the call for a Meteor client), from the same calls. No method was added for
  the bench; ``bookstore.renameBook`` would add a row read, a save, a NOTIFY and the fence.
* ``echo``: the same client against ``bench/echo_server.py``, which sends each text frame
  straight back, on the same stack (eventlet, ``eventlet.wsgi``, simple-websocket,
  TCP_NODELAY); the frame is the ``ping`` message, JSON-encoded and decoded by the client as
  for ``ddpserver``. The baseline: the ratios say how much DDP adds to the transport.

The targets take turns in blocks of 100 calls, so that a change of the machine's load during
the run shifts all of them alike. Warm-up calls are made first and not counted. Client,
servers and PostgreSQL share the machine's CPUs; only 127.0.0.1 is used and every wait is
bounded. Nothing is asserted: this prints figures.
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ECHO_SERVER = ROOT / "bench" / "echo_server.py"
MANAGE = ROOT / "testproject" / "manage.py"

#: Seconds any single answer may take before the run is abandoned as broken.
TIMEOUT = 10
#: Calls a target makes before the next target's turn.
BLOCK = 100
#: The method timed: cheap, and registered by every project with ``ddp.accounts``.
METHOD = "logout"


class Client:
    """One websocket-client connection; ``call`` times one exchange in seconds."""

    def __init__(self, url):
        import websocket

        # websocket-client sets TCP_NODELAY on its socket by default.
        self.ws = websocket.create_connection(url, timeout=TIMEOUT)
        self.ids = itertools.count(1)

    def send(self, message):
        self.ws.send(json.dumps(message))

    def recv(self):
        return json.loads(self.ws.recv())

    def close(self):
        self.ws.close()


class DDP(Client):
    def __init__(self, url):
        super().__init__(url)
        self.send({"msg": "connect", "version": "1", "support": ["1"]})
        reply = self.recv()
        if reply.get("msg") != "connected":
            raise RuntimeError(f"ddpserver did not connect: {reply}")

    def ping(self):
        call_id = str(next(self.ids))
        started = time.perf_counter()
        self.send({"msg": "ping", "id": call_id})
        reply = self.recv()
        elapsed = time.perf_counter() - started
        if reply != {"msg": "pong", "id": call_id}:
            raise RuntimeError(f"Expected the pong of {call_id}, got {reply}")
        return elapsed

    def method(self):
        """Seconds to the call's ``result``, and to its ``updated``."""
        call_id = str(next(self.ids))
        started = time.perf_counter()
        self.send({"msg": "method", "id": call_id, "method": METHOD, "params": []})
        result = updated = None
        while result is None or updated is None:
            reply = self.recv()
            now = time.perf_counter()
            if reply.get("msg") == "result" and reply.get("id") == call_id:
                if "error" in reply:
                    raise RuntimeError(f"{METHOD} failed: {reply['error']}")
                result = now - started
            elif reply.get("msg") == "updated" and call_id in reply.get("methods", ()):
                updated = now - started
            else:
                raise RuntimeError(f"Unexpected message during {METHOD}: {reply}")
        return result, updated


class Echo(Client):
    def ping(self):
        """The DDP ping's exchange, minus DDP: the same text out, the same parse back."""
        message = {"msg": "ping", "id": str(next(self.ids))}
        started = time.perf_counter()
        self.send(message)
        reply = self.recv()
        elapsed = time.perf_counter() - started
        if reply != message:
            raise RuntimeError(f"Expected the echo of {message}, got {reply}")
        return elapsed


def setup_django():
    """Django as ``manage.py`` sets it up, then the example's tables (``migrate``)."""
    sys.path[:0] = [str(ROOT), str(ROOT / "testproject")]
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    import django

    # Importing the settings starts the embedded PostgreSQL (or attaches to it), and this
    # process keeps it running for migrate and the server.
    django.setup()
    subprocess.run(
        [sys.executable, str(MANAGE), "migrate", "--verbosity", "0"],
        cwd=ROOT,
        check=True,
        timeout=300,
    )


def measure(ddp, echo, calls, warmup):
    """Seconds per exchange of each target, ``calls`` each, in alternating blocks."""
    for _ in range(warmup):
        echo.ping()
        ddp.ping()
        ddp.method()
    times = {"echo": [], "ping": [], "result": [], "updated": []}
    done = 0
    while done < calls:
        block = min(BLOCK, calls - done)
        times["echo"] += [echo.ping() for _ in range(block)]
        times["ping"] += [ddp.ping() for _ in range(block)]
        for _ in range(block):
            result, updated = ddp.method()
            times["result"].append(result)
            times["updated"].append(updated)
        done += block
    return times


def percentile(values, pct):
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def report(args, times, load):
    cpus = os.cpu_count()
    ms = {
        name: (percentile(values, 50) * 1000, percentile(values, 99) * 1000)
        for name, values in times.items()
    }
    echo50, echo99 = ms["echo"]
    rows = [
        ("ddpserver ping -> pong", ms["ping"]),
        (f"ddpserver {METHOD} -> result", ms["result"]),
        (f"ddpserver {METHOD} -> updated", ms["updated"]),
        ("echo server (baseline)", ms["echo"]),
    ]
    print()
    print("DDP round trip against a bare WebSocket echo (bench/roundtrip.py)")
    print(f"date      {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine   {platform.platform()}, os.cpu_count() = {cpus}")
    print(f"python    {platform.python_version()} ({platform.python_implementation()})")
    print(f"calls     {args.calls} per target after {args.warmup} warm-up, one at a time,")
    print(f"          targets alternating every {BLOCK}; client, servers and PostgreSQL")
    print(f"          share these {cpus} CPUs")
    print(f"load      {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)")
    print()
    header = f"{'target':<30} {'p50 ms':>8} {'p99 ms':>8} {'p50 / echo':>10} {'p99 / echo':>10}"
    print(header)
    print("-" * len(header))
    for name, (p50, p99) in rows:
        print(f"{name:<30} {p50:>8.3f} {p99:>8.3f} {p50 / echo50:>10.2f} {p99 / echo99:>10.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=2000, help="timed calls per target (default 2000)"
    )
    parser.add_argument(
        "--warmup", type=int, default=100, help="untimed calls per target first (default 100)"
    )
    args = parser.parse_args()
    if args.calls < 2 or args.warmup < 0:
        parser.error("--calls must be at least 2 and --warmup at least 0")

    # Whatever else runs on the machine takes CPU from the bench: shown with the figures.
    load = os.getloadavg()
    setup_django()
    from ddp.testing import ServerProcess

    servers = []
    clients = []
    try:
        for command in (
            [sys.executable, str(MANAGE), "ddpserver"],
            [sys.executable, str(ECHO_SERVER)],
        ):
            servers.append(ServerProcess(command=command, cwd=ROOT).start())
        ddp_server, echo_server = servers
        clients.append(DDP(ddp_server.ws_url))
        clients.append(Echo(echo_server.ws_url))
        print(f"{args.warmup} + {args.calls} calls per target...", flush=True)
        times = measure(*clients, args.calls, args.warmup)
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
    report(args, times, load)


if __name__ == "__main__":
    main()
