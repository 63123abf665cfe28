"""A held session's grace period runs on the driver's clock: tests move it, not sleep through it."""

import pytest

from ddp.protocol import Connected
from ddp.protocol.connection import Resume
from ddp.server.resumption import Holder
from ddp.session import Session
from ddp.testing.driver import FakeDriver


class Away:
    """A connected session whose connection is gone, held on a fake clock for 15 s."""

    def __init__(self):
        self.driver, self.torn_down = FakeDriver(), []
        self.holder = Holder(self.driver)
        self.session = Session(lambda text: None, lambda *args: None, lambda job, *a: job(*a))
        for request in self.session.receive('{"msg":"connect","version":"1","support":["1"]}'):
            self.session.handle(request)
        self.session.teardown = lambda: self.torn_down.append(self.session.connection.session_id)
        self.holder.release(self.holder.hold(self.session, []))


@pytest.fixture
def away(settings):
    settings.DDP = {"DISCONNECT_GRACE_PERIOD": 15}
    return Away()


def test_a_held_session_expires_at_the_end_of_its_grace_period_and_not_before(away):
    away.driver.advance(14.9)
    assert (len(away.holder), away.torn_down) == (1, [])
    away.driver.advance(1.1)  # the sweep looks every quarter of the period, at most every second
    assert (len(away.holder), away.torn_down) == (0, [away.session.connection.session_id])


def test_a_client_back_within_the_grace_period_gets_its_session(away):
    away.driver.advance(14)
    session = away.session
    resume = Resume(session.connection.session_id, session.sent, Connected("new"))
    held = away.holder.take(resume, session.connection.version)
    assert held is not None and held.session is session
    away.driver.advance(60)
    assert away.torn_down == []
