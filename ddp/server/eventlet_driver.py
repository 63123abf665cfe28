"""The eventlet driver: the one module of the project that imports eventlet.

Importing eventlet prints an ``EventletDeprecationWarning`` ("bugfix mode"). We know, we
chose it for its mature green psycopg2 support, and keeping it in this one module keeps
an asyncio driver a small change later; so the notice is filtered here, where it is
imported, rather than shown to every user of ``ddpserver``.
"""

import logging
import os
import resource
import signal
import socket
import sys
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402
import eventlet.event  # noqa: E402
import eventlet.hubs  # noqa: E402
import eventlet.tpool  # noqa: E402
import eventlet.wsgi  # noqa: E402

logger = logging.getLogger("ddp.server")


def monkey_patch():
    """Turn the standard library green before Django opens a connection or a thread.

    ``ddpserver`` normally gets here first thing, through :func:`exec_patched`. When it
    is run in a process where Django is already set up (``call_command``), Django's
    connection handler already holds a real ``threading.local``, which would share one
    connection between all green workers: it gets a fresh, green one.
    """
    if is_patched():
        return
    django_db = sys.modules.get("django.db")
    if django_db is not None:
        if any(c.connection is not None for c in django_db.connections.all(initialized_only=True)):
            raise RuntimeError("A database connection was opened before eventlet could patch")
    eventlet.monkey_patch()
    if django_db is not None:
        from asgiref.local import Local

        connections = django_db.connections
        connections._connections = Local(connections.thread_critical)


def exec_patched():
    """Start this program again with eventlet patching before anything else is imported.

    ``manage.py`` and ``django-admin`` set Django up before a command runs, and locks and
    thread-locals made then stay real. Replacing the process with ``python -m ddp.server
    <the same program and arguments>`` patches first, whichever way ``ddpserver`` was
    started. It keeps the process id, the environment and the arguments.
    """
    from ddp.server.reloader import patched_argv

    argv = patched_argv()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def is_patched():
    return eventlet.patcher.is_monkey_patched("socket")


def raise_file_limit():
    """Raise the open-file limit to the hard limit: each client is one descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            logger.warning("Could not raise the open-file limit above %d", soft)


def listen(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = eventlet.listen((addr, port), family=family, backlog=2048)
    # Linux hands TCP_NODELAY on to every accepted socket: no 40 ms Nagle stall.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def spawn(function):
    """Start ``function`` in a new green thread (``spawn_n``: no result kept, the cheapest)."""
    eventlet.spawn_n(function)


def in_os_thread(function, *args):
    """``function(*args)`` in one of eventlet's OS threads; the calling green thread waits.

    For CPU work that releases the GIL (password hashes): the hub serves every other
    client meanwhile.
    """
    return eventlet.tpool.execute(function, *args)


class _Waited(Exception):
    """The end of :func:`wait_readable`'s timeout (never seen outside it)."""


def wait_readable(fileno, timeout):
    """Return once ``fileno`` can be read, or after ``timeout`` seconds, whichever is first;
    other green threads run meanwhile (the replication stream waits for its socket so)."""
    try:
        eventlet.hubs.trampoline(fileno, read=True, timeout=timeout, timeout_exc=_Waited)
    except _Waited:
        pass


class HttpProtocol(eventlet.wsgi.HttpProtocol):
    """eventlet's HTTP handler with small buffers: each WebSocket client keeps its request's
    buffers for as long as it stays, unused after the upgrade (8 + 16 KB by default).

    What it reports itself (a request it cannot parse, with its request line) goes to
    the ``ddp.server`` log rather than straight to stderr, and without SockJS session ids.
    """

    rbufsize = 2048
    wbufsize = 2048

    def log_message(self, format, *args):
        # Imported here: this module is imported before eventlet patches anything.
        from ddp.sockjs.redact import redact

        logger.warning("%s %s", self.client_address[0], redact(format % args))


def mark_handled():
    """Tell eventlet.wsgi that a request took its socket over (a WebSocket)."""
    eventlet.wsgi.WSGI_LOCAL.already_handled = True


def signals():
    """Return ``next_signal()``: a green thread that finishes with the number of the next
    SIGTERM or SIGINT.

    A Python signal handler runs between bytecodes, possibly inside the hub just before
    it sleeps, where anything it schedules waits for the next event. The signal number
    written to a wake-up pipe is an event the hub sees at once.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *args: None)

    def wait():
        eventlet.hubs.trampoline(read_end, read=True)
        return os.read(read_end, 1)[0]

    return lambda: eventlet.spawn(wait)


def _stop_at_once_on(second_signal):
    """A second SIGTERM or Ctrl-C during the graceful shutdown: whoever sent it will not
    wait for the clients, the pool or a stuck query, so neither does the process."""
    signum = second_signal.wait()
    logger.warning("Received signal %d again: stopping at once", signum)
    os._exit(128 + signum)


def serve(sock, app, max_connections, on_started=None, window=0.0, until=None):
    """Serve ``app`` on ``sock`` until SIGTERM or SIGINT, then close clients and return
    the signal's number.

    On the signal the server stops accepting, then ``app.shut_down(code, reason, pause)``
    closes the clients one by one over ``window`` seconds ("going away", after any method
    in flight has answered), as Meteor's graceful shutdown does, so that they reconnect
    to other servers gradually rather than all at once. A second signal, from then until
    the process ends, ends it at once.

    ``until``, when given, runs in a green thread and stops the server when it returns, as
    a signal would but closing every client at once, since the server it stops for is
    the next one on this port (a reload); ``serve`` then returns None.
    """
    next_signal = signals()
    signal_received = next_signal()
    stop = eventlet.event.Event()
    signal_received.link(lambda thread: stop.ready() or stop.send(thread.wait()))
    watcher = None
    if until is not None:
        watcher = eventlet.spawn(until)
        watcher.link(lambda thread: stop.ready() or stop.send(None))
    server = eventlet.spawn(
        eventlet.wsgi.server,
        sock,
        app,
        max_size=max_connections,
        protocol=HttpProtocol,
        log_output=False,
        debug=False,
    )
    if on_started is not None:
        on_started()
    signum = stop.wait()
    if signum is None:
        logger.info("Reloading, closing clients")
        window = 0.0
    else:
        logger.info("Received signal %d, closing clients", signum)
    # Whichever came first, the other stops waiting: one reader at a time on the signal pipe.
    signal_received.kill()
    if watcher is not None:
        watcher.kill()
    eventlet.spawn(_stop_at_once_on, next_signal())
    server.kill()
    sock.close()
    count = len(app.connections)
    app.shut_down(1001, "Server shutting down", window / count if count > 1 else 0)
    with eventlet.Timeout(window + 10, False):
        while app.connections:
            eventlet.sleep(0.05)
    return signum
