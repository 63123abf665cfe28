"""What a registry publishes, described and checked, for ``manage.py ddp_publications``.

The logic lives here rather than in the command so that the command only parses options and
prints, and so that tests can describe a :class:`~ddp.api.Registry` of their own instead of
mutating :data:`~ddp.api.API`.

Only publications that take no parameters ("static") are run: any other would need made-up
parameters, and what it returns for those says nothing reliable about real subscriptions.
They run as an anonymous connection would, with ``connection_id="inspect"``.
"""

import ast
import inspect
import textwrap

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, connections, transaction
from django.db.models import QuerySet

from ddp.api import Context, Publication, Registry
from ddp.bus.matching import compile_subscription
from ddp.serialize import field_key, m2m_key, published_fields

#: The version of the JSON document. It changes when a key is removed or changes meaning,
#: never when one is added.
JSON_VERSION = 1

#: Meteor's own subscriptions, which every registry holds before anything is registered.
BUILTIN_NAMES = frozenset(Registry().publications)

# Reading either means the querysets may differ from one connection to the next.
CONTEXT_ATTRIBUTES = frozenset({"user", "this"})


def first_line(text):
    """The first line of an error message: a problem must fit on one line of output."""
    return text.strip().split("\n", 1)[0]


def raised(exc):
    return f"get_queries() raised {type(exc).__name__}: {first_line(str(exc))}"


def defined_at(obj):
    """``module:line`` of a class or function, or its module alone when Python has no
    source for it (a class made with ``type()``, as the built-in publications are)."""
    obj = inspect.unwrap(obj)
    try:
        line = inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return obj.__module__
    return f"{obj.__module__}:{line}"


def parameters(func):
    """The parameters of ``func`` after its first (``self`` or ``this``), as written."""
    return [str(p) for p in list(inspect.signature(func).parameters.values())[1:]]


def publication_parameters(cls):
    # The base get_queries takes ``*params`` only to ignore them: ``queries`` takes none.
    if cls.get_queries is Publication.get_queries:
        return []
    return parameters(cls.get_queries)


def is_builtin(name, cls):
    """Whether ``cls`` is the registry's own answer to a Meteor subscription, not a project's
    publication that replaced it under the same name."""
    return name in BUILTIN_NAMES and cls.__module__ == Registry.__module__


def reads_context(cls):
    """Whether the source of ``cls`` or of its bases reads ``self.user`` or ``self.this``.

    A heuristic from the source, not a proof: a helper function that is handed the user
    escapes it. Bases from :mod:`ddp.api` are skipped (``Publication.user`` reads
    ``self.this`` for everyone), and so is a class whose source Python cannot find.
    """
    for klass in cls.__mro__:
        if klass.__module__ in ("builtins", Publication.__module__):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in CONTEXT_ATTRIBUTES
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                return True
    return False


def depends_on_user(registry, cls, queries):
    """Whether subscribers may get different documents for being different users.

    Yes when the class reads the connection's context (:func:`reads_context`), when it
    sets ``login_required``, or when one of its queries feeds a collection with a
    ``user_rel``. Queries are only known for static publications.
    """
    if reads_context(cls) or cls.login_required:
        return True
    return any(
        getattr(registry.collections.get(q["collection"]), "user_rel", None) for q in queries or ()
    )


def static_entries(cls):
    """What a static publication's ``get_queries()`` returns to an anonymous connection."""
    return list(cls(Context(connection_id="inspect", user=AnonymousUser())).get_queries())


def route(registry, entry):
    """``(queryset, collection name, problem)`` for one entry of ``get_queries()``.

    Routes as :meth:`~ddp.api.Registry.resolve_queries` does, but says what is wrong
    instead of raising, so that one run finds every problem. ``queryset`` is None when the
    entry is not one; the collection name is None when no collection takes the model.
    """
    queryset, name = entry if isinstance(entry, tuple) else (entry, None)
    if not isinstance(queryset, QuerySet):
        return None, name, f"returned a {type(queryset).__name__}, not a QuerySet"
    label = queryset.model._meta.label
    if name is None:
        collection = registry.collection_for_model(queryset.model)
        if collection is None:
            return queryset, None, f"no collection publishes {label}"
        return queryset, collection.get_name(), None
    collection = registry.collections.get(name)
    if collection is None:
        return queryset, name, f"collection {name!r} is not registered"
    if collection not in registry.collections_for_model(queryset.model):
        # Its rows would be serialised with another model's fields.
        return (
            queryset,
            name,
            f"{label} rows go to {name!r}, which publishes {collection.model._meta.label}",
        )
    return queryset, name, None


