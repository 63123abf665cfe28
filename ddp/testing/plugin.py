"""The pytest plugin (entry point ``pytest11``: ``ddp``; disable with ``-p no:ddp``).

Fixtures, all named ``ddp_*``; they need pytest-django and import Django only when used:

``ddp_client``
    A connected in-process client; changes made in the test reach it as after a commit.
``ddp_client_factory``
    Call it for more in-process clients on the same test's bus.
``ddp_live_server``
    A real ``ddpserver`` for the test module, on a free port, against the test database.
    Tests that use it need committed data: ``@pytest.mark.django_db(transaction=True)``.
``ddp_live_client``
    A websocket client connected to ``ddp_live_server``.
"""

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ddp.testing.client import DDPClient, WebSocketDDPClient
    from ddp.testing.live import ServerProcess


@pytest.fixture
def ddp_client_factory(db: None) -> Iterator[Callable[..., "DDPClient"]]:
    """Make in-process DDP clients sharing this test's in-memory bus."""
    from ddp.bus.memory import InMemoryBus
    from ddp.bus.producer import use_backend
    from ddp.testing.client import DDPClient

    bus = InMemoryBus()
    previous = use_backend(bus)
    clients = []

    def make(connect: bool = True) -> "DDPClient":
        client = DDPClient(bus=bus, connect=connect)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
    use_backend(previous)


@pytest.fixture
def ddp_client(ddp_client_factory: Callable[..., "DDPClient"]) -> "DDPClient":
    """A connected in-process DDP client."""
    return ddp_client_factory()


@pytest.fixture(scope="module")
def ddp_live_server(django_db_setup: None, django_db_blocker: Any) -> Iterator["ServerProcess"]:
    """A ``ddpserver`` process for this module, serving the test database."""
    from ddp.testing.live import ServerProcess, drop_capture

    with django_db_blocker.unblock():
        server = ServerProcess().start()
    yield server
    server.stop()
    drop_capture()  # the slot "auto" capture made: the test database could not be dropped


@pytest.fixture
def ddp_live_client(ddp_live_server: "ServerProcess") -> Iterator["WebSocketDDPClient"]:
    """A connected websocket DDP client of ``ddp_live_server``."""
    from ddp.testing.client import WebSocketDDPClient

    client = WebSocketDDPClient(ddp_live_server.ws_url)
    yield client
    client.close()
