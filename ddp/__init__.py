"""Serve Meteor's DDP protocol from Django.

Importing this package must not import Django, eventlet or psycopg2: the sans-I/O
protocol core in :mod:`ddp.protocol` is imported in processes that have none of them.
"""

from ddp.protocol.errors import MeteorError

__version__ = "0.1.0"

__all__ = ["MeteorError", "__version__"]
