"""Limits on what one client may ask (ddp.ratelimit): Meteor's DDPRateLimiter and our bounds.

The first part tests the limiter alone, with an injected clock. ``SessionLimitsTests`` at the
end needs the session hooks and the settings (``RATE_LIMITS``, ``MESSAGES_PER_SECOND``,
``MESSAGE_BURST``, ``MAX_SUBSCRIPTIONS``, ``MAX_PENDING_METHODS``) wired into ``ddp/session.py``
and ``ddp/conf.py``; run it with ``-k SessionLimitsTests``.
"""

import json
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from ddp import MeteorError
from ddp.api import NoDocuments, Registry
from ddp.ratelimit import (
    POLICY_VIOLATION,
    TOO_MANY_MESSAGES,
    ConnectionLimits,
    RateLimiter,
    Rule,
    TokenBucket,
    shared_rate_limiter,
    too_many_pending_methods,
    too_many_requests,
    too_many_subscriptions,
)
from ddp.testing import DDPTestCase
from ddp.testing.client import DDPClient

#: Meteor's default accounts rule (PROTOCOL.md A6), as ``DDP["RATE_LIMITS"]`` writes it.
ACCOUNTS_RULE = {
    "match": {
        "type": "method",
        "name": ["login", "createUser", "resetPassword", "forgotPassword"],
        "connection_id": True,
    },
    "limit": 5,
    "interval_ms": 10_000,
}
#: The defaults: Meteor's rule with changePassword, and password checks per client address.
DEFAULT_RULES = [
    {
        **ACCOUNTS_RULE,
        "match": {
            **ACCOUNTS_RULE["match"],
            "name": ["login", "createUser", "changePassword", "resetPassword", "forgotPassword"],
        },
    },
    {"match": {"type": "password", "client_address": True}, "limit": 30, "interval_ms": 10_000},
]


class Clock:
    """A clock that moves only when told: seconds, as ``time.monotonic``."""

    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


def method_rule(limit=2, interval_ms=10_000, **match):
    return Rule({"type": "method", **match}, limit, interval_ms)


def calls(limiter, count, name="m", connection_id="c1", user_id=None, kind="method"):
    return [limiter.check(kind, name, connection_id, user_id) for _ in range(count)]


# -- the error ------------------------------------------------------------------------


@pytest.mark.parametrize(("ms", "seconds"), [(10_000, 10), (9_001, 10), (1_500, 2), (1, 1), (0, 0)])
def test_too_many_requests_is_meteors_error_word_for_word(ms, seconds):
    reason = (
        f"Error, too many requests. Please slow down. You must wait {seconds} seconds "
        "before trying again."
    )
    assert too_many_requests(ms).to_dict() == {
        "isClientSafe": True,
        "error": "too-many-requests",
        "reason": reason,
        "details": {"timeToReset": ms},
        "message": f"{reason} [too-many-requests]",
        "errorType": "Meteor.Error",
    }


# -- rules ----------------------------------------------------------------------------


def test_rule_keys_are_the_values_of_the_fields_it_names():
    rule = Rule(
        {"type": "method", "name": ["login", "createUser"], "connection_id": True, "user_id": None},
        5,
        10_000,
    )
    event = {"type": "method", "name": "login", "connection_id": "c1", "user_id": "7"}
    assert rule.key(event) == ("method", "login", "c1")
    assert rule.key({**event, "name": "logout"}) is None
    assert rule.key({**event, "type": "subscription"}) is None


def test_true_matches_anonymous_and_callables_pick_names():
    rule = Rule({"name": lambda name: name.startswith("admin."), "user_id": True}, 1, 1_000)
    event = {"type": "method", "connection_id": "c1", "user_id": None}
    assert rule.key({**event, "name": "admin.wipe"}) == ("admin.wipe", None)
    assert rule.key({**event, "name": "public.read"}) is None


@pytest.mark.parametrize(
    ("match", "limit", "interval_ms", "error"),
    [
        ({"ip": True}, 1, 1_000, ValueError),
        ({"name": 5}, 1, 1_000, TypeError),
        ({"name": False}, 1, 1_000, TypeError),
        ({"name": "x"}, 0, 1_000, ValueError),
        ({"name": "x"}, 1, 0, ValueError),
    ],
)
def test_rules_that_would_never_limit_are_refused(match, limit, interval_ms, error):
    with pytest.raises(error):
        Rule(match, limit, interval_ms)


