"""Frames built once for many clients are the frames wsproto would build for each."""

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import TextMessage

from ddp.websocket import text_frame

pytestmark = pytest.mark.quick


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 300_000])
def test_text_frame_matches_wsproto(size):
    text = ("é" if size % 2 else "x") * size
    server = Connection(ConnectionType.SERVER, extensions=[])
    assert server.state is ConnectionState.OPEN
    assert text_frame(text) == server.send(TextMessage(data=text))
