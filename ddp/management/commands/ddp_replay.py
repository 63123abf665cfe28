"""``manage.py ddp_replay FILE``: re-send the events of a ``ddp_capture`` file with NOTIFY."""

import itertools
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection, transaction

from ddp.bus import signing
from ddp.bus.recording import BadLine, read

HELP = """\
Re-send the change events recorded by "manage.py ddp_capture" to the default database with
NOTIFY, each event in a transaction of its own (a chunked one as its original chunks), so
running ddpservers hand them to their clients as they did the originals. The whole file is
checked before the first event is sent: a bad line stops the replay, naming its line,
unless --skip-bad. A replayed event reaches only the subscriptions it was sent for: see
docs/recording.rst.
"""

#: Seconds between two redraws of the progress bar on a terminal.
REDRAW = 0.1
#: Width of the progress bar, in characters.
BAR = 30


def events(n):
    return f"{n} event" if n == 1 else f"{n} events"


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser):
        parser.add_argument("file", help="A capture file written by ddp_capture.")
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            metavar="X",
            help="1 (the default) keeps the recorded timing, 2 goes twice as fast, 0 sends"
            " without waiting.",
        )
        repeat = parser.add_mutually_exclusive_group()
        repeat.add_argument(
            "--loop", action="store_true", help="Play the file again and again, until Ctrl-C."
        )
        repeat.add_argument(
            "--times", type=int, default=1, metavar="N", help="Play the file N times."
        )
        parser.add_argument(
            "--filter-channel",
            action="append",
            default=[],
            dest="filter_channels",
            metavar="CHANNEL",
            help="Replay only the events of this channel (repeatable).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print each event that would be sent, once, at once, and send nothing.",
        )
        parser.add_argument(
            "--skip-bad",
            action="store_true",
            help="Warn about bad lines on stderr and replay the others.",
        )

    def handle(
        self, *args, file, speed, loop, times, filter_channels, dry_run, skip_bad, **options
    ):
        if speed < 0:
            raise CommandError("--speed must be 0 or more")
        if times < 1:
            raise CommandError("--times must be 1 or more")
        self.file = file
        self.wanted = set(filter_channels)
        total, bad = self._check(skip_bad)
        skipped = f"; skipped {bad} bad line{'s' * (bad != 1)}" if bad else ""
        if not total:
            self.stdout.write(f"Nothing to replay in {file}{skipped}.")
            return
        if dry_run:
            self._describe()
            self.stdout.write(f"Dry run: would send {events(total)} per pass{skipped}.")
            return
        passes = itertools.count(1) if loop else range(1, times + 1)
        started = time.monotonic()
        sent = notifications = 0
        ending = "."
        progress = None
        try:
            for number in passes:
                label = f"Pass {number}" if loop else f"Pass {number}/{times}"
                progress = Progress(self.stdout, total, label if loop or times > 1 else "Replay")
                for record in self._timed(self._records(), speed):
                    notifications += self._send(record)
                    sent += 1
                    progress.advance()
                progress.end()
        except KeyboardInterrupt:
            if progress is not None:
                progress.end()
            ending = ", then Ctrl-C."
        self.stdout.write(
            f"Replayed {events(sent)} ({notifications} notification"
            f"{'s' * (notifications != 1)}) from {file} in {time.monotonic() - started:.1f} s"
            f"{skipped}{ending}"
        )

    def _open(self):
        try:
            return open(self.file, "rb")
        except OSError as exc:
            raise CommandError(f"Cannot read {self.file}: {exc.strerror}") from None

    def _check(self, skip_bad):
        """Read the whole file before sending anything: a bad file then sends nothing, and
        the progress bar knows its length. Returns (events to replay, bad lines)."""
        total = bad = 0
        with self._open() as stream:
            try:
                for item in read(stream):
                    if not isinstance(item, BadLine):
                        total += self._wanted(item)
                    elif skip_bad:
                        bad += 1
                        self.stderr.write(f"{self.file}:{item.line}: {item.reason}; skipped")
                    else:
                        raise CommandError(
                            f"{self.file}:{item.line}: {item.reason} (--skip-bad replays the"
                            " other lines)"
                        )
            except BadLine as header:
                # A file not known to be in this format: no line of it can be trusted.
                raise CommandError(f"{self.file}:{header.line}: {header.reason}") from None
        return total, bad

    def _wanted(self, record):
        return not self.wanted or record.channel in self.wanted

    def _records(self):
        """The records to replay, read again for each pass; bad lines were reported."""
        with self._open() as stream:
            for item in read(stream):
                if not isinstance(item, BadLine) and self._wanted(item):
                    yield item

    def _timed(self, records, speed):
        """Yield each record when it is due: its delay after the pass's first event in the
        capture, divided by ``speed``. Due times are kept against the clock, so the time
        spent sending does not add up into drift."""
        origin = None
        for record in records:
            if speed:
                now = time.monotonic()
                if origin is None:
                    origin = (now, record.t)
                else:
                    delay = origin[0] + (record.t - origin[1]) / speed - now
                    if delay > 0:
                        time.sleep(delay)
            yield record

    def _send(self, record):
        """NOTIFY one event in its own transaction, so its chunks are delivered together.

        Signed anew with this project's ``SECRET_KEY``, whatever key signed the original:
        a capture taken on another machine replays here as well.
        """
        texts = record.notifications()
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                signing.notify(cursor, record.channel, texts)
        except DatabaseError as exc:
            raise CommandError(f"{self.file}:{record.line}: not sent: {exc}") from None
        return len(texts)

    def _describe(self):
        """What --dry-run shows: each event, as it would be sent, on a line of its own."""
        for record in self._records():
            chunks = f"{len(record.chunks)} chunks  " if record.chunks else ""
            self.stdout.write(
                f"line {record.line}  t={record.t:.3f}  {record.channel}  {chunks}{record.payload}"
            )


class Progress:
    """How far a pass has got: a bar redrawn in place on a terminal (at most every
    ``REDRAW`` s, so that drawing never slows a fast replay down), and otherwise a plain
    line at each tenth, which keeps a log short."""

    def __init__(self, out, total, label):
        self.out = out
        self.total = total
        self.label = label
        self.tty = out.isatty()
        self.done = 0
        self._drawn = 0.0
        self._on_line = False  # whether the cursor is at the end of a drawn bar
        self._every = max(1, total // 10)

    def advance(self):
        self.done += 1
        last = self.done == self.total
        if self.tty:
            now = time.monotonic()
            if last or now - self._drawn >= REDRAW:
                self._drawn = now
                filled = BAR * self.done // self.total
                self.out.write(
                    f"\r{self.label} [{'#' * filled}{'.' * (BAR - filled)}]"
                    f" {100 * self.done // self.total:3d}% {self.done}/{self.total}",
                    ending="",
                )
                self.out.flush()
                self._on_line = True
        elif last or self.done % self._every == 0:
            self.out.write(f"{self.label}: {self.done}/{events(self.total)}")

    def end(self):
        """End the bar's line, before anything else is written."""
        if self._on_line:
            self.out.write("")
            self._on_line = False
