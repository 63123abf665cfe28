"""The eventlet driver: the one module of the project that imports eventlet.

Importing eventlet prints an ``EventletDeprecationWarning`` ("bugfix mode"). We know, we
chose it for its mature green psycopg2 support, and keeping it in this one module keeps
an asyncio driver a small change later; so the notice is filtered here, where it is
imported, rather than shown to every user of ``ddpserver``.
"""

import errno
import logging
import os
import resource
import signal
import socket
import sys
import time
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402
import eventlet.event  # noqa: E402
import eventlet.greenio  # noqa: E402
import eventlet.hubs  # noqa: E402
import eventlet.queue  # noqa: E402
import eventlet.semaphore  # noqa: E402
import eventlet.tpool  # noqa: E402
import eventlet.wsgi  # noqa: E402

from ddp.server import affinity  # noqa: E402

logger = logging.getLogger("ddp.server")

#: The standard library's socket module, whatever eventlet has patched: the descriptor
#: passing between workers uses its ``send_fds`` and ``recv_fds`` on non-blocking sockets.
_socket = eventlet.patcher.original("socket")

#: Seconds a worker waits for the request line of a connection it accepted before it
#: serves the connection itself: a client that connects and says nothing waits in its own
#: green thread, and holds up nobody.
PEEK_TIMEOUT = 5.0
#: Seconds a worker tries to hand a connection to its owner (whose queue is full, or who
#: is being restarted) before it closes it: the client retries.
HAND_OVER_TIMEOUT = 5.0


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


def channels(count):
    """``count`` pairs of descriptors ``(receiving end, sending end)``, one per worker of
    ``ddpserver --workers``, made before the workers are forked so that every worker
    holds every sending end, and a worker restarted in another's place its receiving end.

    Unix datagram sockets: each message is one whole connection's descriptor
    (``SCM_RIGHTS``), however many workers send on the same end at once.
    """
    pairs = []
    for _ in range(count):
        receiving, sending = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        pairs.append((receiving.detach(), sending.detach()))
    return pairs


def after_fork():
    """In a freshly forked worker: a hub of its own.

    The parent's epoll instance survives ``fork()`` shared by both processes, so what one
    registers the other would be woken for. The old hub is dropped unused (it has nothing
    to resume: the parent forks between its waits).
    """
    old = eventlet.hubs.get_hub()
    eventlet.hubs.use_hub()
    poll = getattr(old, "poll", None)
    if poll is not None and hasattr(poll, "close"):
        poll.close()


def spawn(function, *args):
    """Start ``function(*args)`` in a new green thread (``spawn_n``: no result kept, the
    cheapest)."""
    eventlet.spawn_n(function, *args)


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


class _Event:
    """:class:`ddp.runtime.driver.Event` on eventlet's, which cannot be cleared while unset."""

    __slots__ = ("_event",)

    def __init__(self):
        self._event = eventlet.event.Event()

    def set(self):
        if not self._event.ready():
            self._event.send(True)

    def clear(self):
        if self._event.ready():
            self._event.reset()

    def is_set(self):
        return self._event.ready()

    def wait(self, timeout=None):
        if timeout is not None and timeout <= 0:
            return self._event.ready()
        return self._event.wait(timeout) is True  # None when the timeout passed


class EventletDriver:
    """The :class:`ddp.runtime.driver.Driver` production runs on: eventlet's hub.

    A timer is an entry in the hub's schedule until it fires (no green thread waits for
    it), so a thousand detached sessions' expiries cost a thousand small objects.
    """

    spawn = staticmethod(spawn)
    clock = staticmethod(time.monotonic)
    sleep = staticmethod(eventlet.sleep)
    wait_readable = staticmethod(wait_readable)
    run_blocking = staticmethod(in_os_thread)

    def event(self):
        return _Event()

    def timer(self, seconds, function):
        return eventlet.hubs.get_hub().schedule_call_global(seconds, eventlet.spawn_n, function)


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


