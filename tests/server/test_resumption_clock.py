"""A held session's grace period runs on the driver's clock: tests move it, not sleep through it."""

from ddp.protocol import Connected
from ddp.protocol.connection import Resume
from ddp.server.resumption import Holder
from ddp.session import Session
from ddp.testing.driver import FakeDriver


def connected_session(torn_down):
    session = Session(lambda text: None, lambda *args: None, lambda job, *args: job(*args))
    for request in session.receive('{"msg":"connect","version":"1","support":["1"]}'):
        session.handle(request)
    session.teardown = lambda: torn_down.append(session.connection.session_id)
    return session


def test_a_held_session_expires_at_the_end_of_its_grace_period_and_not_before(settings):
    settings.DDP = {"DISCONNECT_GRACE_PERIOD": 15}
    driver, torn_down = FakeDriver(), []
    holder = Holder(driver)
    session = connected_session(torn_down)
    holder.release(holder.hold(session, []))
    driver.advance(14.9)
    assert (len(holder), torn_down) == (1, [])
    driver.advance(1.1)  # the sweep looks every quarter of the period, at most every second
    assert (len(holder), torn_down) == (0, [session.connection.session_id])


def test_a_client_back_within_the_grace_period_gets_its_session(settings):
    settings.DDP = {"DISCONNECT_GRACE_PERIOD": 15}
    driver, torn_down = FakeDriver(), []
    holder = Holder(driver)
    session = connected_session(torn_down)
    holder.release(holder.hold(session, []))
    driver.advance(14)

    resume = Resume(session.connection.session_id, session.sent, Connected("new"))
    held = holder.take(resume, session.connection.version)
    assert held is not None and held.session is session
    driver.advance(60)
    assert torn_down == []
