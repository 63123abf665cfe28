"""The random stream of the method call being run, so its inserts get the stub's ids (R8).

Meteor keeps the stream on the current method invocation; here a context variable holds
it, set around the method by :func:`method_random`, so that model code (the
:class:`~ddp.fields.MeteorIdField`) finds it without the method passing it along. A
context variable, not a thread-local: it is right for each green thread too, and a
database worker that runs one call after another starts every call clean.
"""

from contextlib import contextmanager
from contextvars import ContextVar

from ddp.protocol.random import RandomStream, secure

_current = ContextVar("ddp_method_random", default=None)


@contextmanager
def method_random(seed):
    """Draw ids from ``seed``'s :class:`RandomStream` inside the ``with`` block.

    ``seed`` is the call's ``randomSeed``. ``None`` or ``""`` (no seed sent: Meteor
    treats both as absent) means no stream, so ids come from the secure source even
    when an enclosing block has one: a call must never draw from another call's stream.
    Yields the stream, or ``None``.
    """
    stream = RandomStream(seed) if seed else None
    token = _current.set(stream)
    try:
        yield stream
    finally:
        _current.reset(token)


def next_id(collection_name):
    """The id for a new document of the DDP collection ``collection_name``.

    Inside a seeded method call it is the id the client's stub made for the same insert;
    elsewhere a secure ``Random.id()``.
    """
    stream = _current.get()
    if stream is None:
        return secure.id()
    return stream.collection_id(collection_name)
