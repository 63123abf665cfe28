"""``manage.py ddpserver [addrport]``: serve DDP at ``/websocket`` and Django on one port."""

import gc
import os
import re
import sys

from django.core.management.base import BaseCommand, CommandError, SystemCheckError

from ddp.conf import ddp_settings

# Django's runserver accepts the same forms: "8000", "127.0.0.1:8000", "[::1]:8000".
ADDRPORT = re.compile(
    r"^(?:(?P<addr>(?P<ipv4>\d{1,3}(?:\.\d{1,3}){3})|\[(?P<ipv6>[a-fA-F0-9:]+)\]"
    r"|(?P<fqdn>[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*)):)?(?P<port>\d+)$"
)
DEFAULT_ADDR = "127.0.0.1"
DEFAULT_PORT = 8000


def parse_addrport(addrport):
    """``(addr, port)`` from runserver's forms; raises CommandError with what is wrong."""
    if not addrport:
        return DEFAULT_ADDR, DEFAULT_PORT
    match = ADDRPORT.match(addrport)
    if match is None:
        raise CommandError(f'"{addrport}" is not a valid port number or address:port pair.')
    addr = match["ipv6"] or match["ipv4"] or match["fqdn"] or DEFAULT_ADDR
    port = int(match["port"])
    if port > 65535:
        raise CommandError(f"{port} is not a valid port number.")
    return addr, port


class Command(BaseCommand):
    help = "Serve DDP (Meteor's protocol) at /websocket and the Django project on one port."

    # Checked in handle() instead, with the database checks, which Django runs only when
    # asked for a database (as migrate does): whether the database can carry DDP["CAPTURE"].
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "addrport",
            nargs="?",
            help="Port or address:port to listen on (default 127.0.0.1:8000).",
        )
        parser.add_argument(
            "--db-pool",
            type=int,
            default=None,
            help="Green database workers, one connection each (default: DDP['DB_POOL_SIZE']).",
        )
        parser.add_argument(
            "--max-connections",
            type=int,
            default=None,
            help="Simultaneous HTTP and WebSocket connections (default: DDP['MAX_CONNECTIONS']).",
        )
        parser.add_argument(
            "--max-message-size",
            type=int,
            default=None,
            help="Largest client message in bytes; larger ones close with 1009 (default 1 MiB).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="Server processes sharing the port (default 1; 0: one per CPU).",
        )
        parser.add_argument("--skip-checks", action="store_true", help="Skip system checks.")
        parser.add_argument(
            "--noreload",
            action="store_false",
            dest="use_reloader",
            help="Do not restart the server when a Python file changes (use it in production).",
        )

    def run_from_argv(self, argv):
        from ddp.server import reloader

        self._called_from_command_line = True  # a bad option prints the usage, as Django's do
        options = self.create_parser(argv[0], argv[1]).parse_args(argv[2:])
        if options.use_reloader and not reloader.in_child():
            # This process only starts the servers: no eventlet, no database, no socket.
            sys.exit(reloader.run_parent())
        # manage.py and django-admin: start again with eventlet patching first of all.
        from ddp.server import eventlet_driver

        if not eventlet_driver.is_patched():
            eventlet_driver.exec_patched()
        super().run_from_argv(argv)

    def execute(self, *args, **options):
        # call_command() in a running process: patch now, before the server opens anything.
        from ddp.server import eventlet_driver, reloader

        eventlet_driver.monkey_patch()
        if not (options.get("use_reloader") and reloader.in_child()):
            return super().execute(*args, **options)
        try:
            return super().execute(*args, **options)
        except SystemCheckError as exc:
            # As runserver: the project's fix, not a new command, makes it serve.
            self.stderr.write(f"{exc.__class__.__name__}: {exc}")
            reloader.wait_for_change()

    def handle(self, *args, **options):
        from django.db import DEFAULT_DB_ALIAS, connections

        from ddp.accounts import hashing
        from ddp.api import API
        from ddp.bus.hub import Bus
        from ddp.bus.listener import Listener
        from ddp.bus.registry import ServerRegistration
        from ddp.replication.reader import Reader
        from ddp.server import eventlet_driver, reloader
        from ddp.server.pool import DatabasePool
        from ddp.server.workers import Master
        from ddp.server.wsgi import DDPApplication

        addr, port = parse_addrport(options["addrport"])
        pool_size = options["db_pool"] or ddp_settings.DB_POOL_SIZE
        max_connections = options["max_connections"] or ddp_settings.MAX_CONNECTIONS
        max_message_size = options["max_message_size"] or ddp_settings.MAX_MESSAGE_SIZE
        if pool_size < 1 or max_connections < 1 or max_message_size < 1:
            raise CommandError("--db-pool, --max-connections and --max-message-size must be >= 1")
        if options["workers"] < 0:
            raise CommandError("--workers must be >= 0 (0: one per CPU)")
        workers = options["workers"] or os.cpu_count() or 1
        # Only in a server the reloader started: one asked to serve without it never watches.
        reloading = options["use_reloader"] and reloader.in_child()
        if reloading and port == 0:
            raise CommandError("Port 0 with the reloader would change at each restart: give one")
        if reloading and workers != 1:
            raise CommandError(
                "--workers runs without the reloader, which restarts one process: add --noreload"
            )

        API.autodiscover()
        if not options["skip_checks"]:
            self.check(databases=[DEFAULT_DB_ALIAS])
        reading, capture = start_capture(connections[DEFAULT_DB_ALIAS])
        # This green thread keeps no connection of its own while it serves, and workers
        # (--workers) are forked with none open: each opens its own.
        connections[DEFAULT_DB_ALIAS].close()
        eventlet_driver.raise_file_limit()
        try:
            sock = eventlet_driver.listen(addr, port)
        except OSError as exc:
            raise CommandError(f"Cannot listen on {addr}:{port}: {exc.strerror}") from None
        bound_port = sock.getsockname()[1]
        host = f"[{addr}]" if ":" in addr else addr

        def started(pids=None):
            line = f"DDP server listening on http://{host}:{bound_port}/"
            if pids is not None:
                line += f" with {len(pids)} workers (pids {', '.join(map(str, pids))})"
            self.stdout.write(line)
            self.stdout.write(f"  Meteor: DDP.connect('http://{host}:{bound_port}/')")
            self.stdout.write(f"  raw DDP: ws://{host}:{bound_port}/websocket")
            self.stdout.write(f"  changes: {capture}")
            if reloading:
                self.stdout.write("  restarts when a Python file changes (--noreload: never)")
            if options["verbosity"] >= 2:
                for name in sorted(API.publications):
                    self.stdout.write(f"  publication {name}")
                for name in sorted(API.methods):
                    self.stdout.write(f"  method {name}")
            self.stdout.flush()

        def serve(worker=None):
            """One whole server; with ``worker``, one of the master's (``--workers``)."""
            driver = eventlet_driver.EventletDriver()
            pool = DatabasePool(pool_size, driver)
            hashing.install(driver, ddp_settings.PASSWORD_HASHING_THREADS)
            bus = Bus(
                ServerRegistration(driver),
                Listener(connections["default"].get_connection_params(), driver),
                pool.run,
                driver,
            )
            bus.start(heartbeat=ddp_settings.SERVER_HEARTBEAT)
            reader = None
            if reading:
                reader = Reader(
                    connections[DEFAULT_DB_ALIAS].get_connection_params(), pool.run, driver
                )
                reader.start()
            app = DDPApplication(
                pool.run,
                eventlet_driver.mark_handled,
                driver,
                max_message_size,
                bus,
                max_connections=max_connections,
                worker=None if worker is None else worker.index,
            )
            settle_memory(ddp_settings.GC_THRESHOLD)
            signum = eventlet_driver.serve(
                sock,
                app,
                max_connections,
                on_started=started if worker is None else worker.ready,
                window=ddp_settings.SHUTDOWN_WINDOW,
                until=reloader.watch_files if reloading else None,
                worker=worker,
            )
            if reader is not None:
                reader.stop()
            bus.stop()
            pool.close()
            return signum

        signum = 0
        if workers == 1:
            signum = serve()
        else:
            channels = eventlet_driver.channels(workers)
            master = Master(workers, serve, sock, channels, eventlet_driver.after_fork, started)
            status = master.run()
            if status:
                sys.exit(status)
        self.stdout.write("DDP server stopped.")
        if signum is None:
            sys.exit(reloader.RESTART)


