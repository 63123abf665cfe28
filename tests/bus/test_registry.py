"""The registry keeps itself fit for the writers' statements, and its match rows follow
its subscriptions."""

import pytest
from django.db import connection

from bookstore.models import Book
from ddp.bus.matching import compile_subscription
from ddp.bus.registry import ServerRegistration, registry_state, subscription_key, tidy
from ddp.testing.driver import FakeDriver

# The oldest and newest Python and Django run these too (CI's quick subset).
pytestmark = pytest.mark.quick


class StatsCursor:
    """A cursor whose ``pg_stat_user_tables`` says what a test wants; it notes the rest."""

    def __init__(self, stats):
        self.stats = stats
        self.executed = []

    def execute(self, sql, params=None):
        self.executed.append(sql)

    def fetchall(self):
        return self.stats


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        ([("ddp_match", False, False), ("ddp_subscription", False, False)], []),
        ([("ddp_match", False, True)], ["ANALYZE ddp_match"]),
        ([("ddp_match", True, True)], ["VACUUM (ANALYZE) ddp_match"]),
        (
            [("ddp_match", True, False), ("ddp_subscription", False, True)],
            ["VACUUM (ANALYZE) ddp_match", "ANALYZE ddp_subscription"],
        ),
    ],
)
def test_the_heartbeat_vacuums_or_analyzes_only_what_changed_much(stats, expected):
    """Thousands of clients subscribing change the tables in seconds; a writer's plan is
    flat in subscriptions only once PostgreSQL knows it, and skips no pile of dead rows."""
    cursor = StatsCursor(stats)
    tidy(cursor)
    assert cursor.executed[1:] == expected


def test_match_rows_come_and_go_with_their_subscription(db):
    registration = ServerRegistration(FakeDriver())
    registration.start()
    pairs = [(Book.objects.filter(title="a"), _book_collection())]
    specs = compile_subscription(pairs)
    key = subscription_key("P", ["a"], None)
    first = registration.add(key, "P", ["a"], None, frozenset(specs), specs)
    # The same subscription again (another client of it) adds no second match row.
    assert registration.add(key, "P", ["a"], None, frozenset(specs), specs) == first
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, collection, template, t, i FROM ddp_match")
        assert cursor.fetchall() == [
            (key, "bookstore.book", specs["bookstore.book"].template, ["a"], [None])
        ]
    state = registry_state(["bookstore.book", "bookstore.author"])
    assert (state.registry, state.live) == (first, {"bookstore.book"}) and state.version > 0
    registration.remove(key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ddp_match")
        assert cursor.fetchone() == (0,)
    assert registry_state(["bookstore.book"]).live == frozenset()
    registration.stop()


def _book_collection():
    from ddp.api import API

    return API.collections["bookstore.book"]
