"""What runs one client's DDP session over any transport, on a driver it is given.

* :mod:`ddp.runtime.driver`: the ``Driver`` protocol (spawn, events, timers, the clock,
  sleeping, waiting for a socket, a thread pool) and the guarantees the runtime relies
  on. The runtime and the bus receive a driver and never import eventlet; the eventlet
  driver (:mod:`ddp.server.eventlet_driver`) is the one production uses, and
  :mod:`ddp.testing.driver` is a deterministic one with a fake clock, for tests.
"""