def sql_of(queryset):
    """``(sql, params)`` Django sends for ``queryset`` on its database, or ``(None, ())``
    when Django knows the result is empty and sends nothing (``.none()``, ``pk__in=[]``)."""
    try:
        return queryset.query.get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:
        return None, ()


def explain(queryset):
    """PostgreSQL's error, on one line, when it cannot plan ``queryset``; None if it can."""
    sql, params = sql_of(queryset)
    if sql is None:
        return None
    try:
        # A savepoint: a failed statement must not abort the caller's transaction, which
        # would fail every EXPLAIN after it.
        with transaction.atomic(using=queryset.db), connections[queryset.db].cursor() as cursor:
            cursor.execute("EXPLAIN " + sql, params)
    except DatabaseError as exc:
        return first_line(str(exc))
    return None


def describe_query(registry, entry):
    queryset, collection, _ = route(registry, entry)
    if queryset is None:
        return {"collection": collection, "model": None, "sql": None, "sql_params": []}
    sql, params = sql_of(queryset)
    return {
        "collection": collection,
        "model": queryset.model._meta.label,
        "sql": sql,
        "sql_params": list(params),
    }


def describe_publication(registry, name):
    """One publication as the JSON document has it (see :func:`describe`)."""
    cls = registry.publications[name]
    params = publication_parameters(cls)
    queries = error = None
    if not params:
        try:
            entries = static_entries(cls)
        # The project's own code: whatever it raises is what the listing must show.
        except Exception as exc:
            error = raised(exc)
        else:
            queries = [describe_query(registry, entry) for entry in entries]
    return {
        "name": name,
        "params": params,
        "static": not params,
        "user_dependent": depends_on_user(registry, cls, queries),
        "builtin": is_builtin(name, cls),
        "defined_at": defined_at(cls),
        "queries": queries,
        "error": error,
    }


def describe_collection(collection):
    concrete, many = published_fields(collection)
    return {
        "name": collection.get_name(),
        "model": collection.model._meta.label,
        "fields": [field_key(f) for f in concrete] + [m2m_key(f.name) for f in many],
        "defined_at": defined_at(collection),
    }


def describe(registry):
    """Everything ``registry`` holds, as the ``--format json`` document, lists by name."""
    return {
        "version": JSON_VERSION,
        "publications": [describe_publication(registry, n) for n in sorted(registry.publications)],
        "collections": [
            describe_collection(registry.collections[n]) for n in sorted(registry.collections)
        ],
        "methods": [
            {"name": n, "params": parameters(func), "defined_at": defined_at(func)}
            for n, func in sorted(registry.methods.items())
        ],
    }


def check(registry):
    """``(problems, skipped)``: ``(publication, reason)`` pairs, and the names of the
    publications not run because they take parameters."""
    problems = []
    skipped = []
    for name in sorted(registry.publications):
        # Replacing a built-in is how a project answers one of Meteor's subscriptions.
        classes = [c for c in registry.duplicates.get(name, ()) if not is_builtin(name, c)]
        if len(classes) > 1:
            places = ", ".join(defined_at(c) for c in classes)
            problems.append(
                (name, f"registered {len(classes)} times ({places}); only the last is served")
            )
        cls = registry.publications[name]
        if publication_parameters(cls):
            skipped.append(name)
            continue
        try:
            entries = static_entries(cls)
        except Exception as exc:  # the project's code, as in describe_publication()
            problems.append((name, raised(exc)))
            continue
        for entry in entries:
            queryset, _, problem = route(registry, entry)
            if problem:
                problems.append((name, problem))
            if queryset is None:
                continue
            failure = explain(queryset)
            if failure:
                label = queryset.model._meta.label
                problems.append((name, f"EXPLAIN of the {label} query failed: {failure}"))
    return problems, skipped


def stand_in_user():
    """A logged-in user that exists nowhere: what a ``user_rel`` or ``login_required``
    query compiles with, to see the SQL every user's subscription shares."""
    model = get_user_model()
    return model(pk=model._meta.pk.to_python(0))


def live_matching(name):
    """How the live registry matches subscriptions of ``name`` now, or None if none is."""
    try:
        with transaction.atomic(), connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT m.collection, m.template <> '', count(DISTINCT m.key) FROM ddp_match m"
                " JOIN ddp_subscription s ON s.id = m.subscription_id"
                " WHERE s.publication = %s GROUP BY 1, 2 ORDER BY 1, 2 DESC",
                [name],
            )
            rows = cursor.fetchall()
    except DatabaseError:
        return None  # no registry tables (not migrated): nothing is live
    parts = [
        f"{collection}: {count} {'multiplexed' if multiplexed else 'one by one'}"
        for collection, multiplexed, count in rows
    ]
    return ", ".join(parts) or None


