"""System checks for what DDP cannot run without, reported before a server starts.

Registered with the ``ddp`` tag (``manage.py check --tag ddp``) when :mod:`ddp.apps` imports
this module. Settings are read from ``django.conf.settings`` rather than from open connections,
so that the checks open none and see ``override_settings`` in tests.
"""

import math

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import load_backend


def _is_postgresql(db):
    """Tell whether the database settings ``db`` use PostgreSQL, through any backend.

    PostGIS and wrappers around Django's backend report the vendor ``postgresql`` though
    their module paths differ, so the backend is asked rather than its name matched.
    """
    if not db.get("ENGINE"):
        return False
    try:
        return load_backend(db["ENGINE"]).DatabaseWrapper.vendor == "postgresql"
    except (ImportError, ImproperlyConfigured):
        return False


@register("ddp")
def check_database_engines(app_configs=None, **kwargs):
    """``ddp.E001``: every database must be PostgreSQL, whose NOTIFY carries the changes."""
    return [
        Error(
            f"Database {alias!r} uses {db.get('ENGINE')!r}: DDP needs PostgreSQL for "
            "LISTEN/NOTIFY.",
            hint="Set its ENGINE to 'django.db.backends.postgresql'.",
            id="ddp.E001",
        )
        for alias, db in settings.DATABASES.items()
        if not _is_postgresql(db)
    ]


@register("ddp")
def check_psycopg_version(app_configs=None, **kwargs):
    """``ddp.E002``: Django must drive PostgreSQL with psycopg2, which eventlet makes green.

    Django prefers psycopg 3 whenever it is importable, and psycopg 3 waits on its sockets
    in ways eventlet does not patch: one query would stall every client of the process.
    """
    if not any(_is_postgresql(db) for db in settings.DATABASES.values()):
        return []
    # Imported only once a PostgreSQL database is configured: it imports the driver.
    from django.db.backends.postgresql import psycopg_any

    if not psycopg_any.is_psycopg3:
        return []
    return [
        Error(
            "Django's PostgreSQL backend would use psycopg 3, which blocks eventlet's hub.",
            hint="pip uninstall psycopg psycopg-binary; DDP needs psycopg2 (psycopg2-binary).",
            id="ddp.E002",
        )
    ]


@register("ddp")
def check_published_models_on_default(app_configs=None, **kwargs):
    """``ddp.E003``: published models must be written to ``default``, where servers LISTEN.

    A router sending their writes elsewhere would make every change on them invisible to
    clients; better refused at start-up than silently dropped.
    """
    from django.db import DEFAULT_DB_ALIAS, router

    from ddp.api import API

    errors = []
    for collection in API.collections.values():
        alias = router.db_for_write(collection.model)
        if alias not in (None, DEFAULT_DB_ALIAS):
            errors.append(
                Error(
                    f"{collection.model._meta.label} (collection {collection.get_name()!r}) "
                    f"is written to database {alias!r}: DDP only sees changes on "
                    f"{DEFAULT_DB_ALIAS!r}.",
                    hint="Route writes of published models to the default database.",
                    id="ddp.E003",
                )
            )
    return errors


def _positive_int_or_none(name, what, hint, check_id):
    """The errors of setting ``DDP[name]``, which must be a whole number above 0 or None."""
    from ddp.conf import ddp_settings

    value = getattr(ddp_settings, name)
    if value is None or (type(value) is int and value > 0):
        return []
    message = f'DDP["{name}"] is {value!r}: it must be {what} above 0, or None.'
    return [Error(message, hint=hint, id=check_id)]


@register("ddp")
def check_gc_threshold(app_configs=None, **kwargs):
    """``ddp.E004``: ``DDP["GC_THRESHOLD"]`` is what ``gc.set_threshold`` takes, or None."""
    return _positive_int_or_none(
        "GC_THRESHOLD",
        "a whole number",
        "Leave it out for 50,000, or None to keep Python's own thresholds.",
        "ddp.E004",
    )


