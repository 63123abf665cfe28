"""Model signals -> changes, for the models a registered Collection publishes, and no other.

``QuerySet.update()``, ``bulk_create()`` and raw SQL send no signals: code that writes
that way calls :func:`ddp.notify_changed` in the same transaction.

Changes on a database alias other than ``default`` cannot reach the listeners, which
LISTEN on ``default``: the ``ddp.E003`` system check refuses routers that send published
models elsewhere, and such a change is logged as an error rather than dropped silently.
"""

import logging

from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import m2m_changed, post_delete, post_save

from ddp.api import API
from ddp.bus import producer

logger = logging.getLogger("ddp.bus")


def _publishing(model, using):
    collections = API.collections_for_model(model)
    if not collections or producer.reading_database(using):
        return []  # the replication reader announces every write
    if using != DEFAULT_DB_ALIAS:
        logger.error(
            "A %s was written to database %r: DDP only sees changes on %r",
            model._meta.label,
            using,
            DEFAULT_DB_ALIAS,
        )
        return []
    return collections


def on_save(sender, instance, raw=False, using=DEFAULT_DB_ALIAS, **kwargs):
    collections = _publishing(sender, using)
    if collections and not raw:
        producer.changed(instance, collections, using)


def on_delete(sender, instance, using=DEFAULT_DB_ALIAS, **kwargs):
    collections = _publishing(sender, using)
    if collections:
        producer.changed(instance, collections, using, deleted=True)


def on_m2m(sender, instance, action, reverse, model, pk_set, using=DEFAULT_DB_ALIAS, **kwargs):
    """A many-to-many change changes the ``<name>_ids`` list of the rows that hold it."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not reverse:
        collections = _publishing(type(instance), using)
        if collections:
            producer.changed(instance, collections, using)
    elif pk_set:
        # ``instance`` is on the other side; the rows whose list changed are ``pk_set``.
        producer.notify_changed(model, pk_set, using)


def connect():
    """Connect the receivers (once; ``dispatch_uid`` makes it idempotent)."""
    post_save.connect(on_save, dispatch_uid="ddp.bus.capture.on_save")
    post_delete.connect(on_delete, dispatch_uid="ddp.bus.capture.on_delete")
    m2m_changed.connect(on_m2m, dispatch_uid="ddp.bus.capture.on_m2m")
