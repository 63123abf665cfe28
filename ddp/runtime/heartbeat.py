"""Heartbeats for every connection from one thread (H4), and the transports' own.

A thread per connection that sleeps between pings costs about 14 KB while it sleeps; one
thread that looks at each connection a few times per interval costs nothing per
connection. A ping goes out between ``HEARTBEAT_INTERVAL`` and a quarter of it more after
the client was last heard from.
"""

import logging

from ddp.conf import ddp_settings

logger = logging.getLogger("ddp.server")


def tick():
    """Seconds between two looks at the connections."""
    return min(ddp_settings.HEARTBEAT_INTERVAL, ddp_settings.HEARTBEAT_TIMEOUT) / 4


def keep(connections, driver, every=None):
    """Call ``beat(now)`` on each of ``connections`` (a live set) forever, every ``every``
    seconds (by default :func:`tick`) of ``driver``'s clock. A transport's own heartbeat (a
    SockJS websocket's pings) is driven from the same beat, so ``every`` is a fraction of
    its times too."""
    while True:
        driver.sleep(every or tick())
        now = driver.clock()
        for connection in list(connections):
            try:
                connection.beat(now)
            except Exception:
                logger.exception("Heartbeat failed for a connection")