def matching(registry, name):
    """One line: how writers match a saved row against subscriptions of ``name``.

    "multiplexed": every subscription of the publication is answered by one statement
    per collection, whatever their number; "one by one": the writer runs the publication
    for each subscription, and why. A publication that takes parameters is compiled at
    each subscription, so its line tells what the live registry holds.
    """
    cls = registry.publications[name]
    if publication_parameters(cls):
        live = live_matching(name)
        return "takes parameters: decided at each subscription; " + (
            f"live now: {live}" if live else "none is live now"
        )
    try:
        this = Context(connection_id="inspect", user=stand_in_user())
        specs = compile_subscription(registry.resolve_queries(cls(this), ()))
    except Exception as exc:  # the project's code: reported as a problem by check()
        return f"not known ({raised(exc)})"
    parts = []
    for collection, spec in sorted(specs.items()):
        if spec is None:
            parts.append(f"{collection}: holds no row")
        elif spec.template:
            parts.append(f"{collection}: multiplexed")
        else:
            parts.append(f"{collection}: one by one ({spec.reason})")
    return "; ".join(parts) or "publishes nothing"


def matching_lines(registry):
    """``(publication, how it is matched)`` for every publication but Meteor's own."""
    return [
        (name, matching(registry, name))
        for name in sorted(registry.publications)
        if not is_builtin(name, registry.publications[name])
    ]


def align(headers, rows):
    """Lines of a plain table: columns two spaces apart, a cell of several lines (a list)
    taking as many lines, no trailing spaces."""
    rows = [[cell if isinstance(cell, list) else [cell] for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        for n in range(max(len(cell) for cell in row)):
            cells = [cell[n] if n < len(cell) else "" for cell in row]
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return lines


def yes_no(flag):
    return "yes" if flag else "no"


def query_lines(publication):
    """How the table shows a publication's queries: ``model -> collection`` each."""
    if publication["error"]:
        return [f"({publication['error']})"]
    if publication["queries"] is None:
        return ["(depends on parameters)"]
    return [query_line(q) for q in publication["queries"]] or ["-"]


def query_line(query):
    return f"{query['model'] or '(not a QuerySet)'} -> {query['collection'] or '(no collection)'}"


def where(publication):
    return "built-in" if publication["builtin"] else publication["defined_at"]


def format_table(description):
    """The ``--format table`` listing of :func:`describe`'s document."""
    publications = description["publications"]
    collections = description["collections"]
    methods = description["methods"]
    lines = [f"Publications ({len(publications)})"]
    lines += align(
        ["NAME", "PARAMETERS", "STATIC", "USER", "DEFINED AT", "QUERIES (MODEL -> COLLECTION)"],
        [
            [
                p["name"],
                ", ".join(p["params"]) or "-",
                yes_no(p["static"]),
                yes_no(p["user_dependent"]),
                where(p),
                query_lines(p),
            ]
            for p in publications
        ],
    )
    lines += ["", f"Collections ({len(collections)})"]
    lines += align(
        ["NAME", "MODEL", "DEFINED AT", "FIELDS"],
        [[c["name"], c["model"], c["defined_at"], ", ".join(c["fields"])] for c in collections],
    )
    lines += ["", f"Methods ({len(methods)})"]
    lines += align(
        ["NAME", "PARAMETERS", "DEFINED AT"],
        [[m["name"], ", ".join(m["params"]) or "-", m["defined_at"]] for m in methods],
    )
    return "\n".join(lines)


def format_publication(publication):
    """The ``--publication NAME`` view: one publication and the SQL of each query."""
    lines = [
        publication["name"],
        f"  parameters:      {', '.join(publication['params']) or '-'}",
        f"  static:          {yes_no(publication['static'])}",
        f"  user-dependent:  {yes_no(publication['user_dependent'])}",
        f"  defined at:      {where(publication)}",
        "  queries:",
    ]
    if not publication["queries"]:
        lines += [f"    {line}" for line in query_lines(publication)]
        return "\n".join(lines)
    for query in publication["queries"]:
        lines.append(f"    {query_line(query)}")
        if query["model"] is None:
            continue
        if query["sql"] is None:
            lines.append("      (no SQL: Django knows the result is empty)")
            continue
        lines.append(f"      {query['sql']}")
        if query["sql_params"]:
            lines.append(f"      params: {query['sql_params']!r}")
    return "\n".join(lines)
