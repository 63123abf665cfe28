"""A publication's initial send that waits for room in the client's outbox sleeps until
the writer drains it: no polling, on the deterministic driver's clock."""

import pytest
from django.test import override_settings

from ddp.runtime.connection import ConnectionRuntime
from ddp.testing.driver import FakeDriver

pytestmark = pytest.mark.django_db

MESSAGE = "x" * 20_000


class SlowSocket:
    """A client that reads one write a second: the socket takes nothing at once, and each
    waiting write takes a second of the driver's clock."""

    environ = {}

    def __init__(self, driver):
        self.driver = driver
        self.looks = 0  # how often the waiting send looked at the transport
        self.writes = []

    def send_now(self, texts):
        return "".join(texts).encode()

    def send_bytes(self, data):
        self.driver.sleep(1)
        self.writes.append(len(data))

    def send_texts(self, texts):
        self.driver.sleep(1)
        self.writes.append(sum(map(len, texts)))

    def backlog(self):
        self.looks += 1
        return 0, 0

    def close(self, code, reason):
        pass

    def abort(self):
        pass


@override_settings(DDP={"OUTBOX_MAX_BYTES": 190_000})
def test_a_send_waiting_for_room_wakes_when_the_writer_drains_and_never_polls():
    driver = FakeDriver()
    transport = SlowSocket(driver)
    connection = ConnectionRuntime(transport, lambda function, *args: function(*args), None, driver)
    waited = []

    def initial_send():
        for _ in range(9):  # 180,000 characters: nearly all of the outbox
            connection._enqueue(MESSAGE)
        transport.looks = 0  # each message's bound counts the backlog: not the wait's looks
        waited.append(connection.wait_for_room(driver.clock() + 60))

    driver.spawn(initial_send)
    driver.run()
    assert waited == []  # the flusher left the rest to the writer, which writes slowly
    driver.advance(1)
    assert waited == [] and len(transport.writes) == 1  # still over half full
    driver.advance(1)
    assert waited == [True] and len(transport.writes) == 2
    assert driver.clock() == 1002.0
    # It looked when it began and after each write; a 5 ms poll would have looked 400 times.
    assert transport.looks <= 3
    assert connection.life.name == "OPEN"