@register("ddp")
def check_max_subscription_params(app_configs=None, **kwargs):
    """``ddp.E005``: ``DDP["MAX_SUBSCRIPTION_PARAMS"]`` is a size in bytes, or None."""
    return _positive_int_or_none(
        "MAX_SUBSCRIPTION_PARAMS",
        "a number of bytes",
        "Leave it out for 8,192 bytes: every write's matching statement reads them.",
        "ddp.E005",
    )


def _networks_or_none(name, hint, check_id):
    """The errors of setting ``DDP[name]``: None, or a list of addresses and networks."""
    from ddp.addresses import networks
    from ddp.conf import ddp_settings

    value = getattr(ddp_settings, name)
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(e, str) for e in value):
        problem = "it must be a list of addresses or networks, as text, or None"
    else:
        try:
            networks(value)
            return []
        except ValueError as exc:
            problem = exc
    return [Error(f'DDP["{name}"] is {value!r}: {problem}.', hint=hint, id=check_id)]


@register("ddp")
def check_trusted_proxies(app_configs=None, **kwargs):
    """``ddp.E006``: ``DDP["TRUSTED_PROXIES"]`` lists reverse proxies, or is None."""
    return _networks_or_none(
        "TRUSTED_PROXIES",
        'Your proxies\' addresses ("10.0.0.7") or networks ("10.0.0.0/8"), or None.',
        "ddp.E006",
    )


@register("ddp")
def check_password_hashing_threads(app_configs=None, **kwargs):
    """``ddp.E007``: ``DDP["PASSWORD_HASHING_THREADS"]`` is a number of threads, or None."""
    return _positive_int_or_none(
        "PASSWORD_HASHING_THREADS",
        "a whole number",
        "Leave it out for one thread per CPU.",
        "ddp.E007",
    )


@register("ddp")
def check_metrics_allowed(app_configs=None, **kwargs):
    """``ddp.E010``: ``DDP["METRICS_ALLOWED"]`` lists who may read ``/metrics``, or is None."""
    return _networks_or_none(
        "METRICS_ALLOWED",
        'Addresses ("10.0.0.7", "::1") or networks ("10.0.0.0/8"); None lets anyone read.',
        "ddp.E010",
    )


@register("ddp")
def check_secret_key(app_configs=None, **kwargs):
    """``ddp.E008``: ``SECRET_KEY`` is set, since it signs every notification between
    servers (:mod:`ddp.bus.signing`); without it the listener could verify none."""
    try:
        key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django's answer to an empty one
        key = ""
    if key:
        return []
    return [
        Error(
            "SECRET_KEY is empty: DDP signs the changes it sends between servers with it.",
            hint="Set SECRET_KEY, the same in every server and process of the project.",
            id="ddp.E008",
        )
    ]


def _seconds(name, zero_allowed, hint, check_id):
    """The errors of setting ``DDP[name]``, which must be a number of seconds above 0
    (or 0 itself when ``zero_allowed``)."""
    from ddp.conf import ddp_settings

    value = getattr(ddp_settings, name)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and math.isfinite(value) and (value > 0 or (zero_allowed and value == 0)):
        return []
    what = "0 or more" if zero_allowed else "above 0"
    message = f'DDP["{name}"] is {value!r}: it must be a number of seconds, {what}.'
    return [Error(message, hint=hint, id=check_id)]


@register("ddp")
def check_registry_lock(app_configs=None, **kwargs):
    """``ddp.E009``: ``DDP["REGISTRY_LOCK_TIMEOUT"]`` bounds how long a write may wait
    for a new subscription (0 would be PostgreSQL's "no limit"), and
    ``DDP["REGISTRY_LOCK_WAIT"]`` how long a subscription tries to register."""
    return _seconds(
        "REGISTRY_LOCK_TIMEOUT",
        False,
        "Leave it out for 0.02: every write may wait that long behind a new subscription.",
        "ddp.E009",
    ) + _seconds("REGISTRY_LOCK_WAIT", True, "Leave it out for 5 seconds.", "ddp.E009")


