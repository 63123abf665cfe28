"""A sans-I/O decoder of ``pgoutput``, PostgreSQL's built-in logical replication output.

A replication slot created with the ``pgoutput`` plugin turns the WAL into one binary message
per event of each committed transaction that touches a table of the chosen publications:
``Begin``, a ``Relation`` describing a table before its first change in the session (and
again after its schema changes), then ``Insert``, ``Update``, ``Delete`` and ``Truncate``,
then ``Commit``. This is what PostgreSQL's own subscribers read, so it needs no extension
on the server; the format is "Logical Replication Message Formats" in PostgreSQL's
documentation.

:class:`Decoder` turns the bytes of one message into one frozen value and keeps the one
piece of state the format needs: the relations described so far, so that a change can name
its table and columns. Row values stay what PostgreSQL sent: text (``str``) in the type's
output format, with the column's type oid in its :class:`Column`; ``None`` for NULL; and
:data:`UNCHANGED_TOAST` for a large (TOASTed) value an UPDATE did not touch, which
PostgreSQL does not send again and which is not NULL. Converting types is the consumer's
job (it reads rows back with the ORM).

Protocol version 1 is complete. Version 2 adds streamed in-progress transactions
(``StreamStart`` ... ``StreamStop``, then ``StreamCommit`` or ``StreamAbort``), whose
changes carry their transaction id; they are decoded when the decoder is made for version 2.

Any malformed message raises :class:`DecodeError` naming the message and what was wrong;
any other exception is a bug here.
"""

import enum
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

#: PostgreSQL's timestamps count microseconds from this instant.
POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


class DecodeError(ValueError):
    """A message that is not valid ``pgoutput`` for this decoder's protocol version."""


class Unchanged(enum.Enum):
    TOAST = "u"


#: The value of a TOASTed column an UPDATE did not change: PostgreSQL leaves it out of the
#: new row (and of an old row) and sends this marker instead. It is not NULL.
UNCHANGED_TOAST = Unchanged.TOAST


class ReplicaIdentity(enum.Enum):
    """Which old values PostgreSQL logs for an UPDATE or DELETE (``ALTER TABLE ...
    REPLICA IDENTITY``)."""

    #: The primary key's columns (none when the table has no primary key).
    DEFAULT = "d"
    #: Nothing: a DELETE cannot say which row went.
    NOTHING = "n"
    #: The whole old row.
    FULL = "f"
    #: The columns of a chosen unique index.
    INDEX = "i"


class Old(enum.Enum):
    """What the old row of an ``Update`` or ``Delete`` holds."""

    #: Only the replica identity's columns are set; the others are ``None``.
    KEY = "K"
    #: Every column (``REPLICA IDENTITY FULL``); unchanged TOASTed ones are
    #: :data:`UNCHANGED_TOAST`.
    ROW = "O"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    #: The type's modifier (``varchar(20)``'s length...), -1 when it has none.
    type_modifier: int
    #: Whether the column is part of the replica identity (the primary key by default).
    is_key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    """A table's description, sent before its first change and again when it changes."""

    oid: int
    #: The schema's name; empty for ``pg_catalog``.
    namespace: str
    name: str
    replica_identity: ReplicaIdentity
    columns: tuple[Column, ...]
    #: The streamed transaction that sent it (protocol 2), else ``None``.
    xid: int | None = None

    def named(self, values):
        """``{column name: value}`` for a row of this relation (a change's ``new`` or ``old``)."""
        return {column.name: value for column, value in zip(self.columns, values, strict=True)}


