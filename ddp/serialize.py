"""Model instance -> DDP document: ``(id, fields)`` with Python values.

Values stay Python (datetimes, Decimals, UUIDs...): :mod:`ddp.protocol.ejson` turns them
into EJSON when a message is encoded, so the merge box compares real values. The rules:

* the document id is ``str(pk)``, escaped as Meteor's ``MongoID.idStringify`` expects;
* a foreign key ``author`` is published as ``author_id``, the related id string;
* a many-to-many ``tags`` is published as ``tag_ids``, a list of id strings (the name
  loses a plural ``s``, ``ies`` becomes ``y``, otherwise ``_ids`` is appended);
* naive datetimes are made aware in the current time zone (``USE_TZ = False``).

For a re-run, :func:`documents` reads a whole queryset in ONE query: many-to-many ids come
from a PostgreSQL ``ARRAY_AGG`` annotation, not a query per row. An initial send reads it
with :class:`Pages`, a page per query, so that no database worker is held while the client
takes what was read.
"""

import datetime

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Q
from django.utils import timezone

from ddp.protocol import stringify_id

#: Rows fetched per round trip when streaming a queryset.
CHUNK_SIZE = 2000


def document_id(pk):
    return stringify_id(str(pk))


def m2m_key(name):
    if name.endswith("ies"):
        return name[:-3] + "y_ids"
    if name.endswith("s"):
        return name[:-1] + "_ids"
    return name + "_ids"


def published_fields(collection):
    """``(concrete fields, many-to-many fields)`` a collection publishes, pk excluded."""
    meta = collection.model._meta

    def wanted(f):
        if collection.fields is not None and f.name not in collection.fields:
            return False
        return f.name not in collection.exclude

    concrete = [f for f in meta.concrete_fields if not f.primary_key and wanted(f)]
    many = [f for f in meta.many_to_many if wanted(f)]
    return concrete, many


def field_value(field, obj):
    value = field.value_from_object(obj)
    if field.is_relation:
        return None if value is None else document_id(value)
    if isinstance(value, datetime.datetime) and timezone.is_naive(value):
        return timezone.make_aware(value)
    return value


def field_key(field):
    return field.attname if field.is_relation else field.name


def _annotated(queryset, many):
    """``queryset`` with each many-to-many field's ids as an ``ARRAY_AGG`` annotation."""
    if not many:
        return queryset
    return queryset.annotate(
        **{
            f"_ddp_{f.name}": ArrayAgg(
                f"{f.name}__pk", filter=Q(**{f"{f.name}__isnull": False}), distinct=True
            )
            for f in many
        }
    )


def _document(obj, concrete, many):
    """``(id, fields)`` of a row read from an :func:`_annotated` queryset."""
    fields = {field_key(f): field_value(f, obj) for f in concrete}
    for f in many:
        fields[m2m_key(f.name)] = [document_id(pk) for pk in getattr(obj, f"_ddp_{f.name}") or ()]
    return document_id(obj.pk), fields


def documents(queryset, collection):
    """Yield ``(id, fields)`` for every row of ``queryset``, streamed in one query."""
    concrete, many = published_fields(collection)
    for obj in _annotated(queryset, many).iterator(chunk_size=CHUNK_SIZE):
        yield _document(obj, concrete, many)


class Pages:
    """The documents of ``queryset``, ``size`` at a time in primary key order: each call
    of :meth:`next` is one short query after the last primary key read (keyset paging), so
    the reading can stop between two pages for as long as the client needs, holding
    nothing of the database, and memory holds one page.

    A slice, ``distinct(*fields)`` or a combination keeps rows a filter on ``pk`` would
    not: such a queryset is read as ``pk IN (its primary keys)``. Rows written between two
    pages are the caller's business: it hears those changes and applies them after.
    """

    def __init__(self, queryset, collection, size):
        query = queryset.query
        if query.is_sliced or query.distinct_fields or query.combinator:
            manager = queryset.model._base_manager.using(queryset.db)
            queryset = manager.filter(pk__in=queryset.values("pk"))
        self._concrete, many = published_fields(collection)
        self._many = many
        self._queryset = _annotated(queryset, many).order_by("pk")
        self._size = size
        self._after = None  # the primary key of the last row read
        self._done = False

    def next(self):
        """The next page of ``(id, fields)``; empty once every row was read."""
        if self._done:
            return []
        queryset = self._queryset
        if self._after is not None:
            queryset = queryset.filter(pk__gt=self._after)
        rows = list(queryset[: self._size])
        self._done = len(rows) < self._size
        if rows:
            self._after = rows[-1].pk
        return [_document(obj, self._concrete, self._many) for obj in rows]


def document(obj, collection):
    """``(id, fields)`` of one saved instance; each many-to-many field costs one query."""
    concrete, many = published_fields(collection)
    fields = {field_key(f): field_value(f, obj) for f in concrete}
    for f in many:
        pks = getattr(obj, f.name).values_list("pk", flat=True)
        fields[m2m_key(f.name)] = [document_id(pk) for pk in pks]
    return document_id(obj.pk), fields