@register("ddp")
def check_session_resumption(app_configs=None, **kwargs):
    """``ddp.E014``: ``DDP["DISCONNECT_GRACE_PERIOD"]`` is a number of seconds (0 turns
    resumption off) and ``DDP["MAX_MESSAGE_QUEUE_LENGTH"]`` a number of messages."""
    from ddp.conf import ddp_settings

    errors = _seconds(
        "DISCONNECT_GRACE_PERIOD",
        True,
        "Leave it out for Meteor's 15 seconds, or set 0 to turn session resumption off.",
        "ddp.E014",
    )
    value = ddp_settings.MAX_MESSAGE_QUEUE_LENGTH
    if not (type(value) is int and value >= 0):
        message = (
            f'DDP["MAX_MESSAGE_QUEUE_LENGTH"] is {value!r}: it must be a whole number of '
            "messages, 0 or more."
        )
        hint = "Leave it out for Meteor's 100."
        errors.append(Error(message, hint=hint, id="ddp.E014"))
    return errors


@register("ddp")
def check_publish_timeout(app_configs=None, **kwargs):
    """``ddp.E011``: ``DDP["PUBLISH_TIMEOUT"]`` is a number of seconds above 0."""
    return _seconds(
        "PUBLISH_TIMEOUT",
        False,
        "Leave it out for 120 s: a publish's deadline, which no client may escape.",
        "ddp.E011",
    )


@register("ddp")
def check_capture_setting(app_configs=None, **kwargs):
    """``ddp.E012``: ``DDP["CAPTURE"]`` is one of the capture modes."""
    from ddp.conf import ddp_settings
    from ddp.replication.setup import MODES

    value = ddp_settings.CAPTURE
    if value in MODES:
        return []
    return [
        Error(
            f'DDP["CAPTURE"] is {value!r}: it must be "auto", "database" or "signals".',
            hint='Leave it out for "auto": database capture where the database allows it.',
            id="ddp.E012",
        )
    ]


@register(Tags.database, "ddp")
def check_capture_database(app_configs=None, databases=None, **kwargs):
    """``ddp.E013``, ``ddp.W002``, ``ddp.W003``: can the database carry ``DDP["CAPTURE"]``?

    A database check, in Django's convention: it runs only when asked for the database
    (``manage.py check --database default``, ``migrate``, ``ddpserver`` at start-up).
    ``ddp.E013``: "database" is set and cannot work, one error per thing to change;
    ``ddp.W002``: "auto" falls back to signals, one warning per thing to change;
    ``ddp.W003``: database capture with ``max_slot_wal_keep_size`` unset, where a slot
    that nobody reads keeps WAL until the disk is full.
    """
    from django.db import DEFAULT_DB_ALIAS, connections

    from ddp.conf import ddp_settings
    from ddp.replication import setup

    setting = ddp_settings.CAPTURE
    if not databases or DEFAULT_DB_ALIAS not in databases or setting not in ("auto", "database"):
        return []
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        return []  # ddp.E001
    with connection.cursor() as cursor:
        found = setup.obstacles(cursor, setup.published_tables())
        if not found:
            cursor.execute("SELECT current_setting('max_slot_wal_keep_size')")
            keep = cursor.fetchone()[0]
    if setting == "database":
        return [
            Error(
                f'DDP["CAPTURE"] is "database", but {obstacle.problem}.',
                hint=obstacle.fix,
                id="ddp.E013",
            )
            for obstacle in found
        ]
    if found:
        return [
            Warning(
                f'Changes come from model signals (DDP["CAPTURE"] is "auto"): for database '
                f"capture, {obstacle.problem}.",
                hint=obstacle.fix,
                id="ddp.W002",
            )
            for obstacle in found
        ]
    if keep == "-1":
        return [
            Warning(
                "max_slot_wal_keep_size is -1 (unset): a replication slot nobody reads "
                "keeps WAL and fills the disk.",
                hint="Set max_slot_wal_keep_size (e.g. '10GB', more than the WAL written "
                "while every ddpserver may be down) and reload PostgreSQL.",
                id="ddp.W003",
            )
        ]
    return []
