"""Multiplexed matching: which distinct subscriptions a saved row belongs to, in one statement.

Subscriptions of one publication whose querysets compile to the same SQL differ only in
the values of that SQL's parameters (the user id of a ``user_rel`` is one more of them).
So a server, when a subscription starts, compiles each of its querysets once
(:func:`compile_subscription`) into a *template*, the SQL with its parameters left out and
a primary key to test, and stores the template's hash and the parameter values in the
registry (``ddp_match``). A writer then asks, for a saved row, one statement per
collection (:class:`Matcher`): every template's ``EXISTS`` with each registry row's own
values in place of the parameters, ``pk`` = the row. PostgreSQL drives it from the saved
row, and an index on the first parameter (``t[1]`` for text, ``i[1]`` for integers) finds
the subscriptions an equality names, so its cost hardly grows with their number; a
template whose first parameter is not such an equality is still one statement, a scan of
its group in PostgreSQL.

The writer never trusts SQL from the database: it rebuilds each template from the
project's own publication code, run once with one subscription's parameters and user (a
*representative*), and uses it only if its hash is the one the server stored. PostgreSQL
types the parameters (``PREPARE``), so a stored value is cast exactly as the literal
Django would have sent.

Querysets that cannot be templated (``extra()``, raw SQL, parameters of a type this
module cannot store as text or bigint, a queryset PostgreSQL cannot type) fall back to the
per-subscription path: the writer runs the publication for each such subscription and
asks ``EXISTS``, counted in ``ddp_match_fallback_total``. :func:`compile_subscription`
says why, and ``manage.py ddp_publications --check`` reports it.
"""

import datetime
import decimal
import hashlib
import logging
import re
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import DatabaseError, connections, transaction
from django.db.models import Expression, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.sql import Query
from django.db.models.sql.where import ExtraWhere

from ddp import metrics
from ddp.api import API, Context
from ddp.protocol import dumps, from_ejson, loads

logger = logging.getLogger("ddp.bus")


class RowPlaceholder:
    """The value of the SQL parameter that stands for the saved row's primary key, until a
    writer fills it in; its one instance is :data:`ROW`, named in what quotes the SQL."""

    __slots__ = ()

    def __repr__(self):
        return "ROW"


ROW = RowPlaceholder()

#: Placeholders and escaped percent signs in the SQL Django compiles for psycopg2.
_PLACEHOLDER = re.compile(r"%[s%]")

#: Types PostgreSQL gives a parameter that a stored value fits without a cast (and so
#: that the registry's indexes on ``t[1]`` and ``i[1]`` can serve).
_TEXT_TYPES = frozenset({"pg_catalog.text", "pg_catalog.varchar"})
_INT_TYPES = frozenset({"pg_catalog.int2", "pg_catalog.int4", "pg_catalog.int8"})


class Unsupported(Exception):
    """A queryset that cannot be a template: its subscriptions are matched one by one."""


class RowPk(Expression):
    """The saved row's primary key: a placeholder the writer fills in at match time."""

    def as_sql(self, compiler, connection):
        return "%s", [ROW]


@dataclass(frozen=True)
class Spec:
    """How one subscription is matched against one collection's rows.

    ``template`` is the hash of the compiled SQL and its parameters' types, and ``args``
    the parameter values in order; or ``template`` is empty and ``reason`` says why the
    subscription must be matched by running its publication (the fallback).
    """

    template: str
    args: tuple = ()
    reason: str = ""

    @property
    def text_args(self):
        """The values as PostgreSQL reads them back with a cast (``t``); NULL for None."""
        return [text_form(value) for value in self.args]

    @property
    def int_args(self):
        """The integer values as they are (``i``, which an index can compare); else NULL."""
        return [_as_int(value) for value in self.args]


def _as_int(value):
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return int(value)
    return None