# -- the limiter ----------------------------------------------------------------------


def test_limit_calls_per_window_then_time_to_reset_counts_down():
    clock = Clock()
    limiter = RateLimiter([method_rule(limit=5, interval_ms=10_000, connection_id=True)], clock)
    assert calls(limiter, 5) == [None] * 5
    assert calls(limiter, 1) == [10_000]
    clock.now += 2.5
    assert calls(limiter, 1) == [7_500]
    clock.now += 7.499
    assert calls(limiter, 1) == [1]


def test_a_new_window_opens_at_the_first_call_after_the_last_ended():
    clock = Clock()
    limiter = RateLimiter([method_rule(limit=2, interval_ms=1_000, connection_id=True)], clock)
    assert calls(limiter, 3) == [None, None, 1_000]
    clock.now += 1.0
    assert calls(limiter, 3) == [None, None, 1_000]
    clock.now += 5.0
    assert calls(limiter, 1) == [None]
    clock.now += 0.25
    assert calls(limiter, 2) == [None, 750]


def test_refused_calls_count_too():
    clock = Clock()
    limiter = RateLimiter([method_rule(limit=1, interval_ms=1_000, connection_id=True)], clock)
    assert calls(limiter, 4) == [None, 1_000, 1_000, 1_000]


def test_per_connection_keys_do_not_share_a_count():
    limiter = RateLimiter([method_rule(limit=1, connection_id=True)], Clock())
    assert calls(limiter, 2, connection_id="c1") == [None, 10_000]
    assert calls(limiter, 1, connection_id="c2") == [None]


def test_per_user_keys_count_every_connection_of_the_user():
    limiter = RateLimiter([method_rule(limit=2, user_id=True)], Clock())
    assert calls(limiter, 1, connection_id="c1", user_id="7") == [None]
    assert calls(limiter, 1, connection_id="c2", user_id="7") == [None]
    assert calls(limiter, 1, connection_id="c3", user_id="7") == [10_000]
    assert calls(limiter, 1, connection_id="c1", user_id="8") == [None]
    # Anonymous calls share the user id None: a rule on user_id alone counts them together.
    assert calls(limiter, 3, connection_id="c4", user_id=None) == [None, None, 10_000]


def test_a_name_list_counts_each_name_apart_as_meteors_function_matcher():
    limiter = RateLimiter([Rule(**ACCOUNTS_RULE)], Clock())
    assert calls(limiter, 6, name="login") == [None] * 5 + [10_000]
    assert calls(limiter, 6, name="createUser") == [None] * 5 + [10_000]
    assert calls(limiter, 10, name="logout") == [None] * 10
    assert calls(limiter, 10, name="login", kind="subscription") == [None] * 10


def test_a_rule_on_client_address_counts_each_address_apart_over_connections():
    limiter = RateLimiter([Rule({"type": "password", "client_address": True}, 2, 1_000)])
    checks = [limiter.check("password", "login", f"conn{n}", None, "10.0.0.1") for n in range(3)]
    assert checks == [None, None, 1_000]
    assert limiter.check("password", "login", "conn9", None, "10.0.0.2") is None
    assert limiter.check("method", "login", "conn9", None, "10.0.0.1") is None


def test_the_longest_wait_of_every_rule_exceeded_is_returned():
    clock = Clock()
    short = method_rule(limit=1, interval_ms=1_000, connection_id=True)
    long = method_rule(limit=1, interval_ms=60_000, name="m")
    limiter = RateLimiter([short, long], clock)
    assert calls(limiter, 2) == [None, 60_000]
    clock.now += 30.0
    assert calls(limiter, 1) == [30_000]  # the short rule's new window allows it; not the long


def test_finished_windows_are_dropped_so_memory_follows_recent_clients():
    clock = Clock()
    limiter = RateLimiter([method_rule(limit=1, interval_ms=1_000, connection_id=True)], clock)
    for n in range(1_000):
        limiter.check("method", "m", f"c{n}", None)
    assert len(limiter._windows[0]) == 1_000
    clock.now += 1.0
    limiter.check("method", "m", "late", None)
    assert list(limiter._windows[0]) == [("method", "late")]


