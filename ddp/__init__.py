"""Serve Meteor's DDP protocol from Django.

Importing this package must not import Django, eventlet or psycopg2: the sans-I/O
protocol core in :mod:`ddp.protocol` is imported in processes that have none of them.
"""

from collections.abc import Iterable
from typing import Any

from ddp.protocol.errors import MeteorError

__version__ = "0.1.0"

__all__ = ["MeteorError", "__version__", "notify_changed"]


def notify_changed(model: type, pks: Iterable[Any], using: str = "default") -> None:
    """Announce rows written without model signals (``update()``, ``bulk_create()``, SQL).

    Call it in the same transaction as the write; rows that no longer exist are
    announced as deleted. (Imported lazily: this package must not import Django.)
    """
    from ddp.bus.producer import notify_changed

    notify_changed(model, pks, using)
