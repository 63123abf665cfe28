"""``manage.py ddp_capture FILE``: record the change stream, for ``ddp_replay``."""

import select
import time
from datetime import datetime, timezone

import psycopg2
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from ddp.api import API
from ddp.bus.listen import ListenConnection
from ddp.bus.producer import channel
from ddp.bus.recording import Recorder, Writer
from ddp.conf import ddp_settings

HELP = """\
Record every change event sent to the DDP channels into FILE (a new file), one JSON line
each, until Ctrl-C, --count or --duration. PostgreSQL has no wildcard LISTEN: the channels
are those of every collection registered in this project, plus each --channel given.
Replay the file with "manage.py ddp_replay FILE".
"""

#: Seconds between two redraws of the running count on a terminal.
REDRAW = 0.2
#: Seconds between two running-count lines when stdout is not a terminal.
LOG_EVERY = 10.0


def events(n):
    return f"{n} event" if n == 1 else f"{n} events"


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser):
        parser.add_argument(
            "file",
            help="The capture file to create (an existing file is refused, never overwritten).",
        )
        parser.add_argument("--count", type=int, metavar="N", help="Stop after N events.")
        parser.add_argument("--duration", type=float, metavar="S", help="Stop after S seconds.")
        parser.add_argument(
            "--channel",
            action="append",
            default=[],
            dest="channels",
            metavar="CHANNEL",
            help="Also LISTEN to this NOTIFY channel (repeatable), e.g. a collection's that"
            " this project does not register.",
        )

    def handle(self, *args, file, count, duration, channels, **options):
        if count is not None and count < 1:
            raise CommandError("--count must be 1 or more")
        if duration is not None and duration <= 0:
            raise CommandError("--duration must be more than 0")
        API.autodiscover()
        channels = sorted({channel(name) for name in API.collections} | set(channels))
        if not channels:
            raise CommandError("Nothing to LISTEN to: no collection is registered and no --channel")
        try:
            listening = ListenConnection.connect(connections["default"].get_connection_params())
        except psycopg2.Error as exc:
            raise CommandError(f"Cannot connect to the database: {exc}") from None
        try:
            # Created only once connected, so a failed start leaves no empty capture behind.
            try:
                stream = open(file, "xb")
            except OSError as exc:
                raise CommandError(f"Cannot create {file}: {exc.strerror}") from None
            with stream:
                self._capture(
                    listening,
                    channels,
                    Writer(stream, datetime.now(timezone.utc)),
                    file,
                    count,
                    duration,
                )
        finally:
            listening.close()

    def _capture(self, listening, channels, writer, file, count, duration):
        for name in channels:
            listening.listen(name)
        self.stdout.write(
            f"Listening on {', '.join(channels)}; writing to {file} (Ctrl-C to stop)."
        )
        self.stdout.flush()
        recorder = Recorder(ddp_settings.CHUNK_TIMEOUT)
        counter = RunningCount(self.stdout)
        start = time.monotonic()
        try:
            while count is None or writer.count < count:
                elapsed = time.monotonic() - start
                if duration is not None and elapsed >= duration:
                    break
                wait = 0.5 if duration is None else min(0.5, duration - elapsed)
                select.select([listening], [], [], wait)
                received = time.monotonic() - start
                for notify in listening.received():
                    record = recorder.feed(notify.channel, notify.payload, received)
                    if record is not None:
                        writer.write(record)
                        if writer.count == count:
                            break  # what arrived after the last one asked for is left out
                dropped = recorder.expire(received)
                if dropped:
                    self.stderr.write(
                        f"Dropped {events(dropped)} whose chunks did not all arrive within"
                        f" {recorder.timeout:g} s"
                    )
                counter.show(writer.count)
            stopped = "--duration" if count is None or writer.count < count else "--count"
        except KeyboardInterrupt:
            stopped = "Ctrl-C"
        except psycopg2.Error as exc:
            counter.end()
            raise CommandError(
                f"Lost the database connection ({exc}); {file} holds the"
                f" {events(writer.count)} captured until then."
            ) from None
        counter.end()
        if recorder.pending:
            self.stderr.write(
                f"Left out {events(recorder.pending)} whose chunks had not all arrived when the"
                " capture stopped"
            )
        self.stdout.write(
            f"Captured {events(writer.count)} in {time.monotonic() - start:.1f} s to {file}"
            f" (stopped by {stopped})."
        )


class RunningCount:
    """The number of events captured so far: redrawn in place on a terminal, and a plain
    line now and then otherwise, so that a log does not fill with counts."""

    def __init__(self, out):
        self.out = out
        self.tty = out.isatty()
        self._shown = 0
        self._at = time.monotonic()

    def show(self, count):
        now = time.monotonic()
        if count == self._shown or now - self._at < (REDRAW if self.tty else LOG_EVERY):
            return
        self._shown, self._at = count, now
        if self.tty:
            self.out.write(f"\rCaptured {events(count)}", ending="")
        else:
            self.out.write(f"Captured {events(count)} so far")
        self.out.flush()

    def end(self):
        """End the line the count is redrawn on, before anything else is written."""
        if self.tty and self._shown:
            self.out.write("")