@dataclass(frozen=True, slots=True)
class Begin:
    #: The position of the transaction's commit record.
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    #: The position of the commit record.
    commit_lsn: int
    #: The position just after it: what a consumer confirms once the transaction is handled,
    #: so that the slot does not send it again.
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    """The replication origin the transaction came from, when it was replicated here."""

    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Type:
    """A non-built-in column type's name, sent before a relation that uses it."""

    oid: int
    namespace: str
    name: str
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Insert:
    relation: Relation
    new: tuple
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Update:
    relation: Relation
    new: tuple
    #: The old key or row (see :class:`Old`), sent when the replica identity's columns
    #: changed, or always with ``REPLICA IDENTITY FULL``; else ``None``.
    old: tuple | None = None
    old_kind: Old | None = None
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    relation: Relation
    old: tuple
    old_kind: Old
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Truncate:
    relations: tuple[Relation, ...]
    cascade: bool
    restart_identity: bool
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A ``pg_logical_emit_message()`` (only sent when the ``messages`` option is on)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class StreamStart:
    xid: int
    first_segment: bool


@dataclass(frozen=True, slots=True)
class StreamStop:
    pass


@dataclass(frozen=True, slots=True)
class StreamCommit:
    xid: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True, slots=True)
class StreamAbort:
    xid: int
    subxid: int


_TRUNCATE_CASCADE = 1
_TRUNCATE_RESTART_IDENTITY = 2


