"""What one client may ask of the server: Meteor's DDPRateLimiter, and three bounds of our own.

A server shares its CPU, its database pool and its memory among every client, so one client
that loops on a method, opens subscriptions without end or floods the socket must be refused
before it costs the others. Four limits, each a ``DDP[...]`` setting (see ``ddp/conf.py``):

``RATE_LIMITS``
    Rules modelled on Meteor's ``DDPRateLimiter``: each matches method calls or subscriptions
    by type, name, connection, user and client address, and allows ``limit`` of them per
    ``interval_ms``. Besides Meteor's types (``"method"``, ``"subscription"``), the type
    ``"password"`` counts the password checks of the accounts methods, each a costly hash. A call
    over the limit is answered with Meteor's ``too-many-requests`` error (PROTOCOL.md E4); a
    method still gets its ``updated`` (R5). The default is Meteor's accounts rule (A6). One
    :class:`RateLimiter` serves the whole process, so a per-user rule counts every connection of
    that user on this server (as in Meteor, each server process counts on its own).
``MESSAGES_PER_SECOND``, ``MESSAGE_BURST``
    A token bucket per connection over every frame it sends. A client over it is closed with
    1008 (policy violation) rather than answered: error replies would cost the server as much
    as the flood itself, and a client sending that fast is broken or hostile.
``MAX_SUBSCRIPTIONS``
    Active subscriptions per connection; one more gets ``nosub`` with ``too-many-requests``.
``MAX_PENDING_METHODS``
    Method calls of one connection received and not yet answered. The transport's inbox would
    otherwise grow with every call a client sends without waiting; one more is answered at
    once with ``too-many-requests`` instead of being queued.

The count limits have no time to wait for: they answer ``timeToReset: 0``, and a client gets
under them by unsubscribing or by waiting for its answers.

Nothing here touches Django, a socket or a thread of its own, and the clock is injected
(``time.monotonic`` by default), so tests count calls without waiting for real time.
"""

import math
import time
from dataclasses import dataclass

from ddp.protocol.errors import MeteorError

#: The close code (RFC 6455) and reason for a client over ``MESSAGES_PER_SECOND``.
POLICY_VIOLATION = 1008
TOO_MANY_MESSAGES = "Too many messages"

#: What a rule can match on: Meteor's ``type``, ``name``, ``connectionId``, ``userId`` and
#: ``clientAddress``.
FIELDS = ("type", "name", "connection_id", "user_id", "client_address")


def too_many_requests(time_to_reset):
    """Meteor's rate-limit error, word for word (``ddp-rate-limiter``'s default message).

    ``time_to_reset`` is in milliseconds; the reason rounds it up to whole seconds, as
    Meteor's ``Math.ceil(timeToReset / 1000)`` does.
    """
    seconds = math.ceil(time_to_reset / 1000)
    return MeteorError(
        "too-many-requests",
        f"Error, too many requests. Please slow down. You must wait {seconds} seconds "
        "before trying again.",
        {"timeToReset": time_to_reset},
    )


def too_many_subscriptions(limit):
    """The error for one subscription over ``DDP["MAX_SUBSCRIPTIONS"]``.

    Not ``too-many-requests``: waiting does not help, unsubscribing does, and a client
    that retries after ``timeToReset`` (0 here) would retry at once, for ever.
    """
    return MeteorError(
        "too-many-subscriptions",
        f"This connection has {limit} subscriptions, the most it may: stop one first.",
        {"limit": limit},
    )


def too_many_pending_methods(limit):
    """The error for one method call over ``DDP["MAX_PENDING_METHODS"]`` unanswered ones:
    the client must wait for their results, not for a time."""
    return MeteorError(
        "too-many-pending-methods",
        f"This connection has {limit} method calls waiting, the most it may: wait for "
        "their results first.",
        {"limit": limit},
    )


def _matches(matcher, value):
    if matcher is True:
        return True
    if isinstance(matcher, str):
        return value == matcher
    if callable(matcher):
        return bool(matcher(value))
    return value in matcher