def text_form(value):
    """A parameter's value as text that PostgreSQL casts back to the same value.

    Raises :class:`Unsupported` for a type with no such form here (bytes, lists, JSON).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if _as_int(value) is None:
            # Stored as bigint beside every other subscription's: one beyond would not fit.
            raise Unsupported("an integer beyond 64 bits")
        return str(int(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
    raise Unsupported(f"a parameter of type {type(value).__name__}")


def _kind(value):
    """A parameter's type as the template's hash records it."""
    if value is ROW:
        return "row"
    if value is None:
        return "null"
    return type(value).__name__


def _holds_raw_sql(query):
    """Whether ``query`` or anything in it (a subquery, an annotation) holds raw SQL."""
    stack, seen = [query], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > 10_000:
            return True  # larger than any queryset a person writes: do not guess
        if isinstance(node, (RawSQL, ExtraWhere)):
            return True
        if isinstance(node, QuerySet):
            node = node.query
        if isinstance(node, Query):
            if node.extra or node.extra_tables:
                return True
            stack.append(node.where)
            stack.extend(node.annotations.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif node is not None and not isinstance(node, (str, bytes, int, float)):
            stack.extend(getattr(node, "children", ()))
            stack.extend(getattr(node, name, None) for name in ("lhs", "rhs"))
            if hasattr(node, "get_source_expressions"):
                stack.extend(node.get_source_expressions())
    return False


def _plain(queryset):
    """``queryset``, or one with the same rows that a filter on ``pk`` does not change.

    A slice, ``distinct(*fields)`` or a combination keeps rows a plain filter would not:
    such a queryset is tested as ``pk IN (its primary keys)``.
    """
    query = queryset.query
    if query.is_sliced or query.distinct_fields or query.combinator:
        return queryset.model._base_manager.using(queryset.db).filter(pk__in=queryset.values("pk"))
    return queryset


def contained(queryset, pks):
    """Which of the rows ``pks`` are in ``queryset``: the per-subscription question."""
    return set(_plain(queryset).filter(pk__in=pks).values_list("pk", flat=True))


def match_query(queryset):
    """The queryset of rows of ``queryset`` whose primary key is the saved row's."""
    if _holds_raw_sql(queryset.query):
        raise Unsupported("extra() or raw SQL")
    queryset = _plain(queryset)
    pk = queryset.model._meta.pk
    return queryset.filter(pk=RowPk(output_field=pk)).order_by().values("pk")


def compiled(queryset):
    """``(sql, params)`` of :func:`match_query`, or None if Django knows it is empty."""
    query = match_query(queryset).query
    try:
        return query.get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:
        return None


def template_hash(collection, sqls, params):
    """The identity of a template: its collection, SQL and parameters' types."""
    text = dumps([collection, sqls, [[_kind(v) for v in p] for p in params]])
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def compile_parts(querysets):
    """``(sqls, params)`` of the querysets that can hold a row; Unsupported if one of
    them cannot be a template."""
    sqls, params = [], []
    for queryset in querysets:
        result = compiled(queryset)
        if result is None:
            continue
        sql, values = result
        for value in values:
            if value is not ROW:
                text_form(value)
        sqls.append(sql)
        params.append(list(values))
    return sqls, params


def compile_group(collection, querysets):
    """The :class:`Spec` of one subscription's querysets for one collection, or None when
    none of them can hold a row (``.none()``, an anonymous user's ``user_rel``)."""
    try:
        sqls, params = compile_parts(querysets)
    except Unsupported as exc:
        return Spec("", reason=str(exc))
    except Exception as exc:  # Django refused to compile it: the one-by-one path says more
        return Spec("", reason=f"{type(exc).__name__}: {exc}")
    if not sqls:
        return None
    args = tuple(v for values in params for v in values if v is not ROW)
    return Spec(template_hash(collection, sqls, params), args)


def compile_subscription(pairs):
    """``{collection name: Spec or None}`` for a subscription's ``(queryset, Collection)``
    pairs, as :meth:`ddp.api.Registry.resolve_queries` gives them."""
    by_collection = {}
    for queryset, collection in pairs:
        by_collection.setdefault(collection.get_name(), []).append(queryset)
    return {name: compile_group(name, qs) for name, qs in by_collection.items()}


# The writer's side ----------------------------------------------------------------------


def _numbered(sql):
    """Django's ``%s`` placeholders as PostgreSQL's ``$1, $2, ...`` (``%%`` as ``%``)."""
    count = iter(range(1, 1 << 30))
    return _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(count)}", sql)


