"""What database capture needs of PostgreSQL, and the publication and slot it reads through.

``DDP["CAPTURE"]`` chooses where changes come from: ``"signals"`` (Django's model signals
in the writing process), ``"database"`` (PostgreSQL's logical replication stream, which sees
every write whatever made it), or ``"auto"``, database capture where the database allows it.
It allows it when:

- the server is PostgreSQL 13 or later (``max_slot_wal_keep_size`` came in 13);
- ``wal_level`` is ``logical`` and a WAL sender is configured (``max_wal_senders``);
- the role may replicate (the REPLICATION attribute, superuser, or ``rds_replication``);
- it may create the publication (``CREATE`` on the database) and include the published
  tables, which ``FOR TABLE`` requires it to own;
- a replication slot is free for it, or its own slot already exists;
- every published table that exists can tell which row a DELETE removed: it has a primary
  key, and a REPLICA IDENTITY that includes it.

Tables that do not exist yet are left out of the judgement: ``migrate`` runs the database
system checks before it creates them.

One publication and one logical slot (plugin ``pgoutput``) per database, both named
``ddp_<database name>``: the publication covers exactly the published models' tables (with
their parents' under multi-table inheritance and their many-to-many tables), and the slot
keeps the WAL from the reader's confirmed position on. The many-to-many tables get
``REPLICA IDENTITY FULL``, so that a deleted row names both sides. The functions take a
DB-API cursor (Django's or psycopg2's) on that database, in autocommit mode for
:func:`ensure_slot`.
"""

import hashlib
import re
from collections import namedtuple

from ddp.api import API
from ddp.bus import producer
from ddp.conf import ddp_settings
from ddp.replication.consumer import Tables

MODES = ("auto", "database", "signals")
#: ``server_version_num`` of the oldest PostgreSQL database capture supports.
MIN_SERVER_VERSION = 130000
#: PostgreSQL's limit on identifiers, and so on slot and publication names (NAMEDATALEN - 1).
MAX_NAME = 63


class SetupError(Exception):
    """The database cannot carry database capture as it is; the message says what to change."""


#: One thing that keeps the database from database capture: what is wrong, and what to do.
Obstacle = namedtuple("Obstacle", "problem fix")


def replication_name(dbname):
    """``ddp_<dbname>``, made a valid slot name (lower-case letters, digits, ``_``).

    A name that had to change (other characters, or too long) gets a hash of the original,
    so two databases never share a slot.
    """
    name = "ddp_" + re.sub(r"[^a-z0-9_]", "_", dbname.lower())
    if name == f"ddp_{dbname}" and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(dbname.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}_{digest}"


def published_tables(registry=API):
    """The tables whose rows make the documents of ``registry``'s collections, sorted.

    A model's own table, its parents' (multi-table inheritance keeps inherited fields
    there) and its many-to-many tables (their rows are the ``<name>_ids`` lists).
    """
    return Tables(registry).names()


def through_tables(registry=API):
    """The many-to-many tables among :func:`published_tables`, sorted."""
    return sorted(Tables(registry).through)


def capture_mode(connection, registry=API):
    """``(mode, reason)``: where changes come from on ``connection`` (Django's), and why.

    ``mode`` is ``"database"`` or ``"signals"``. A ``DDP["CAPTURE"]`` of ``"database"`` that
    the database cannot carry stays ``"database"`` with the obstacles as its reason: the
    ``ddp.E013`` system check stops the server before it runs so. ``"auto"`` that it cannot
    carry is ``"signals"``, and the reason says what to change.
    """
    setting = ddp_settings.CAPTURE
    if setting == "signals":
        return "signals", 'DDP["CAPTURE"] is "signals"'
    if connection.vendor != "postgresql":
        return "signals", f"database {connection.alias!r} is not PostgreSQL"
    with connection.cursor() as cursor:
        found = obstacles(cursor, published_tables(registry))
        user = current_user(cursor)
    if not found:
        return "database", (
            f'DDP["CAPTURE"] is "{setting}", wal_level is logical, and role {user} may '
            "replicate and publish the published tables"
        )
    problems = "; ".join(obstacle.problem for obstacle in found)
    if setting == "database":
        return "database", f'DDP["CAPTURE"] is "database", but {problems}'
    fixes = " ".join(obstacle.fix for obstacle in found)
    return "signals", f"database capture is not possible: {problems}; what to change: {fixes}"


def current_user(cursor):
    cursor.execute("SELECT current_user")
    return cursor.fetchone()[0]