def test_settings_build_rules_from_keyword_dicts():
    limiter = RateLimiter.from_settings([ACCOUNTS_RULE])
    assert limiter.rules == (Rule(**ACCOUNTS_RULE),)
    with pytest.raises(TypeError):
        RateLimiter.from_settings([{"match": {}, "limit": 1, "interval": 1_000}])


def test_one_shared_limiter_per_setting_value():
    first = shared_rate_limiter([ACCOUNTS_RULE])
    assert shared_rate_limiter([dict(ACCOUNTS_RULE)]) is first
    other = shared_rate_limiter([])
    assert other is not first and other.rules == ()
    assert shared_rate_limiter([ACCOUNTS_RULE]) is not first  # rebuilt: fresh counters


# -- the message budget ---------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.25
    assert bucket.take() is False  # half a token
    clock.now += 0.25
    assert [bucket.take() for _ in range(2)] == [True, False]
    clock.now += 3600
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]  # never over burst


def test_a_flood_latches_until_the_connection_is_gone():
    clock = Clock()
    limits = ConnectionLimits(messages_per_second=1, message_burst=2, clock=clock)
    assert [limits.admit_message() for _ in range(3)] == [True, True, False]
    assert limits.flooded
    clock.now += 3600
    assert limits.admit_message() is False


def test_none_turns_each_limit_off():
    limits = ConnectionLimits()
    this = SimpleNamespace(connection_id="c1", user_id=None, client_address=None)
    assert all(limits.admit_message() for _ in range(100_000))
    assert all(limits.queue_method() for _ in range(10_000))
    assert limits.refuse_subscription("s", this, active=10**9) is None
    assert limits.refuse_method("m", this) is None


# -- per-connection counts ------------------------------------------------------------


def test_pending_methods_are_bounded_and_released():
    limits = ConnectionLimits(max_pending_methods=2)
    assert [limits.queue_method() for _ in range(3)] == [True, True, False]
    assert limits.pending_methods == 2
    limits.method_done()
    assert limits.queue_method() is True
    assert limits.queue_method() is False


def test_subscriptions_over_the_maximum_get_an_error_of_their_own_with_no_time_to_wait():
    """Not too-many-requests with timeToReset 0: a client that retries after timeToReset
    would retry at once, for ever."""
    limits = ConnectionLimits(max_subscriptions=2)
    this = SimpleNamespace(connection_id="c1", user_id=None, client_address=None)
    assert limits.refuse_subscription("s", this, active=1) is None
    error = limits.refuse_subscription("s", this, active=2)
    assert (error.error, error.details) == ("too-many-subscriptions", {"limit": 2})
    assert "timeToReset" not in error.to_dict().get("details", {})


def test_connection_limits_consult_the_rules_with_the_connections_ids():
    clock = Clock()
    rules = RateLimiter(
        [
            Rule({"type": "subscription", "name": "s", "user_id": True}, 1, 5_000),
            method_rule(limit=1, connection_id=True),
        ],
        clock,
    )
    limits = ConnectionLimits(rules, max_subscriptions=100)
    alice = SimpleNamespace(connection_id="c1", user_id="alice", client_address=None)
    assert limits.refuse_subscription("s", alice, active=0) is None
    assert limits.refuse_subscription("s", alice, active=1).details == {"timeToReset": 5_000}
    assert limits.refuse_subscription("t", alice, active=1) is None
    assert limits.refuse_method("m", alice) is None
    assert limits.refuse_method("m", alice).details == {"timeToReset": 10_000}


def test_limits_from_settings_read_every_name():
    settings = SimpleNamespace(
        RATE_LIMITS=[ACCOUNTS_RULE],
        MESSAGES_PER_SECOND=50,
        MESSAGE_BURST=70,
        MAX_SUBSCRIPTIONS=3,
        MAX_PENDING_METHODS=4,
    )
    limits = ConnectionLimits.from_settings(settings)
    assert limits.rate_limiter is shared_rate_limiter([ACCOUNTS_RULE])
    assert (limits.messages.rate, limits.messages.burst) == (50, 70)
    assert (limits.max_subscriptions, limits.max_pending_methods) == (3, 4)
    unlimited = SimpleNamespace(**{**vars(settings), "MESSAGES_PER_SECOND": None})
    assert ConnectionLimits.from_settings(unlimited).messages is None


# -- in a session (needs the hooks in ddp/session.py and the settings in ddp/conf.py) ------


def _empty_publication(name):
    return type(name, (NoDocuments,), {"name": name})


