"""One bound on what waits for a client: the runtime's outbox and what its transport holds
(an xhr session's messages waiting for the next poll) count together."""

import logging

import pytest
from django.test import override_settings

from ddp import metrics
from ddp.runtime.connection import ConnectionRuntime
from ddp.runtime.outgoing import Life
from ddp.testing.driver import FakeDriver

pytestmark = pytest.mark.django_db

SLOW = "ddp_slow_client_disconnects_total"


class Unpolled:
    """An xhr session whose client stopped polling: it takes every message at once, and
    keeps it for a poll that never comes."""

    environ = {}

    def __init__(self):
        self.waiting = []
        self.aborts = 0

    def send_now(self, texts):
        self.waiting.extend(texts)
        return b""

    def backlog(self):
        return sum(map(len, self.waiting)), len(self.waiting)

    def abort(self):
        self.aborts += 1

    def close(self, code, reason):
        pass


@override_settings(DDP={"OUTBOX_MAX_MESSAGES": 10})
def test_a_client_that_stops_polling_is_cut_off_once_at_the_outboxs_bound(caplog):
    driver = FakeDriver()
    transport = Unpolled()
    connection = ConnectionRuntime(transport, lambda function, *args: function(*args), None, driver)
    before = metrics.counters[SLOW]
    with caplog.at_level(logging.WARNING, "ddp.server"):
        for _ in range(10):
            connection._enqueue("x")
            driver.run()  # the flusher hands it to the session: the outbox is empty again
        assert transport.waiting == ["x"] * 10
        assert transport.aborts == 0
        connection._enqueue("x")
        connection._enqueue("x")
    assert transport.aborts == 1
    assert connection.life is Life.CUT_OFF
    assert metrics.counters[SLOW] - before == 1
    (warning,) = [r.getMessage() for r in caplog.records if "Disconnecting slow" in r.getMessage()]
    assert warning.endswith(": 10 messages, 10 bytes waiting")