@dataclass(frozen=True)
class Rule:
    """Allow ``limit`` matching calls per ``interval_ms`` for each distinct key.

    ``match`` maps fields of :data:`FIELDS` to matchers, as Meteor's matcher objects do:

    * a string: the field must equal it;
    * a list, tuple or set of strings: the field must be one of them;
    * ``True``: any value, ``None`` included (Meteor's ``() => true``);
    * a callable: the field must make it return true (it must not raise);
    * ``None``, or a field left out: the field does not matter.

    Calls are counted separately for each combination of values of the fields the rule
    names (Meteor's key string): ``{"type": "method", "name": ["login", "createUser"],
    "connection_id": True}`` counts logins and account creations apart, per connection.
    Anonymous calls all have the ``user_id`` ``None``, so a rule on ``user_id`` alone counts
    every anonymous connection together.

    Raises ``ValueError`` for a field not in :data:`FIELDS`, a ``limit`` under 1 or an
    ``interval_ms`` of 0 or less, and ``TypeError`` for a matcher of another type.
    """

    match: dict
    limit: int
    interval_ms: int

    def __post_init__(self):
        # Settings are written by hand: a typo must fail at start-up, not let calls through.
        unknown = set(self.match) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown rate-limit fields {sorted(unknown)}; use {FIELDS}")
        for field, matcher in self.match.items():
            if not (
                matcher is None
                or matcher is True
                or isinstance(matcher, (str, list, tuple, set, frozenset))
                or callable(matcher)
            ):
                raise TypeError(f"rate-limit matcher for {field!r} cannot be {matcher!r}")
        if self.limit < 1 or self.interval_ms <= 0:
            raise ValueError(f"a rate limit needs limit >= 1 and interval_ms > 0: {self}")

    def key(self, event):
        """The counter ``event`` (a dict of :data:`FIELDS`) counts against; None if unmatched."""
        values = []
        for field, matcher in self.match.items():
            if matcher is None:
                continue
            value = event[field]
            if not _matches(matcher, value):
                return None
            values.append(value)
        return tuple(values)


class RateLimiter:
    """Meteor's ``DDPRateLimiter``: every rule a call matches counts it, and a call over any
    rule's limit is refused. Refused calls count too, as in Meteor.

    Windows are fixed, as Meteor's, but open at a key's first call rather than once for the
    whole rule: a client's ``timeToReset`` then depends on its own calls, not on whoever came
    first. Keys whose window is over are dropped once per interval, so memory follows the
    clients of the last interval, not every connection the process ever had.
    """

    def __init__(self, rules=(), clock=time.monotonic):
        self.rules = tuple(rules)
        self.clock = clock
        #: Per rule: key -> [window start in ms, calls in the window].
        self._windows = [{} for _ in self.rules]
        self._next_sweep = [0.0 for _ in self.rules]
        # Every session of the process checks here, from its green threads, and no lock is
        # needed (ddp/runtime/driver.py, guarantees 1 and 2): a rule's matchers may yield
        # (the project's functions), but only before its counts are read, and nothing
        # between that read and the write yields.

    @classmethod
    def from_settings(cls, config, clock=time.monotonic):
        """A limiter for ``DDP["RATE_LIMITS"]``: a list of ``Rule`` keyword dicts.

        Raises what :class:`Rule` raises, and ``TypeError`` for a dict with other keys.
        """
        return cls([Rule(**entry) for entry in config], clock)

    def check(self, kind, name, connection_id, user_id, client_address=None):
        """Count one call; return None if it may run, else the milliseconds until it may.

        ``kind`` is ``"method"``, ``"subscription"`` or ``"password"``. When the call exceeds
        several rules, the longest wait is returned, as Meteor does.
        """
        event = {
            "type": kind,
            "name": name,
            "connection_id": connection_id,
            "user_id": user_id,
            "client_address": client_address,
        }
        now = self.clock() * 1000
        wait = None
        for index, rule in enumerate(self.rules):
            key = rule.key(event)
            if key is None:
                continue
            windows = self._windows[index]
            if now >= self._next_sweep[index]:
                self._sweep(windows, rule.interval_ms, now)
                self._next_sweep[index] = now + rule.interval_ms
            window = windows.get(key)
            if window is None or now >= window[0] + rule.interval_ms:
                window = windows[key] = [now, 0]
            window[1] += 1
            if window[1] > rule.limit:
                left = math.ceil(window[0] + rule.interval_ms - now)
                wait = left if wait is None else max(wait, left)
        return wait

    @staticmethod
    def _sweep(windows, interval_ms, now):
        for key in [key for key, (start, _) in windows.items() if now >= start + interval_ms]:
            del windows[key]


