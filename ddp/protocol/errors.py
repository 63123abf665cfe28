"""Errors of the DDP core: the client-visible ``Meteor.Error`` and our own bugs.

Two kinds of failure exist and they must never be confused:

* :class:`MeteorError` is data. It travels to the client inside ``result`` and
  ``nosub`` messages, so it mirrors Meteor's ``Meteor.Error`` field for field
  (PROTOCOL.md E1). Anything else a method or publication raises is replaced by a
  generic 500 before it reaches the wire (E3), see :func:`sanitize`.
* :class:`ProtocolError` means *this server* tried something impossible (an empty
  ``changed``, a ``changed`` for a document it never sent, ...). It is raised, never
  sent, and never swallowed: it points at a bug in the caller.
"""

from ddp.protocol.ejson import to_ejson


class MeteorError(Exception):
    """An error the client is allowed to see (``Meteor.Error`` on the wire).

    ``error`` is the machine-readable code: a string, or a number in legacy code
    such as ``404``. ``reason`` is a short human summary and ``details`` any EJSON
    value; both are optional and left off the wire when ``None``.
    """

    def __init__(self, error, reason=None, details=None):
        # Keep every constructor argument in ``args`` so the exception pickles and
        # copies like any other.
        super().__init__(error, reason, details)
        self.error = error
        self.reason = reason
        self.details = details

    @property
    def message(self):
        """``"<reason> [<error>]"``, or ``"[<error>]"`` when the reason is empty (E1)."""
        if self.reason:
            return f"{self.reason} [{self.error}]"
        return f"[{self.error}]"

    def __str__(self):
        return self.message

    def to_dict(self):
        """Return the JSON-able wire form, keys in the order Meteor's constructor sets them.

        Meteor builds the object as ``isClientSafe, error, reason, details, message``
        and then adds ``errorType``; ``JSON.stringify`` keeps that order and drops the
        keys that are ``undefined``. ``details`` is EJSON (B3), so it is encoded here.
        """
        wire = {"isClientSafe": True, "error": self.error}
        if self.reason is not None:
            wire["reason"] = self.reason
        if self.details is not None:
            wire["details"] = to_ejson(self.details)
        wire["message"] = self.message
        wire["errorType"] = "Meteor.Error"
        return wire

    def __repr__(self):
        return f"MeteorError({self.error!r}, {self.reason!r}, {self.details!r})"


class ProtocolError(Exception):
    """The server itself asked for something the protocol forbids; a bug in the caller."""


def sanitize(exc):
    """Return what the client may see of ``exc``: itself if client-safe, else a bare 500.

    Tracebacks and messages of ordinary exceptions can leak secrets, so they never
    reach the wire (E3). Logging the original is the caller's job.
    """
    if isinstance(exc, MeteorError):
        return exc
    return MeteorError(500, "Internal server error")