def parameter_types(cursor, sql):
    """The type PostgreSQL gives each parameter of ``sql``, as ``schema.name``.

    Raises Unsupported when it cannot: run it in a savepoint. A prepared statement
    outlives a rolled-back transaction, so it is deallocated whatever happens.
    """
    cursor.execute("PREPARE ddp_match_probe AS " + _numbered(sql))
    try:
        cursor.execute(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(t.typname)"
            " FROM pg_prepared_statements s,"
            " unnest(s.parameter_types::oid[]) WITH ORDINALITY AS p(oid, n)"
            " JOIN pg_type t ON t.oid = p.oid JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE s.name = 'ddp_match_probe' ORDER BY p.n"
        )
        return [row[0] for row in cursor.fetchall()]
    finally:
        cursor.execute("DEALLOCATE ddp_match_probe")


def _reference(kind, value, position, loose):
    """SQL for the stored value of parameter ``position`` (1-based) in registry row ``m``.

    ``loose``: an integer as the bigint it is stored as, which an index on ``i[1]`` can
    serve and a comparison with any integer column takes; else cast to the type
    PostgreSQL gave the parameter, for the places (a function's argument) that need it.
    """
    if kind in _INT_TYPES and _as_int(value) is not None:
        if loose or kind == "pg_catalog.int8":
            return f"m.i[{position}]"
        return f"(m.i[{position}])::{kind}"
    if kind in _TEXT_TYPES and isinstance(value, str):
        return f"m.t[{position}]"
    if kind in _TEXT_TYPES or kind == "pg_catalog.unknown":
        # Untyped for PostgreSQL yet not a string here: psycopg2 would have typed it.
        raise Unsupported("a parameter PostgreSQL cannot type")
    return f"(m.t[{position}])::{kind}"


def _substitute(sql, values, kinds, position, loose):
    """``sql`` with each parameter read from registry row ``m``, and the saved row's primary
    key read from ``ddp_rows.pk``: ``(sql, the type of that key or None, the last position
    of m's values used)``."""
    typed = iter(zip(values, kinds, strict=True))
    row_type = None

    def substitute(match):
        nonlocal position, row_type
        if match.group() == "%%":
            return "%%"
        value, kind = next(typed)
        if value is ROW:
            row_type = kind
            return "ddp_rows.pk"
        position += 1
        return _reference(kind, value, position, loose)

    return _PLACEHOLDER.sub(substitute, sql), row_type, position


@dataclass(frozen=True)
class Template:
    """A template as the writer runs it: one ``EXISTS`` per queryset, each reading the
    saved rows' primary keys from ``ddp_rows.pk`` (of the type PostgreSQL gave the key in
    ``row_types``) and registry row ``m``'s values."""

    collection: str
    hash: str
    branches: tuple
    row_types: tuple

    @classmethod
    def build(cls, cursor, collection, sqls, params, source, source_params):
        """Raises when PostgreSQL cannot type a parameter or plan the statement: run it in
        a savepoint.

        Integers are first left as stored (bigint); if PostgreSQL then cannot plan the
        statement (an integer passed to a function that takes ``int4``), they are cast.
        """
        kinds = [parameter_types(cursor, sql) for sql in sqls]
        digest = template_hash(collection, sqls, params)
        for loose in (True, False):
            branches, row_types, position = [], [], 0
            for sql, values, types in zip(sqls, params, kinds, strict=True):
                branch, row_type, position = _substitute(sql, values, types, position, loose)
                branches.append(branch)
                row_types.append(row_type)
            template = cls(collection, digest, tuple(branches), tuple(row_types))
            sql, statement_params = template.statement(source, source_params, [])
            try:
                with transaction.atomic(using=cursor.db.alias):
                    cursor.execute("EXPLAIN " + sql, statement_params)
            except DatabaseError:
                if not loose:
                    raise
            else:
                return template

    def statement(self, source, source_params, pks):
        """``(sql, params)`` of ``(n, key)``: the keys of the registry rows (``source``, a
        relation named ``m``) of this template whose subscription holds the row ``pks[n -
        1]``. One statement however many rows: PostgreSQL joins them with the registry."""
        sqls, params = [], []
        for branch, row_type in zip(self.branches, self.row_types, strict=True):
            sqls.append(
                f"SELECT ddp_rows.n, m.key FROM unnest(%s::{row_type}[]) WITH ORDINALITY"
                f" AS ddp_rows(pk, n), {source} WHERE m.collection = %s AND m.template = %s"
                f" AND EXISTS ({branch})"
            )
            params += [list(pks), *source_params, self.collection, self.hash]
        return " UNION ALL ".join(sqls), params