def obstacles(cursor, tables):
    """Every :class:`Obstacle` to database capture of ``tables`` on ``cursor``'s database."""
    cursor.execute(
        "SELECT current_setting('server_version_num')::int, current_setting('server_version'),"
        " current_setting('wal_level'), current_setting('max_wal_senders')::int,"
        " current_setting('max_replication_slots')::int, current_database(), current_user,"
        " r.rolsuper, r.rolreplication OR r.rolsuper OR EXISTS ("
        "  SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_replication'"
        "  AND pg_has_role(current_user, g.oid, 'MEMBER')),"
        " has_database_privilege(current_database(), 'CREATE')"
        " FROM pg_roles r WHERE r.rolname = current_user"
    )
    (
        version_num,
        version,
        wal_level,
        wal_senders,
        max_slots,
        dbname,
        user,
        superuser,
        replicates,
        may_create,
    ) = cursor.fetchone()
    if version_num < MIN_SERVER_VERSION:
        # Older servers lack what the rest asks about (max_slot_wal_keep_size, pgoutput's
        # options): nothing else is worth saying.
        return [Obstacle(f"PostgreSQL is {version}", "Upgrade to PostgreSQL 13 or later.")]
    found = []
    if wal_level != "logical":
        found.append(
            Obstacle(
                f"wal_level is {wal_level}, not logical",
                "Set wal_level = logical and restart PostgreSQL (AWS RDS and Aurora: "
                "rds.logical_replication = 1; Google Cloud SQL: cloudsql.logical_decoding "
                "= on; Azure: wal_level = logical; Neon: enable logical replication).",
            )
        )
    if wal_senders < 1:
        found.append(
            Obstacle(
                "max_wal_senders is 0",
                "Set max_wal_senders = 10 (or more) and restart PostgreSQL.",
            )
        )
    if not replicates:
        found.append(
            Obstacle(
                f"role {user} may not replicate",
                f"As a superuser: ALTER ROLE {quote_ident(user)} REPLICATION; "
                f"(AWS RDS: GRANT rds_replication TO {quote_ident(user)};)",
            )
        )
    name = replication_name(dbname)
    found += _slot_obstacles(cursor, name, dbname, max_slots)
    found += _publication_obstacles(cursor, name, user, superuser, may_create, tables)
    found += [Obstacle(problem, fix) for problem, fix in table_problems(cursor, tables)]
    return found


def _slot_obstacles(cursor, name, dbname, max_slots):
    cursor.execute(
        "SELECT count(*), count(*) FILTER (WHERE slot_name = %s),"
        " bool_or(slot_name = %s AND (slot_type <> 'logical' OR plugin <> 'pgoutput'"
        "  OR database <> %s))"
        " FROM pg_replication_slots",
        [name, name, dbname],
    )
    taken, ours, foreign = cursor.fetchone()
    if foreign:
        return [
            Obstacle(
                f"replication slot {name} exists, but not as pgoutput's on {dbname}",
                f"Drop it: SELECT pg_drop_replication_slot('{name}');",
            )
        ]
    if not ours and taken >= max_slots:
        return [
            Obstacle(
                f"all {max_slots} replication slots are taken",
                "Raise max_replication_slots and restart PostgreSQL, or drop a slot nobody "
                "reads (SELECT pg_drop_replication_slot(name)).",
            )
        ]
    return []


def _publication_obstacles(cursor, name, user, superuser, may_create, tables):
    cursor.execute(
        "SELECT puballtables, pg_has_role(pubowner, 'USAGE') FROM pg_publication"
        " WHERE pubname = %s",
        [name],
    )
    row = cursor.fetchone()
    found = []
    if row is None and not may_create:
        found.append(
            Obstacle(
                f"role {user} may not create the publication {name}",
                f"GRANT CREATE ON DATABASE {quote_ident(current_database(cursor))} TO "
                f"{quote_ident(user)};",
            )
        )
    elif row is not None and row[0]:
        found.append(
            Obstacle(
                f"publication {name} is FOR ALL TABLES",
                f"Drop it (DROP PUBLICATION {name};): DDP makes its own.",
            )
        )
    elif row is not None and not row[1]:
        found.append(
            Obstacle(
                f"publication {name} belongs to another role",
                f"ALTER PUBLICATION {name} OWNER TO {quote_ident(user)};",
            )
        )
    if not superuser:
        cursor.execute(
            "SELECT c.oid::regclass::text FROM pg_class c"
            " WHERE c.oid = ANY(ARRAY(SELECT to_regclass(t) FROM unnest(%s::text[]) t))"
            " AND NOT pg_has_role(c.relowner, 'USAGE') ORDER BY 1",
            [[quote_ident(table) for table in tables]],
        )
        foreign = [row[0] for row in cursor.fetchall()]
        if foreign:
            found.append(
                Obstacle(
                    f"role {user} does not own {', '.join(foreign)}, which a publication "
                    "FOR TABLE needs",
                    "Run ddpserver as the tables' owner, or: "
                    + " ".join(f"ALTER TABLE {t} OWNER TO {quote_ident(user)};" for t in foreign),
                )
            )
    return found


