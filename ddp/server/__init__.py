"""The server: eventlet WSGI app serving ``/websocket`` and Django on one port.

Only :mod:`ddp.server.eventlet_driver` imports eventlet. Everything else here is written
against the standard library's ``threading`` and ``queue``, which the driver turns green
by monkey-patching before Django opens anything.
"""
