"""The change path between processes, through PostgreSQL ``NOTIFY``/``LISTEN``.

* :mod:`ddp.bus.capture` turns ``post_save``, ``post_delete`` and ``m2m_changed`` of
  published models into changes, in the process that made them;
* :mod:`ddp.bus.producer` serialises each change once, matches it once against the
  distinct live subscriptions of :mod:`ddp.bus.registry`, and NOTIFYs inside the writer's
  transaction, so PostgreSQL delivers it only on COMMIT, in commit order;
* :mod:`ddp.bus.payload` frames events (version, unique id, chunks under 8000 bytes), and
  :mod:`ddp.bus.signing` signs every notification under ``SECRET_KEY``, so that a database
  role that can NOTIFY cannot forge one;
* :mod:`ddp.bus.listener` is each ``ddpserver``'s one LISTEN connection (a
  :mod:`ddp.bus.listen` connection, as ``ddp_capture``'s and the replication reader's
  are), and :mod:`ddp.bus.hub` hands events to the sessions whose subscriptions need them,
  with no database query, through the session and token tables of :mod:`ddp.bus.sessions`;
* :mod:`ddp.bus.memory` stands in for both ends in one process, for tests, with the same
  :mod:`ddp.bus.sessions` dispatch, and :mod:`ddp.bus.recording` is the file format of
  ``ddp_capture`` and ``ddp_replay``.
"""
