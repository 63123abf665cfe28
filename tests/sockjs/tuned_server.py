"""``python -m tests.sockjs.tuned_server ADDRPORT``: SockJS services with options the standard
test server cannot have, so that heartbeats and overflows are seen within a test.

* ``/echo``: 0.2 s heartbeats and a 0.3 s pong timeout;
* ``/flood``: at most 100 messages waiting, and 1000 bytes a message; a message ``"flood"``
  makes it send 100,000, any other is echoed.
"""

from ddp.server import eventlet_driver

eventlet_driver.monkey_patch()

import logging  # noqa: E402
import sys  # noqa: E402

from django.conf import settings  # noqa: E402

from ddp.server import sockjs_testserver as testserver  # noqa: E402
from ddp.sockjs import websocket_transport  # noqa: E402


class Flood(testserver.Echo):
    def on_message(self, session, text):
        if text != "flood":
            return super().on_message(session, text)
        for _ in range(100_000):
            session.send("x" * 1000)


websocket_transport.PONG_TIMEOUT = 0.3
settings.configure()
logging.basicConfig(level=logging.WARNING)
addr, port = testserver.parse_addrport(sys.argv[1])
sock = eventlet_driver.listen(addr, port)
live = set()
app = testserver.Services(
    [
        testserver.hosted_server(testserver.Echo(), "/echo", live, heartbeat_delay=0.2),
        testserver.hosted_server(
            Flood(), "/flood", live, max_queued_messages=100, max_message_size=1000
        ),
    ],
    live,
)
eventlet_driver.serve(
    sock,
    app,
    max_connections=100,
    on_started=lambda: print(f"listening on http://{addr}:{sock.getsockname()[1]}/", flush=True),
)
