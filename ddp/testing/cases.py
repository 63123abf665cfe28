"""Django test cases for publications and methods."""

from typing import TYPE_CHECKING, ClassVar

from django.test import TestCase, TransactionTestCase

from ddp.testing.client import DDPClient, WebSocketDDPClient

if TYPE_CHECKING:
    from ddp.bus.memory import InMemoryBus
    from ddp.testing.live import ServerProcess


class DDPTestCase(TestCase):
    """A ``TestCase`` whose ``self.ddp_client()`` sees changes made in the test.

    Each test still runs in a transaction that is rolled back; changes reach the clients
    as they would after a commit in production, in the same order: at once outside
    ``atomic()``, at the end of the outermost block the test opens otherwise, and never
    from a savepoint that rolls back.
    """

    def ddp_client(self, connect: bool = True, client_address: str | None = None) -> DDPClient:
        """A connected in-process client (``connect=False``: not yet connected), which the
        server sees coming from ``client_address``."""
        return DDPClient(bus=self.ddp_bus(), connect=connect, client_address=client_address)

    def ddp_bus(self) -> "InMemoryBus":
        """This test's in-memory bus, installed on first use and removed after the test."""
        bus = getattr(self, "_ddp_bus", None)
        if bus is None:
            from ddp.bus.memory import InMemoryBus
            from ddp.bus.producer import use_backend

            bus = self._ddp_bus = InMemoryBus()
            previous = use_backend(bus)
            self.addCleanup(use_backend, previous)
            self.addCleanup(delattr, self, "_ddp_bus")
        return bus


class DDPLiveServerTestCase(TransactionTestCase):
    """Runs a real ``ddpserver`` (class-wide) against the test database.

    ``self.ddp_client()`` returns a websocket client with the API and assertions of the
    in-process one; changes travel through real NOTIFY. Data the test writes is committed
    (this is a ``TransactionTestCase``), so the server sees it. ``ddpserver_args`` adds
    command-line options; a server that fails to start fails the class with its output.
    """

    #: More ``ddpserver`` command-line options.
    ddpserver_args: ClassVar[tuple[str, ...]] = ()
    #: The running server, for the whole class.
    ddp_server: ClassVar["ServerProcess"]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        from ddp.testing.live import ServerProcess, drop_capture

        # Cleanups run last first: the server stops, then its replication slot goes.
        cls.addClassCleanup(drop_capture)
        cls.ddp_server = ServerProcess(*cls.ddpserver_args).start()
        cls.addClassCleanup(cls.ddp_server.stop)

    def ddp_client(self, connect: bool = True) -> WebSocketDDPClient:
        """A websocket client of the class's server, closed after the test."""
        client = WebSocketDDPClient(self.ddp_server.ws_url, connect=connect)
        self.addCleanup(client.close)
        return client