class Decoder:
    """Decodes one connection's (or one slot read's) ``pgoutput`` messages, in order.

    ``relations`` maps each relation oid to its latest :class:`Relation`, and
    ``transaction`` is the :class:`Begin` of the transaction being decoded until its
    :class:`Commit`. A decoder belongs to one stream: a new connection sends its Relation
    messages again.
    """

    def __init__(self, protocol_version=1):
        if protocol_version not in (1, 2):
            raise ValueError(f"pgoutput protocol version {protocol_version!r} is not supported")
        self.protocol_version = protocol_version
        self.relations = {}
        self.transaction = None
        # Inside StreamStart ... StreamStop (protocol 2), changes carry their transaction id.
        self._in_stream = False

    def decode(self, data):
        """Return the message that ``data`` (one message's bytes) holds.

        :raises DecodeError: the message is empty, truncated, longer than its fields, of an
            unknown kind, out of its place (a change outside a transaction...), names a
            relation that was never described, or holds a field value the format does not
            allow. The decoder's state is then as it was before.
        """
        if not data:
            raise DecodeError("An empty pgoutput message")
        kind = chr(data[0])
        name, method = self._KINDS.get(kind, (None, None))
        if method is None or (name.startswith("Stream") and self.protocol_version < 2):
            raise DecodeError(f"Unknown pgoutput message type {kind!r}")
        reader = _Reader(data, name)
        self._check_place(kind, reader)
        message = method(self, reader)
        reader.finish()
        if isinstance(message, Begin):
            self.transaction = message
        elif isinstance(message, Commit):
            self.transaction = None
        elif isinstance(message, Relation):
            self.relations[message.oid] = message
        elif isinstance(message, (StreamStart, StreamStop)):
            self._in_stream = isinstance(message, StreamStart)
        return message

    def _check_place(self, kind, reader):
        """Refuse a message where the format never puts it."""
        if kind == "E":
            if not self._in_stream:
                raise reader.error("not inside a stream")
        elif kind in "BCScA":
            if self._in_stream:
                raise reader.error("inside a stream (StreamStart without StreamStop)")
            if kind == "C":
                if self.transaction is None:
                    raise reader.error("no transaction to commit")
            elif self.transaction is not None:
                raise reader.error("the transaction before has no Commit")
        elif kind != "M" and not self._in_transaction():
            raise reader.error("outside a transaction")

    def _in_transaction(self):
        return self._in_stream or self.transaction is not None

    def _begin(self, reader):
        return Begin(reader.uint64(), reader.timestamp(), reader.uint32())

    def _commit(self, reader):
        reader.int8()  # Flags: none defined.
        return Commit(reader.uint64(), reader.uint64(), reader.timestamp())

    def _origin(self, reader):
        return Origin(reader.uint64(), reader.string())

    def _relation(self, reader):
        xid = self._xid(reader)
        oid, namespace, name = reader.uint32(), reader.string(), reader.string()
        identity = reader.byte()
        try:
            replica_identity = ReplicaIdentity(identity)
        except ValueError:
            raise reader.error(f"unknown replica identity {identity!r}") from None
        columns = []
        for _ in range(reader.count16()):
            flags = reader.int8()
            if flags not in (0, 1):
                raise reader.error(f"unknown column flags {flags}")
            column_name = reader.string()
            columns.append(Column(column_name, reader.uint32(), reader.int32(), flags == 1))
        return Relation(oid, namespace, name, replica_identity, tuple(columns), xid)

    def _type(self, reader):
        xid = self._xid(reader)
        return Type(reader.uint32(), reader.string(), reader.string(), xid)

    def _insert(self, reader):
        xid = self._xid(reader)
        relation = self._known_relation(reader, reader.uint32())
        reader.expect("N")
        return Insert(relation, self._tuple(reader, relation), xid)

    def _update(self, reader):
        xid = self._xid(reader)
        relation = self._known_relation(reader, reader.uint32())
        old = old_kind = None
        kind = reader.byte()
        if kind in ("K", "O"):
            old_kind = Old(kind)
            old = self._tuple(reader, relation)
            kind = reader.byte()
        if kind != "N":
            raise reader.error(f"expected 'K', 'O' or 'N', found {kind!r}")
        return Update(relation, self._tuple(reader, relation), old, old_kind, xid)

    def _delete(self, reader):
        xid = self._xid(reader)
        relation = self._known_relation(reader, reader.uint32())
        kind = reader.byte()
        if kind not in ("K", "O"):
            raise reader.error(f"expected 'K' or 'O', found {kind!r}")
        return Delete(relation, self._tuple(reader, relation), Old(kind), xid)

    def _truncate(self, reader):
        xid = self._xid(reader)
        count = reader.int32()
        if count < 0:
            raise reader.error(f"negative relation count {count}")
        options = reader.int8()
        if options & ~(_TRUNCATE_CASCADE | _TRUNCATE_RESTART_IDENTITY):
            raise reader.error(f"unknown options {options}")
        relations = tuple(self._known_relation(reader, reader.uint32()) for _ in range(count))
        return Truncate(
            relations,
            bool(options & _TRUNCATE_CASCADE),
            bool(options & _TRUNCATE_RESTART_IDENTITY),
            xid,
        )

    def _message(self, reader):
        xid = self._xid(reader)
        flags = reader.int8()
        if flags not in (0, 1):
            raise reader.error(f"unknown flags {flags}")
        if flags == 1 and not self._in_transaction():
            raise reader.error("a transactional message outside a transaction")
        lsn, prefix = reader.uint64(), reader.string()
        length = reader.int32()
        if length < 0:
            raise reader.error(f"negative content length {length}")
        return Message(flags == 1, lsn, prefix, reader.take(length), xid)

    def _stream_start(self, reader):
        xid = reader.uint32()
        first = reader.int8()
        if first not in (0, 1):
            raise reader.error(f"unknown first-segment flag {first}")
        return StreamStart(xid, first == 1)

    def _stream_stop(self, reader):
        return StreamStop()

    def _stream_commit(self, reader):
        xid = reader.uint32()
        reader.int8()  # Flags: none defined.
        return StreamCommit(xid, reader.uint64(), reader.uint64(), reader.timestamp())

    def _stream_abort(self, reader):
        return StreamAbort(reader.uint32(), reader.uint32())

    _KINDS = {
        "B": ("Begin", _begin),
        "C": ("Commit", _commit),
        "O": ("Origin", _origin),
        "R": ("Relation", _relation),
        "Y": ("Type", _type),
        "I": ("Insert", _insert),
        "U": ("Update", _update),
        "D": ("Delete", _delete),
        "T": ("Truncate", _truncate),
        "M": ("Message", _message),
        "S": ("StreamStart", _stream_start),
        "E": ("StreamStop", _stream_stop),
        "c": ("StreamCommit", _stream_commit),
        "A": ("StreamAbort", _stream_abort),
    }

    def _xid(self, reader):
        """Inside a stream, a change starts with its transaction id."""
        return reader.uint32() if self._in_stream else None

    def _known_relation(self, reader, oid):
        try:
            return self.relations[oid]
        except KeyError:
            raise reader.error(f"relation {oid} has not been described") from None

    def _tuple(self, reader, relation):
        count = reader.count16()
        if count != len(relation.columns):
            raise reader.error(
                f"{count} values for the {len(relation.columns)} columns of "
                f"{relation.namespace}.{relation.name}"
            )
        values = []
        for _ in range(count):
            kind = reader.byte()
            if kind == "t":
                length = reader.int32()
                if length < 0:
                    raise reader.error(f"negative value length {length}")
                values.append(reader.text(length))
            elif kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED_TOAST)
            else:
                # 'b' (binary values) only comes when asked for, and this decoder never asks.
                raise reader.error(f"unknown tuple value kind {kind!r}")
        return tuple(values)