def union(statements):
    """One statement of several ``(sql, params)``: the rows of all of them."""
    return " UNION ALL ".join(s for s, _ in statements), [p for _, ps in statements for p in ps]


class Matcher:
    """A writer's per-process knowledge of the registry: which templates each collection's
    subscriptions use, built once each, and which subscriptions fall back.

    It follows the registry by the highest ``ddp_match`` id it has read: a save that
    finds a higher one reads only the rows added since (new subscriptions, one cheap
    query), never the whole registry. Rows of subscriptions that ended are forgotten by a
    full read every ``refresh`` seconds; until then a template with no rows left costs a
    branch that finds nothing. Templates it could not build are tried again then.

    ``backend`` is where the registry lives (:class:`ddp.bus.producer.PostgresBackend`, or
    the in-memory bus of tests); see :meth:`match` for what it must answer.
    """

    def __init__(self, backend, refresh=60.0):
        self.backend = backend
        self.refresh = refresh
        # A lock of the standard library's, not the driver's: every writer of the process
        # shares this cache, and a Django process's writers are its WSGI server's OS threads,
        # which no driver reaches (in ``ddpserver``, eventlet has made it green). Held across
        # the registry's queries, which yield. Re-entrant: building a template runs the
        # project's code, which may save a row.
        self._lock = threading.RLock()
        self._version = 0
        self._read_at = None
        #: collection -> hashes of the templates its subscriptions use
        self._groups = defaultdict(set)
        #: collection -> keys of the subscriptions matched one by one
        self._fallback = defaultdict(set)
        #: (collection, hash) -> Template, or the reason this writer cannot build it
        self._templates = {}

    def sync(self, using, version):
        """Catch up with the registry as of ``version`` (read under the registry lock)."""
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at > self.refresh:
                since, self._read_at = 0, now
                self._groups.clear()
                self._fallback.clear()
                # What could not be built may build now (its representative's user was
                # missing, the project's code has been fixed and reloaded...).
                self._templates = {
                    k: t for k, t in self._templates.items() if isinstance(t, Template)
                }
            elif version <= self._version:
                return
            else:
                since = self._version
            for row in self.backend.match_rows(using, since):
                if row.template:
                    self._groups[row.collection].add(row.template)
                else:
                    self._fallback[row.collection].add(row.key)
            self._version = max(self._version if since else 0, version)

    def match(self, using, collection, pks):
        """``[(keys, unsure), ...]``, one per row of ``pks`` (primary keys, in order): the
        distinct subscriptions whose queries for ``collection`` hold the row, and those it
        could not tell (their servers re-run them). One statement for all the rows.

        Runs inside the writer's transaction; every statement that may fail runs in a
        savepoint, so nothing here fails the writer's transaction.
        """
        templates, broken = self._prepared(using, collection)
        keys = [set() for _ in pks]
        unsure = set()  # of every row: what failed failed for all of them
        source, source_params = self.backend.source(using)
        if templates and pks:
            try:
                statements = [t.statement(source, source_params, pks) for t in templates]
                self._run(using, union(statements), keys)
            except Exception:
                logger.exception("Matching a %s change failed; trying each template", collection)
                for template in templates:
                    try:
                        self._run(using, template.statement(source, source_params, pks), keys)
                    except Exception:
                        metrics.inc("ddp_match_failures_total")
                        unsure |= set(self.backend.group_keys(using, collection, template.hash))
        with self._lock:
            fallback = set(self._fallback.get(collection, ()))
        for template_hash in broken:
            fallback |= set(self.backend.group_keys(using, collection, template_hash))
        if fallback and pks:
            unsure |= self._one_by_one(using, collection, pks, fallback, keys)
        return [(frozenset(found), frozenset(unsure - found)) for found in keys]

    def _run(self, using, statement, keys):
        """Add the keys ``statement`` finds to ``keys[n - 1]`` of each row ``n``."""
        sql, params = statement
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            found = cursor.fetchall()
        for n, key in found:
            keys[n - 1].add(key)

    def _prepared(self, using, collection):
        """The collection's templates this writer can run, and the hashes it cannot."""
        with self._lock:
            hashes = list(self._groups.get(collection, ()))
            missing = [h for h in hashes if (collection, h) not in self._templates]
            for template_hash in missing:
                built = self._build(using, collection, template_hash)
                if built is not None:
                    self._templates[collection, template_hash] = built
                else:
                    self._groups[collection].discard(template_hash)
            found = [self._templates.get((collection, h)) for h in hashes]
        templates = [t for t in found if isinstance(t, Template)]
        broken = [h for h, t in zip(hashes, found, strict=True) if isinstance(t, str)]
        return templates, broken

    def _build(self, using, collection, digest):
        """The template ``digest`` of ``collection``, rebuilt from the project's
        code with one of its subscriptions; its reason if that cannot be done; None when
        no subscription uses it any more."""
        found = self.backend.representative(using, collection, digest)
        if found is None:
            return None
        try:
            user = load_users(using, [found.user_id])[found.user_id]
            querysets = [
                queryset
                for queryset, target in resolve(found, user)
                if target.get_name() == collection
            ]
            sqls, values = compile_parts(querysets)
            if template_hash(collection, sqls, values) != digest:
                raise Unsupported("this process compiles it to other SQL than the server did")
            source, source_params = self.backend.source(using)
            with transaction.atomic(using=using), connections[using].cursor() as cursor:
                return Template.build(cursor, collection, sqls, values, source, source_params)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, Unsupported) else f"{type(exc).__name__}: {exc}"
            logger.warning(
                "Subscriptions of %s to %s are matched one by one: %s",
                found.publication,
                collection,
                reason,
            )
            return reason

    def _one_by_one(self, using, collection, pks, subscriptions, keys):
        """Today's path for subscriptions that have no template: run each publication, and
        ask which of the rows ``pks`` it holds (one query each). Adds to ``keys`` as
        :meth:`_run` does; returns the keys of the subscriptions that failed."""
        rows = self.backend.subscriptions(using, sorted(subscriptions))
        users = load_users(using, {row.user_id for row in rows.values()})
        failed = set()
        for key, row in rows.items():
            metrics.inc("ddp_match_fallback_total")
            try:
                with transaction.atomic(using=using):
                    held = set()
                    for queryset, target in resolve(row, users[row.user_id]):
                        if target.get_name() == collection:
                            held |= contained(queryset, pks)
            except Exception:
                logger.exception("Publication %r failed while matching a change", row.publication)
                metrics.inc("ddp_match_failures_total")
                failed.add(key)
                continue
            for found, pk in zip(keys, pks, strict=True):
                if pk in held:
                    found.add(key)
        return failed


def resolve(row, user):
    """The ``(queryset, Collection)`` pairs of a :class:`ddp.bus.registry.SubscriptionRow` for
    ``user`` (its ``user_id``'s), as its subscription's server resolved them."""
    publication = API.publications.get(row.publication)
    if publication is None:
        raise LookupError(f"No publication {row.publication!r} in this process")
    params = from_ejson(loads(row.params) if isinstance(row.params, str) else row.params)
    return API.resolve_queries(publication(Context(connection_id="", user=user)), params)


def load_users(using, user_ids):
    """``{user id: user}`` in one query; an id with no user (or None) is anonymous."""
    users = dict.fromkeys(user_ids, AnonymousUser())
    model = get_user_model()
    ids = []
    for user_id in user_ids:
        try:
            ids.append(model._meta.pk.to_python(user_id))
        except (TypeError, ValueError, ValidationError):
            continue  # no user has it: the registry row was not written by a server
    if ids:
        found = model._default_manager.using(using).filter(pk__in=ids)
        users.update({str(user.pk): user for user in found})
    return users