def table_problems(cursor, tables):
    """``[(problem, fix)]`` of the existing ``tables`` whose changes capture could not use.

    A deleted row reaches the stream as its REPLICA IDENTITY: without the primary key in it
    nobody could tell which document to remove.
    """
    cursor.execute(
        "SELECT c.oid::regclass::text, c.relkind, c.relreplident,"
        " (SELECT p.conkey FROM pg_constraint p WHERE p.conrelid = c.oid AND p.contype = 'p'),"
        " (SELECT string_to_array(i.indkey::text, ' ')::int2[] FROM pg_index i"
        "  WHERE i.indrelid = c.oid AND i.indisreplident)"
        " FROM unnest(%s::text[]) t JOIN pg_class c ON c.oid = to_regclass(t) ORDER BY 1",
        [[quote_ident(table) for table in tables]],
    )
    problems = []
    for table, kind, identity, key, identity_columns in cursor.fetchall():
        if kind not in ("r", "p"):
            problems.append(
                (
                    f"{table} is not a table (a view?): PostgreSQL publishes tables only",
                    "Publish a model over a table, or set DDP['CAPTURE'] = 'signals'.",
                )
            )
        elif key is None:
            problems.append(
                (
                    f"{table} has no primary key: its rows could not be told apart",
                    f"Give {table} a primary key.",
                )
            )
        elif identity == "n" or (identity == "i" and not set(key) <= set(identity_columns)):
            problems.append(
                (
                    f"{table}'s REPLICA IDENTITY does not give a deleted row's primary key",
                    f"ALTER TABLE {table} REPLICA IDENTITY DEFAULT;",
                )
            )
    return problems


def current_database(cursor):
    cursor.execute("SELECT current_database()")
    return cursor.fetchone()[0]


def quote_ident(name):
    """``name`` as a PostgreSQL identifier; one already in double quotes stays as it is
    (Django's convention for a ``db_table`` that names a schema: ``'"s"."t"'``)."""
    if name.startswith('"') and name.endswith('"'):
        return name
    return '"' + name.replace('"', '""') + '"'


def _name(cursor, name):
    return name or replication_name(current_database(cursor))


def ensure_publication(cursor, tables, name=None, full_identity=()):
    """Make the publication ``name`` cover exactly ``tables``; True if anything changed.

    ``full_identity`` (among ``tables``) get ``REPLICA IDENTITY FULL``: the many-to-many
    tables (:func:`through_tables`), whose deleted rows must name both sides, not only
    their own key. Raises :class:`SetupError` when a table is missing or cannot be
    captured (see :func:`table_problems`), or the publication is FOR ALL TABLES.
    """
    name = _name(cursor, name)
    cursor.execute(
        "SELECT to_regclass(t)::text FROM unnest(%s::text[]) WITH ORDINALITY u(t, n) ORDER BY n",
        [[quote_ident(table) for table in tables]],
    )
    resolved = dict(zip(tables, (row[0] for row in cursor.fetchall()), strict=True))
    missing = sorted(table for table, regclass in resolved.items() if regclass is None)
    if missing:
        raise SetupError(f"Published tables do not exist: {', '.join(missing)} (run migrate).")
    problems = table_problems(cursor, tables)
    if problems:
        raise SetupError(" ".join(f"{problem}: {fix}" for problem, fix in problems))
    identity = _give_full_identity(cursor, [resolved[table] for table in full_identity])
    return _set_publication(cursor, name, set(resolved.values())) or identity


def _give_full_identity(cursor, tables):
    """``REPLICA IDENTITY FULL`` for those of ``tables`` without it; True if any lacked it."""
    cursor.execute(
        "SELECT c.oid::regclass::text FROM pg_class c"
        " WHERE c.oid = ANY(%s::regclass[]) AND c.relreplident <> 'f' ORDER BY 1",
        [list(tables)],
    )
    lacking = [row[0] for row in cursor.fetchall()]
    for table in lacking:
        cursor.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    return bool(lacking)


def _set_publication(cursor, name, wanted):
    """Create or alter the publication ``name`` to cover the ``regclass`` names ``wanted``."""
    cursor.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s", [name])
    row = cursor.fetchone()
    if row is None:
        for_tables = f" FOR TABLE {', '.join(sorted(wanted))}" if wanted else ""
        cursor.execute(f"CREATE PUBLICATION {quote_ident(name)}{for_tables}")
        return True
    if row[0]:
        raise SetupError(
            f"Publication {name} is FOR ALL TABLES: DROP PUBLICATION {name}; DDP makes its own."
        )
    current = set(publication_tables(cursor, name))
    if current == wanted:
        return False
    if wanted:
        cursor.execute(
            f"ALTER PUBLICATION {quote_ident(name)} SET TABLE {', '.join(sorted(wanted))}"
        )
    else:  # SET TABLE takes at least one
        cursor.execute(
            f"ALTER PUBLICATION {quote_ident(name)} DROP TABLE {', '.join(sorted(current))}"
        )
    return True


