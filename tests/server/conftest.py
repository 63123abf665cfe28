"""What the tests of the server over a real socket share: clients of the module's
``ddp_live_server`` (the plugin's), closed after each test."""

import pytest

from ddp.testing import WebSocketDDPClient


@pytest.fixture
def client(ddp_live_server):
    """A client past the DDP handshake."""
    client = WebSocketDDPClient(ddp_live_server.ws_url)
    yield client
    client.close()


@pytest.fixture
def raw(ddp_live_server):
    """A client with the websocket open and no DDP message sent yet."""
    client = WebSocketDDPClient(ddp_live_server.ws_url, connect=False)
    yield client
    client.close()
