"""Changes read from PostgreSQL's logical replication stream, whatever wrote them.

* :mod:`ddp.replication.pgoutput` decodes the binary messages of PostgreSQL's built-in
  ``pgoutput`` plugin into frozen values, with no I/O;
* :mod:`ddp.replication.stream` reads them from a replication slot over psycopg2's
  replication connection without blocking the server's green threads, and tells the slot
  only the positions its consumer has confirmed.

Nothing here imports Django or eventlet: the caller passes the connection parameters and
the function that waits for a socket.
"""
