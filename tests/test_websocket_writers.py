"""Writers that meet on one WebSocket take turns, frame by frame, on the driver's events.

The runtime's writer, the heartbeat's ping and the reader's close on a bad frame all write
to a connection; a write to a full socket yields in mid-frame, so another writer must
wait for that frame's end (or, for a ping, give way) rather than cut into it.
"""

import socket

import pytest

from ddp.testing.driver import FakeDriver
from ddp.websocket import FullWriteSocket

pytestmark = pytest.mark.quick


class SlowSocket:
    """A green socket to a slow reader: each byte of a ``sendall`` waits a second."""

    def __init__(self, driver):
        self.driver = driver
        self.written = bytearray()
        self.fd, self._peer = socket.socketpair()

    def close(self):
        self.fd.close()
        self._peer.close()

    def sendall(self, data):
        for byte in data:
            self.driver.sleep(1)
            self.written.append(byte)


def test_writers_wait_for_the_frame_under_way_and_a_ping_gives_way():
    driver = FakeDriver()
    sock = SlowSocket(driver)
    full = FullWriteSocket(sock, driver)
    driver.spawn(full.send, b"abc")
    driver.spawn(full.send, b"XYZ")
    driver.spawn(full.send, b"123")
    driver.advance(1.5)
    assert sock.written == b"a"
    assert full.send_nowait(b"\x89\x00") == 0  # mid-frame: the ping waits for a beat
    driver.advance(10)
    assert sock.written == b"abcXYZ123"
    assert full.send_nowait(b"\x89\x00") == 2  # nobody writes: straight to the socket
    sock.close()