def serve(sock, app, max_connections, on_started=None, window=0.0, until=None, worker=None):
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

    ``worker`` (a :class:`ddp.server.workers.Worker`) makes this process one of
    ``ddpserver --workers``: connections are routed to the worker that owns them
    (:class:`Routed`), and every HTTP response closes its connection (no keep-alive), so
    that each request is routed by its own first line: a connection kept alive after a
    Django page could otherwise carry a SockJS session's request to the wrong worker.
    WebSockets are not concerned, and a proxy in front (nginx speaks HTTP/1.0 to its
    upstreams by default) opens a connection per request anyway.
    """
    next_signal = signals()
    signal_received = next_signal()
    stop = eventlet.event.Event()
    signal_received.link(lambda thread: stop.ready() or stop.send(thread.wait()))
    watcher = None
    if until is not None:
        watcher = eventlet.spawn(until)
        watcher.link(lambda thread: stop.ready() or stop.send(None))
    listening = sock if worker is None else Routed(sock, worker)
    server = eventlet.spawn(
        eventlet.wsgi.server,
        listening,
        app,
        max_size=max_connections,
        protocol=HttpProtocol,
        log_output=False,
        debug=False,
        keepalive=worker is None,
    )
    if worker is not None:
        eventlet.spawn_n(_stop_when_orphaned, worker.master)
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
    listening.close()
    count = len(app.connections)
    app.shut_down(1001, "Server shutting down", window / count if count > 1 else 0)
    with eventlet.Timeout(window + 10, False):
        while app.connections:
            eventlet.sleep(0.05)
    return signum


def _stop_when_orphaned(master):
    """A worker whose master died (``kill -9``) shuts down gracefully as on SIGTERM,
    rather than serve on unsupervised with nobody to stop it."""
    while os.getppid() == master:
        eventlet.sleep(1.0)
    logger.warning("The master process %d is gone: stopping", master)
    os.kill(os.getpid(), signal.SIGTERM)


class Routed:
    """The listening socket as ``eventlet.wsgi.server`` sees it in a worker of
    ``ddpserver --workers``: :meth:`accept` returns the connections this worker owns.

    Every worker accepts on the shared socket. A green thread per accepted connection
    peeks (``MSG_PEEK``: the bytes stay for the HTTP parser) at its request line;
    :func:`ddp.server.affinity.owner` names the worker that must serve it, and if that is
    another, the descriptor goes to it over its channel and this worker closes its copy
    (closes, never shuts down: the connection is the owner's now). A second green thread
    adopts the connections the other workers send here. No proxy process, and a
    connection costs one peek more than with one worker.
    """

    def __init__(self, sock, worker):
        self.sock = sock
        self.worker = worker
        self.accepted = eventlet.queue.LightQueue()
        self.inbox = _socket.socket(fileno=worker.inbox)
        self.inbox.setblocking(False)
        self.outboxes = []
        for fd in worker.outboxes:
            outbox = _socket.socket(fileno=fd)
            outbox.setblocking(False)
            # eventlet allows one green thread at a time to wait for a descriptor.
            self.outboxes.append((outbox, eventlet.semaphore.Semaphore()))
        self.threads = [eventlet.spawn(self._accept), eventlet.spawn(self._adopt_handed)]

    def __getattr__(self, name):
        return getattr(self.sock, name)

    def accept(self):
        return self.accepted.get()

    def close(self):
        for thread in self.threads:
            thread.kill()
        self.sock.close()

    def _accept(self):
        while True:
            try:
                conn, address = self.sock.accept()
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.EINVAL):
                    return  # closed: shutting down
                # Out of descriptors, or a connection reset before it was taken.
                logger.warning("accept failed: %s", exc)
                eventlet.sleep(0.1)
                continue
            eventlet.spawn_n(self._route, conn, address)

    def _route(self, conn, address):
        target = affinity.owner(_peek(conn), self.worker.count)
        if target is None or target == self.worker.index:
            self.accepted.put((conn, address))
            return
        outbox, lock = self.outboxes[target]
        try:
            with lock:
                _hand_over(conn, outbox)
        except OSError as exc:
            logger.warning("Could not hand a connection to worker %d: %s", target, exc)
        finally:
            conn.close()

    def _adopt_handed(self):
        while True:
            eventlet.hubs.trampoline(self.inbox.fileno(), read=True)
            while True:
                try:
                    _, fds, flags, _ = _socket.recv_fds(self.inbox, 16, 16)
                except BlockingIOError:
                    break
                if flags & _socket.MSG_CTRUNC:
                    logger.warning("Connections handed to this worker were lost (MSG_CTRUNC)")
                for fd in fds:
                    self._adopt(fd)

    def _adopt(self, fd):
        eventlet.hubs.notify_opened(fd)
        conn = eventlet.greenio.GreenSocket(_socket.socket(fileno=fd))
        try:
            address = conn.getpeername()
        except OSError:
            conn.close()  # its client left while it travelled
            return
        self.accepted.put((conn, address))


def _peek(conn):
    """The start of ``conn``'s request, left unread: its first line, or what came of it
    within :data:`PEEK_TIMEOUT` seconds."""
    deadline = time.monotonic() + PEEK_TIMEOUT
    head = b""
    while not affinity.complete(head):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        conn.settimeout(remaining)
        try:
            more = conn.recv(affinity.HEAD_LIMIT, socket.MSG_PEEK)
        except OSError:  # the timeout, or a reset
            break
        if not more:
            break  # closed by the client
        if len(more) == len(head):
            # Readable already: only a pause tells more from the same bytes again.
            eventlet.sleep(0.01)
        head = more
    return head


def _hand_over(conn, outbox):
    """Send ``conn``'s descriptor on ``outbox``; OSError (TimeoutError) when it stays full."""
    while True:
        try:
            _socket.send_fds(outbox, [b"c"], [conn.fileno()])
            return
        except BlockingIOError:
            eventlet.hubs.trampoline(
                outbox.fileno(), write=True, timeout=HAND_OVER_TIMEOUT, timeout_exc=TimeoutError
            )
