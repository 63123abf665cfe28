"""Capture files: the change stream written down, to be replayed with ``NOTIFY`` later.

``manage.py ddp_capture`` writes them and ``manage.py ddp_replay`` reads them; this module
is the format alone, with no Django, so the format can be read, written and checked
anywhere (a notebook, another tool, a test).

Format, version 1: UTF-8 text, one JSON object per line, each line ending with ``\\n``.
The first line is a header; every other line is one change event as it was received::

    {"format": "ddp-capture", "version": 1, "started": "2025-05-01T09:30:00.123456+00:00"}
    {"t": 0.0132, "channel": "ddp_bookstore.book", "payload": "{\\"v\\":1,...}", "tags": ["..."]}
    {"t": 2.5, "channel": "ddp_testapp.article", "payload": "...", "chunks": ["#...", ...],
     "tags": ["...", ...]}

``t`` is when the event was received, in seconds since ``started``; ``channel`` is the
``NOTIFY`` channel; ``payload`` is the whole event text (:mod:`ddp.bus.payload`, its own
format version in ``"v"``), chunks joined; ``chunks`` is there only for an event that
arrived chunked, and holds the original notifications, which replay re-sends as they were.
``tags`` holds the signature each notification carried (:mod:`ddp.bus.signing`), ``null``
for one that carried none: the key that signed them is not needed to read or replay the
file, which replay signs anew with its own project's key, but with it they show later which
notifications were genuine. Files written before signatures existed have no ``tags``.

Stability: a version-1 reader ignores keys it does not know, so version 1 may gain keys;
anything that changes the meaning of an existing key is a new version, which this reader
refuses rather than guesses at.
"""

import json
import math
from dataclasses import dataclass

from ddp.bus import payload
from ddp.bus.payload import Reassembler, decode
from ddp.protocol import loads

FORMAT = "ddp-capture"
VERSION = 1
#: PostgreSQL refuses a ``NOTIFY`` payload of this many bytes or more.
NOTIFY_LIMIT = 8000
#: The bytes a signature adds to a notification: the tag and its colon.
TAG_SIZE = payload.TAG_LENGTH + 1
#: PostgreSQL refuses longer channel names (``NAMEDATALEN`` - 1 bytes).
CHANNEL_LIMIT = 63
#: The JSON types of an event's keys, as a receiving server relies on them.
EVENT_TYPES = {"e": str, "c": str, "i": str, "f": (dict, type(None)), "s": list, "r": int}


class BadLine(ValueError):
    """A line of a capture file that cannot be replayed: its number, and why."""

    def __init__(self, line, reason):
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Record:
    """One recorded change event."""

    #: Seconds since the capture started.
    t: float
    channel: str
    #: The whole event text, chunks joined.
    payload: str
    #: The original notifications of an event that arrived chunked; empty otherwise.
    chunks: tuple = ()
    #: The line it was read from (0 when it was not read from a file).
    line: int = 0
    #: The tag each notification came with (None: it had none); empty if not recorded.
    tags: tuple = ()

    def notifications(self):
        """The payloads that re-create the event: its original chunks, or the payload."""
        return list(self.chunks) or [self.payload]


class Writer:
    """Writes a capture file to a binary stream: the header at once, then one record per
    line, each flushed, so a capture stopped at any moment loses at most the line it was
    writing, which a reader then reports as a truncated file."""

    def __init__(self, stream, started):
        self.stream = stream
        #: Records written so far.
        self.count = 0
        self._line({"format": FORMAT, "version": VERSION, "started": started.isoformat()})

    def write(self, record):
        line = {"t": round(record.t, 6), "channel": record.channel, "payload": record.payload}
        if record.chunks:
            line["chunks"] = list(record.chunks)
        if record.tags:
            line["tags"] = list(record.tags)
        self._line(line)
        self.count += 1

    def _line(self, data):
        self.stream.write(json.dumps(data).encode() + b"\n")
        self.stream.flush()


class Recorder:
    """Turns notifications into records as they arrive.

    A chunked event becomes one record when its last chunk arrives, joined by the same
    :class:`~ddp.bus.payload.Reassembler` the servers use, with its original chunks kept
    so that replay sends exactly what the writer sent.
    """

    def __init__(self, timeout=30.0):
        self.timeout = timeout
        self._joiner = Reassembler(timeout)
        self._chunks = {}  # event id -> (first seen, [(chunk, tag) in arrival order])

    @property
    def pending(self):
        """Chunked events begun but not complete."""
        return len(self._chunks)

    def feed(self, channel, notification, t):
        """The record that ``notification``, received at ``t``, completes; None while
        incomplete. Its tag is kept, not checked: a capture records forgeries too."""
        tag, text = payload.untag(notification)
        if not text.startswith("#"):
            return Record(t, channel, text, tags=(tag,))
        event_id = text[1:].split(":", 1)[0]
        _, chunks = self._chunks.setdefault(event_id, (t, []))
        chunks.append((text, tag))
        try:
            whole = self._joiner.feed(text, t)
        except (ValueError, KeyError):
            # A chunk whose header does not parse: kept as it came, so that replay names
            # its line instead of the capture losing it without a trace.
            chunks.remove((text, tag))
            if not chunks:
                del self._chunks[event_id]
            return Record(t, channel, text, tags=(tag,))
        if whole is None:
            return None
        del self._chunks[event_id]
        texts, tags = zip(*chunks, strict=True)
        return Record(t, channel, whole, texts, tags=tags)

    def expire(self, t):
        """Forget chunked events incomplete for longer than the timeout; return how many."""
        self._joiner.expire(t)
        stale = [key for key, (first, _) in self._chunks.items() if t - first > self.timeout]
        for key in stale:
            del self._chunks[key]
        return len(stale)