def _registry(calls_made):
    """Methods and publications that need no database, and count the calls that ran."""
    registry = Registry()
    registry.register([_empty_publication(name) for name in ("a", "b", "c")])

    @registry.method("count")
    def count(this):
        calls_made.append(this.connection_id)
        return len(calls_made)

    return registry


class SessionLimitsTests(DDPTestCase):
    """The limits as a client sees them. Needs the session hooks and settings in place."""

    def setUp(self):
        self.clock = Clock()
        self.ran = []
        self.registry = _registry(self.ran)

    def limited_client(self, limits, api=False):
        """A connected client whose session has ``limits``; its methods and publications are
        the project's (``api``) or the counting ones above."""
        client = DDPClient(bus=self.ddp_bus(), registry=None if api else self.registry)
        client.session.limits = limits
        return client

    def test_documented_defaults(self):
        from ddp.conf import ddp_settings

        assert ddp_settings.RATE_LIMITS == DEFAULT_RULES
        assert ddp_settings.MESSAGES_PER_SECOND == 100
        assert ddp_settings.MESSAGE_BURST == 20_000
        assert ddp_settings.MAX_SUBSCRIPTIONS == 1_000
        assert ddp_settings.MAX_PENDING_METHODS == 100

    def test_settings_reach_every_new_session(self):
        rule = {"match": {"type": "method", "name": "count"}, "limit": 3, "interval_ms": 500}
        ddp = {
            "RATE_LIMITS": [rule],
            "MESSAGES_PER_SECOND": 7,
            "MESSAGE_BURST": 9,
            "MAX_SUBSCRIPTIONS": 11,
            "MAX_PENDING_METHODS": 13,
        }
        with override_settings(DDP=ddp):
            limits = DDPClient(bus=self.ddp_bus()).session.limits
        assert limits.rate_limiter.rules == (Rule(**rule),)
        assert (limits.messages.rate, limits.messages.burst) == (7, 9)
        assert (limits.max_subscriptions, limits.max_pending_methods) == (11, 13)

    def test_a_method_over_its_rule_gets_meteors_error_then_updated_and_does_not_run(self):
        rules = RateLimiter([method_rule(limit=2, name="count", connection_id=True)], self.clock)
        client = self.limited_client(ConnectionLimits(rules))
        assert [client.call("count"), client.call("count")] == [1, 2]
        client.send({"msg": "method", "id": "third", "method": "count", "params": []})
        client.assert_messages(
            [
                {"msg": "result", "id": "third", "error": too_many_requests(10_000).to_dict()},
                {"msg": "updated", "methods": ["third"]},
            ]
        )
        assert len(self.ran) == 2
        self.clock.now += 10.0
        assert client.call("count") == 3

    def test_unknown_methods_get_404_and_are_not_counted(self):
        rules = RateLimiter([method_rule(limit=1, connection_id=True)], self.clock)
        client = self.limited_client(ConnectionLimits(rules))
        for _ in range(3):
            with pytest.raises(MeteorError) as info:
                client.call("no.such.method")
            assert info.value.error == 404
        assert client.call("count") == 1
        with pytest.raises(MeteorError) as info:
            client.call("count")
        assert info.value.error == "too-many-requests"
        assert info.value.details == {"timeToReset": 10_000}

    def test_a_subscription_over_its_rule_gets_nosub_with_meteors_error(self):
        rule = Rule({"type": "subscription", "name": "a", "connection_id": True}, 1, 5_000)
        client = self.limited_client(ConnectionLimits(RateLimiter([rule], self.clock)))
        first = client.subscribe("a")
        client.send({"msg": "sub", "id": first, "name": "a", "params": []})  # S3: ignored
        client.unsubscribe(first)
        client.send({"msg": "sub", "id": "again", "name": "a", "params": []})
        client.assert_messages(
            [{"msg": "nosub", "id": "again", "error": too_many_requests(5_000).to_dict()}]
        )
        assert client.subscribe("b")
        client.send({"msg": "sub", "id": "x", "name": "nope", "params": []})
        assert client.assert_nosub("x", error=404)

    def test_subscriptions_over_the_maximum_get_nosub_until_one_ends(self):
        client = self.limited_client(ConnectionLimits(max_subscriptions=2))
        first = client.subscribe("a")
        client.subscribe("b")
        client.send({"msg": "sub", "id": "third", "name": "c", "params": []})
        client.assert_messages(
            [{"msg": "nosub", "id": "third", "error": too_many_subscriptions(2).to_dict()}]
        )
        client.unsubscribe(first)
        assert client.subscribe("c")
        assert sorted(client.session.subs) == ["2", "3"]

    def test_methods_beyond_the_pending_maximum_are_answered_at_once(self):
        client = self.limited_client(ConnectionLimits(max_pending_methods=2))
        session = client.session
        queued = []
        for call_id in ("q1", "q2", "q3"):
            message = {"msg": "method", "id": call_id, "method": "count", "params": []}
            queued += session.receive(json.dumps(message))
        assert [request.id for request in queued] == ["q1", "q2"]
        client.assert_messages(
            [
                {"msg": "result", "id": "q3", "error": too_many_pending_methods(2).to_dict()},
                {"msg": "updated", "methods": ["q3"]},
            ]
        )
        for request in queued:
            session.handle(request)
        client.assert_messages(
            [
                {"msg": "result", "id": "q1", "result": 1},
                {"msg": "updated", "methods": ["q1"]},
                {"msg": "result", "id": "q2", "result": 2},
                {"msg": "updated", "methods": ["q2"]},
            ]
        )
        assert session.limits.pending_methods == 0
        assert client.call("count") == 3

    def test_a_flood_closes_the_connection_and_nothing_after_it_runs(self):
        closes, sent = [], []
        limits = ConnectionLimits(messages_per_second=1, message_burst=3, clock=self.clock)
        client = self.limited_client(limits)
        session = client.session
        session._send, session._close = sent.append, lambda *args: closes.append(args)
        ping = json.dumps({"msg": "ping", "id": "p"})
        call = json.dumps({"msg": "method", "id": "late", "method": "count", "params": []})
        assert [session.receive(ping) for _ in range(3)] == [[], [], []]
        assert len(sent) == 3
        assert session.receive(call) == []
        assert closes == [(POLICY_VIOLATION, TOO_MANY_MESSAGES)]
        self.clock.now += 3600
        assert session.receive(call) == [] and session.receive(ping) == []
        assert len(sent) == 3 and closes == [(1008, "Too many messages")] and self.ran == []

    def test_the_in_process_client_sees_the_close(self):
        limits = ConnectionLimits(messages_per_second=1, message_burst=1, clock=self.clock)
        client = self.limited_client(limits)
        client.send({"msg": "ping"})
        client.send({"msg": "ping"})
        assert client.closed
        with pytest.raises(AssertionError, match="closed"):
            client.send({"msg": "ping"})

    def test_meteors_accounts_rule_by_default(self):
        from ddp.conf import ddp_settings

        rules = RateLimiter.from_settings(ddp_settings.RATE_LIMITS, self.clock)
        first, second = (self.limited_client(ConnectionLimits(rules), api=True) for _ in range(2))
        wrong = {"user": {"username": "nobody"}, "password": "x"}
        for name, params in (("login", wrong), ("createUser", {"username": "u", "password": "x"})):
            for _ in range(5):
                with pytest.raises(MeteorError) as info:
                    first.call(name, params)
                assert info.value.error == 403
            with pytest.raises(MeteorError) as info:
                first.call(name, params)
            assert (info.value.error, info.value.details) == (
                "too-many-requests",
                {"timeToReset": 10_000},
            )
        with pytest.raises(MeteorError) as info:
            second.call("login", wrong)
        assert info.value.error == 403
        assert first.call("test.echo", 1) == [1]

    def test_a_per_user_rule_counts_each_users_connections_together(self):
        User.objects.create_user("alice", "alice@example.com", "pw")
        rules = RateLimiter([method_rule(limit=2, name="test.echo", user_id=True)], self.clock)
        clients = [self.limited_client(ConnectionLimits(rules), api=True) for _ in range(3)]
        for client in clients[:2]:
            client.call("login", {"user": {"username": "alice"}, "password": "pw"})
        assert clients[0].call("test.echo", "a") == ["a"]
        assert clients[1].call("test.echo", "b") == ["b"]
        with pytest.raises(MeteorError) as info:
            clients[1].call("test.echo", "c")
        assert info.value.error == "too-many-requests"
        assert clients[2].call("test.echo", "anonymous") == ["anonymous"]