_INT8 = struct.Struct("!b")
_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")
_UINT32 = struct.Struct("!I")
_INT64 = struct.Struct("!q")
_UINT64 = struct.Struct("!Q")


class _Reader:
    """Reads one message's fields in order, each read checked against its length."""

    def __init__(self, data, name):
        self.data = bytes(data)
        self.name = name
        self.offset = 1

    def error(self, problem):
        return DecodeError(f"{self.name} message: {problem}")

    def _unpack(self, layout, what):
        end = self.offset + layout.size
        if end > len(self.data):
            raise self.error(
                f"truncated: {what} needs {layout.size} bytes at offset {self.offset}, "
                f"the message has {len(self.data)}"
            )
        (value,) = layout.unpack_from(self.data, self.offset)
        self.offset = end
        return value

    def int8(self):
        return self._unpack(_INT8, "an Int8")

    def int32(self):
        return self._unpack(_INT32, "an Int32")

    def uint32(self):
        return self._unpack(_UINT32, "an Int32")

    def uint64(self):
        return self._unpack(_UINT64, "an Int64")

    def count16(self):
        count = self._unpack(_INT16, "an Int16")
        if count < 0:
            raise self.error(f"negative column count {count}")
        return count

    def timestamp(self):
        microseconds = self._unpack(_INT64, "an Int64 timestamp")
        try:
            return POSTGRES_EPOCH + timedelta(microseconds=microseconds)
        except OverflowError:
            raise self.error(f"timestamp {microseconds} is out of range") from None

    def byte(self):
        return chr(self.take(1)[0])

    def expect(self, kind):
        found = self.byte()
        if found != kind:
            raise self.error(f"expected {kind!r}, found {found!r}")

    def take(self, length):
        end = self.offset + length
        if end > len(self.data):
            raise self.error(
                f"truncated: {length} bytes needed at offset {self.offset}, "
                f"the message has {len(self.data)}"
            )
        value = self.data[self.offset : end]
        self.offset = end
        return value

    def text(self, length):
        return self._utf8(self.take(length))

    def string(self):
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise self.error(f"truncated: a string at offset {self.offset} has no terminating NUL")
        value = self._utf8(self.data[self.offset : end])
        self.offset = end + 1
        return value

    def _utf8(self, raw):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"text that is not UTF-8 at offset {self.offset}: {exc}") from None

    def finish(self):
        if self.offset != len(self.data):
            raise self.error(
                f"extra bytes after the last field: {len(self.data) - self.offset} "
                f"from offset {self.offset}"
            )


def parse_lsn(text):
    """The integer of a WAL position written as PostgreSQL does (``"16/B374D848"``)."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn):
    """A WAL position as PostgreSQL writes it."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