def read(stream):
    """Yield a :class:`Record`, or the :class:`BadLine` saying why there is none, for each
    line of a capture file (a binary stream) after its header.

    Raises :class:`BadLine` when the header is missing, truncated or of another format or
    version: then no line of the file can be trusted.
    """
    lines = enumerate(stream, start=1)
    first = next(lines, None)
    if first is None:
        raise BadLine(1, f"empty file: not a {FORMAT} file")
    _check_header(*first)
    held = None
    # One line behind, to know which is the last: only the last can be cut short.
    for item in lines:
        if held is not None:
            yield _record(*held, last=False)
        held = item
    if held is not None:
        yield _record(*held, last=True)


def _check_header(number, raw):
    if not raw.endswith(b"\n"):
        raise BadLine(number, "truncated file: it ends inside its header")
    try:
        header = loads(raw.decode())
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BadLine(
            number,
            f"not a {FORMAT} file: its first line must be a header like"
            f' {{"format": "{FORMAT}", "version": {VERSION}, ...}}',
        )
    version = header.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise BadLine(
            number,
            f"{FORMAT} format version {version!r} is not supported (this reads version {VERSION})",
        )


def _record(number, raw, last):
    if not raw.endswith(b"\n"):
        return BadLine(number, "truncated file: it ends in the middle of this line")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return BadLine(number, "not UTF-8 text")
    try:
        data = loads(text)
    except ValueError as exc:
        if last:
            return BadLine(number, f"truncated file: the last line is not complete JSON ({exc})")
        return BadLine(number, f"not valid JSON ({exc})")
    try:
        return _validated(data, number)
    except ValueError as exc:
        return BadLine(number, str(exc))


def _validated(data, number):
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    t, channel, text = _seconds(data.get("t")), data.get("channel"), data.get("payload")
    if t is None:
        raise ValueError('"t" must be a number of seconds, 0 or more')
    if not isinstance(channel, str) or not channel:
        raise ValueError('"channel" must be a non-empty string')
    if len(channel.encode()) > CHANNEL_LIMIT:
        raise ValueError(f'"channel" is longer than PostgreSQL\'s {CHANNEL_LIMIT} bytes')
    if not isinstance(text, str):
        raise ValueError('"payload" must be a string')
    _check_event(text)
    chunks = data.get("chunks")
    if chunks is None:
        size = len(text.encode())
        if size + TAG_SIZE >= NOTIFY_LIMIT:
            raise ValueError(
                f"the payload is {size} bytes, over PostgreSQL's limit of {NOTIFY_LIMIT}"
                ' once signed, and has no "chunks"'
            )
        chunks = ()
    else:
        _check_chunks(chunks, text)
    tags = data.get("tags", [])
    if not (
        isinstance(tags, list)
        and len(tags) in (0, len(chunks) or 1)
        and all(tag is None or isinstance(tag, str) for tag in tags)
    ):
        raise ValueError('"tags" must be a list of one tag (a string or null) per notification')
    return Record(t, channel, text, tuple(chunks), number, tuple(tags))


def _seconds(value):
    """``value`` as a float of 0 or more, else None (JSON's numbers go beyond floats')."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if 0 <= seconds < math.inf else None


def _check_event(text):
    """Refuse what a receiving server would misread: other versions, and wrong types."""
    try:
        data = loads(text)
    except ValueError as exc:
        raise ValueError(f"the payload is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("the payload is not a change event (not a JSON object)")
    if "v" not in data:
        raise ValueError('the payload carries no version ("v")')
    version = data["v"]
    if isinstance(version, bool) or version != payload.VERSION:
        raise ValueError(
            f"unknown payload version {version!r} (this replays version {payload.VERSION})"
        )
    missing = [key for key in EVENT_TYPES if key not in data]
    if missing:
        raise ValueError(f"the payload is not a change event: it has no {', '.join(missing)}")
    wrong = [
        key
        for key, kind in EVENT_TYPES.items()
        if isinstance(data[key], bool) or not isinstance(data[key], kind)
    ]
    if "s" not in wrong and not all(isinstance(key, str) for key in data["s"]):
        wrong.append("s")
    if wrong:
        raise ValueError(f"the payload is not a change event: wrong type of {', '.join(wrong)}")
    try:
        decode(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the payload is not a change event ({exc})") from None


def _check_chunks(chunks, text):
    if not (
        isinstance(chunks, list)
        and chunks
        and all(isinstance(chunk, str) and chunk.startswith("#") for chunk in chunks)
    ):
        raise ValueError('"chunks" must be a list of chunk payloads ("#<id>:<n>:<total>:<part>")')
    if any(len(chunk.encode()) + TAG_SIZE >= NOTIFY_LIMIT for chunk in chunks):
        raise ValueError(f"a chunk is over PostgreSQL's limit of {NOTIFY_LIMIT} bytes once signed")
    joiner = Reassembler()
    try:
        joined = [joiner.feed(chunk, 0) for chunk in chunks][-1]
    except (ValueError, KeyError):
        joined = None
    if joined != text:
        raise ValueError('"chunks" do not join into "payload"')