def publication_tables(cursor, name=None):
    """The tables the publication ``name`` covers, as ``regclass`` names, sorted; None
    when there is no such publication."""
    name = _name(cursor, name)
    cursor.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name])
    if cursor.fetchone() is None:
        return None
    cursor.execute(
        "SELECT c.oid::regclass::text FROM pg_publication p"
        " JOIN pg_publication_rel r ON r.prpubid = p.oid JOIN pg_class c ON c.oid = r.prrelid"
        " WHERE p.pubname = %s ORDER BY 1",
        [name],
    )
    return [row[0] for row in cursor.fetchall()]


def ensure_slot(cursor, name=None):
    """Create the logical slot ``name`` (plugin ``pgoutput``) if missing; True if created.

    PostgreSQL refuses this in a transaction that has written, and waits for the
    transactions running at that moment to end: call it in autocommit mode.
    """
    name = _name(cursor, name)
    cursor.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [name])
    if cursor.fetchone() is not None:
        return False
    cursor.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [name])
    producer.forget_slots()
    return True


def advisory_key(text):
    """A bigint advisory lock key of ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def prepare(cursor, tables, name=None):
    """Make the publication of ``tables`` (a :class:`Tables`) and the slot ``name`` if
    missing: what a reader reads through, made by a starting server before it serves, so
    that writers go quiet as soon as possible (``"auto"``: :func:`producer.reading_database`).

    Servers that start at once, and the reader, take turns (an advisory lock): the later
    ones find everything made. ``cursor`` in autocommit mode (:func:`ensure_slot`).
    """
    name = _name(cursor, name)
    key = advisory_key(f"ddp.replication.setup:{name}")
    cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        ensure_publication(cursor, tables.names(), name, full_identity=sorted(tables.through))
        ensure_slot(cursor, name)
    finally:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def drop(cursor, name=None):
    """Drop the slot and the publication ``name``; ``(slot dropped, publication dropped)``.

    Raises :class:`SetupError` when a reader still holds the slot: it would only create
    them again.
    """
    name = _name(cursor, name)
    cursor.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [name])
    row = cursor.fetchone()
    if row is not None and row[0] is not None:
        raise SetupError(
            f"Replication slot {name} is being read by process {row[0]}: stop the ddpservers "
            'or set DDP["CAPTURE"] = "signals" and restart them, then drop it.'
        )
    if row is not None:
        cursor.execute("SELECT pg_drop_replication_slot(%s)", [name])
        producer.forget_slots()
    cursor.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name])
    publication = cursor.fetchone() is not None
    if publication:
        cursor.execute(f"DROP PUBLICATION {quote_ident(name)}")
    return row is not None, publication


#: What :func:`slot_status` tells of a slot; ``reader`` is the application name and address
#: of the connection reading it (None when none does).
SlotStatus = namedtuple(
    "SlotStatus", "name active active_pid reader wal_status lag_bytes lag_seconds"
)


def slot_status(cursor, name=None):
    """The slot ``name``'s :class:`SlotStatus`, or None when there is none.

    ``lag_bytes`` is the WAL written since the position its reader confirmed: what the slot
    keeps from being recycled. ``lag_seconds`` is how far behind its reader is: PostgreSQL's
    own measure (``flush_lag``) while one reads, the time since it stopped reading when
    none does (PostgreSQL 17's ``inactive_since``), 0 with no lag, None when unknown.
    """
    name = _name(cursor, name)
    cursor.execute("SELECT current_setting('server_version_num')::int")
    since = "s.inactive_since" if cursor.fetchone()[0] >= 170000 else "NULL::timestamptz"
    cursor.execute(
        "SELECT s.active, s.active_pid,"
        " CASE WHEN r.pid IS NOT NULL THEN concat_ws(' from ', nullif(r.application_name, ''),"
        "  coalesce(host(r.client_addr), 'a local socket')) END,"
        " s.wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint,"
        " extract(epoch FROM CASE WHEN s.active THEN r.flush_lag"
        f"  ELSE clock_timestamp() - {since} END)::float8"
        " FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid"
        " WHERE s.slot_name = %s",
        [name],
    )
    row = cursor.fetchone()
    if row is None:
        return None
    active, pid, reader, wal_status, lag_bytes, lag_seconds = row
    if lag_bytes is not None and lag_bytes <= 0:
        lag_bytes, lag_seconds = 0, 0.0
    return SlotStatus(name, active, pid, reader, wal_status, lag_bytes, lag_seconds)
