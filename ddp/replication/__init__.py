"""Changes read from PostgreSQL's logical replication stream, whatever wrote them.

* :mod:`ddp.replication.pgoutput` decodes the binary messages of PostgreSQL's built-in
  ``pgoutput`` plugin into frozen values, with no I/O;
* :mod:`ddp.replication.stream` reads them from a replication slot over psycopg2's
  replication connection without blocking the server's green threads, and tells the slot
  only the positions its consumer has confirmed;
* :mod:`ddp.replication.setup` checks what database capture needs of the
  database and makes the publication and the slot;
* :mod:`ddp.replication.consumer` turns row changes into the documents they change;
* :mod:`ddp.replication.reader` is the one reader a database has, elected among servers.
"""
