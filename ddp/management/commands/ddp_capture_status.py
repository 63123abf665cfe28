"""``manage.py ddp_capture_status [--drop]``: where changes come from, and the slot's lag."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from ddp.api import API
from ddp.conf import ddp_settings
from ddp.replication import setup

HELP = """\
Say where changes come from (DDP["CAPTURE"]: database capture or model signals) and why;
then the publication database capture reads through and its tables, and the replication
slot: whether a reader holds it (its process id on the database server, its application and
address), and its lag: the WAL written since the position its reader confirmed, which
PostgreSQL keeps for it, in bytes and, when known, in seconds.

With DDP["CAPTURE"] = "auto" (the default) a ddpserver makes the slot when the database
allows it, and while the slot exists every process's writers leave their changes to it.
--drop drops the slot and the publication: the way to turn database capture off for good.
Set DDP["CAPTURE"] = "signals" in every process first and restart them (with "auto" the
next ddpserver makes the slot again, and writers stay quiet for a few seconds after it is
gone); a slot that a reader holds is not dropped: stop the ddpservers first.
"""


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser):
        parser.add_argument(
            "--drop",
            action="store_true",
            help='Drop the replication slot and the publication (after setting "signals").',
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
        with connection.cursor() as cursor:
            name = setup.replication_name(setup.current_database(cursor))
            auto = mode == "database" and ddp_settings.CAPTURE == "auto"
            if auto and setup.slot_status(cursor, name) is None:
                # Writers look for the slot: they send their changes until it exists.
                mode = "signals"
                reason = f"until a ddpserver makes the slot; database capture is possible: {reason}"
            self.stdout.write(f"mode: {mode} ({reason})")
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