def start_capture(connection):
    """``(reading, what to print)``: whether this server runs a replication reader, and
    where its changes come from and why.

    Database capture makes the publication and the slot now, before any client is
    served: with ``"auto"`` writers go quiet once the slot exists. ``"auto"`` that cannot
    make them falls back to signals; ``"database"`` stops here.
    """
    from django.db import DatabaseError

    from ddp.api import API
    from ddp.replication import setup
    from ddp.replication.consumer import Tables

    mode, reason = setup.capture_mode(connection)
    if mode == "database":
        try:
            with connection.cursor() as cursor:
                setup.prepare(cursor, Tables(API))
        except (setup.SetupError, DatabaseError) as exc:
            problem = " ".join(str(exc).split())  # PostgreSQL's may span lines
            if ddp_settings.CAPTURE == "database":
                raise CommandError(f"Database capture cannot start: {problem}") from None
            mode, reason = "signals", f"database capture is not possible: {problem}"
    if mode == "signals":
        return False, f"signals capture ({reason})"
    return True, f"database capture ({reason}; read by the server that holds the lock)"


def settle_memory(threshold):
    """Tune Python's garbage collector for a server of many long-lived clients.

    What start-up made (Django, the project, the registry) lives as long as the process:
    frozen, full collections skip it. And the young generation is collected after
    ``threshold`` allocations rather than 700 (``DDP["GC_THRESHOLD"]``; None keeps
    Python's), so that the full collections, which walk every client's merge box, come
    far less often; with 1,000 clients they made the slowest 1% of changes wait ~100 ms.
    """
    gc.collect()
    gc.freeze()
    if threshold is not None:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