_shared = (None, None)


def shared_rate_limiter(config):
    """The process's limiter for ``config``, shared by every connection.

    Per-user rules must see every connection of the user, so there is one limiter, not one
    per session. A new one, with empty counters, replaces it when the setting changes, as it
    does under ``override_settings`` in tests.
    """
    global _shared
    current, limiter = _shared
    if limiter is None or current != config:
        limiter = RateLimiter.from_settings(config)
        _shared = (config, limiter)
    return limiter


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` of them saved; it starts full.

    A bucket rather than a window: a client may send a burst (a Meteor client reconnects
    with its connect, every live ``sub`` and every unanswered method at once) but not keep
    up more than ``rate`` for long.
    """

    def __init__(self, rate, burst, clock=time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self._last = clock()

    def take(self):
        """Take one token; False (and nothing taken) when the bucket is empty."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def refuse(kind, name, this, rate_limiter):
    """The ``too-many-requests`` error for one more ``kind`` call by ``this``, or None."""
    wait = rate_limiter.check(kind, name, this.connection_id, this.user_id, this.client_address)
    return None if wait is None else too_many_requests(wait)


class ConnectionLimits:
    """Everything one connection may still ask, for its session to consult.

    ``None`` for any of the numbers turns that limit off. The message budget is taken on the
    transport's reader (every frame), the other limits on the session's worker, except the
    pending count, which the reader raises and the worker lowers; the server's threads are
    green, so the two never interleave inside one update.
    """

    def __init__(
        self,
        rate_limiter=None,
        messages_per_second=None,
        message_burst=None,
        max_subscriptions=None,
        max_pending_methods=None,
        clock=time.monotonic,
    ):
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter()
        self.messages = (
            None
            if messages_per_second is None
            else TokenBucket(messages_per_second, message_burst, clock)
        )
        self.max_subscriptions = max_subscriptions
        self.max_pending_methods = max_pending_methods
        #: Method calls received and not yet answered.
        self.pending_methods = 0
        #: Set by the first frame over the message budget, and never cleared: the connection
        #: is closing, and nothing its client sent from then on may run.
        self.flooded = False

    @classmethod
    def from_settings(cls, settings):
        """The limits ``settings`` (``ddp.conf.ddp_settings``, or anything with its names) set."""
        return cls(
            shared_rate_limiter(settings.RATE_LIMITS),
            messages_per_second=settings.MESSAGES_PER_SECOND,
            message_burst=settings.MESSAGE_BURST,
            max_subscriptions=settings.MAX_SUBSCRIPTIONS,
            max_pending_methods=settings.MAX_PENDING_METHODS,
        )

    def admit_message(self):
        """Count one inbound frame; False, from the first frame over the budget on."""
        if not self.flooded and self.messages is not None and not self.messages.take():
            self.flooded = True
        return not self.flooded

    def queue_method(self):
        """Count one more call waiting for an answer; False (not counted) if too many wait."""
        if self.max_pending_methods is not None and (
            self.pending_methods >= self.max_pending_methods
        ):
            return False
        self.pending_methods += 1
        return True

    def method_done(self):
        """A call counted by :meth:`queue_method` has been answered."""
        self.pending_methods -= 1

    def refuse_method(self, name, this):
        """The error for calling method ``name`` now, or None if it may run.

        ``this`` is the connection's :class:`ddp.api.Context` (its ``connection_id``,
        ``user_id`` and ``client_address``).
        """
        return refuse("method", name, this, self.rate_limiter)

    def refuse_subscription(self, name, this, active):
        """The error for subscribing to ``name`` with ``active`` subscriptions, or None."""
        wait = self.rate_limiter.check(
            "subscription", name, this.connection_id, this.user_id, this.client_address
        )
        if wait is not None:
            return too_many_requests(wait)
        if self.max_subscriptions is not None and active >= self.max_subscriptions:
            return too_many_subscriptions(self.max_subscriptions)
        return None
