"""``manage.py ddp_capture_status [--drop]``: where changes come from, and the slot's lag."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from ddp.api import API
from ddp.replication import setup

HELP = """\
Say where changes come from (DDP["CAPTURE"]: database capture or model signals) and why;
then the publication database capture reads through and its tables, and the replication
slot: whether a reader holds it (its process id on the database server, its application and
address), and its lag: the WAL written since the position its reader confirmed, which
PostgreSQL keeps for it, in bytes and, when known, in seconds.

--drop drops the slot and the publication: the way to turn database capture off for good
(set DDP["CAPTURE"] = "signals" first, or the next ddpserver makes them again). A slot that
a reader holds is not dropped: stop the ddpservers first.
"""


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser):
        parser.add_argument(
            "--drop",
            action="store_true",
            help="Drop the replication slot and the publication (turns database capture off).",
        )

    def handle(self, *args, drop, **options):
        API.autodiscover()
        connection = connections[DEFAULT_DB_ALIAS]
        if connection.vendor != "postgresql":
            raise CommandError("Database capture needs PostgreSQL.")
        if drop:
            with connection.cursor() as cursor:
                self._drop(cursor)
            return
        mode, reason = setup.capture_mode(connection)
        self.stdout.write(f"mode: {mode} ({reason})")
        with connection.cursor() as cursor:
            name = setup.replication_name(setup.current_database(cursor))
            self._publication(cursor, name)
            self._slot(cursor, name)

    def _publication(self, cursor, name):
        tables = setup.publication_tables(cursor, name)
        if tables is None:
            self.stdout.write(f"publication {name}: none")
            return
        self.stdout.write(f"publication {name}: {', '.join(tables) or 'no tables'}")
        missing = sorted(set(setup.published_tables()) - set(tables))
        if missing:
            # Made before these models were published: the next reader adds them.
            self.stdout.write(f"  not in it yet: {', '.join(missing)}")

    def _slot(self, cursor, name):
        status = setup.slot_status(cursor, name)
        if status is None:
            self.stdout.write(f"slot {name}: none")
            return
        reader = f"read by process {status.active_pid}" if status.active else "nobody reads it"
        if status.reader:
            reader += f" ({status.reader})"
        self.stdout.write(f"slot {name}: {reader}; WAL {status.wal_status}")
        seconds = "" if status.lag_seconds is None else f", {status.lag_seconds:.1f} s"
        self.stdout.write(f"  lag: {status.lag_bytes} bytes{seconds}")

    def _drop(self, cursor):
        try:
            slot, publication = setup.drop(cursor)
        except setup.SetupError as exc:
            raise CommandError(str(exc)) from None
        name = setup.replication_name(setup.current_database(cursor))
        dropped = [f"slot {name}"] * slot + [f"publication {name}"] * publication
        self.stdout.write(f"dropped {' and '.join(dropped)}" if dropped else "nothing to drop")
