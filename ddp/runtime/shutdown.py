"""The one way a server closes its clients when it stops, whatever their transport.

Each client is closed once its request in flight has answered (the DDP runtime's
:meth:`~ddp.runtime.connection.ConnectionRuntime.shut_down`; an xhr SockJS session once its
receiving request has carried the close frame), one by one ``pause`` seconds apart, so
that they reconnect to other servers gradually rather than all at once.
"""


def close_all(connections, code, reason, pause, driver):
    """Call ``shut_down(code, reason)`` on each of ``connections`` (a live set), ``pause``
    seconds of ``driver``'s apart."""
    for n, connection in enumerate(list(connections)):
        if n:
            driver.sleep(pause)
        connection.shut_down(code, reason)
