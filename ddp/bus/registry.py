"""The shared subscription registry (tables ``ddp_server`` and ``ddp_subscription``).

Which distinct subscriptions (publication + parameters + user) are live, on which
servers: a writing process reads it to decide, once per change, which of them a row
belongs to, whatever the number of clients and servers. A crashed server's rows stop
costing writers after ``DDP["SERVER_TIMEOUT"]`` and are deleted by the next live server's
heartbeat; recovering needs no ``migrate``.

Writers read it with :func:`live_subscriptions`; each ``ddpserver`` maintains its rows
through :class:`ServerRegistration`. A server's heartbeat runs every
``DDP["SERVER_HEARTBEAT"]`` seconds; writers ignore servers silent for longer than
``DDP["SERVER_TIMEOUT"]``, and live servers delete them.

Ordering: a writer takes :data:`LOCK` shared (for its whole transaction) before reading
the registry, and a server takes it exclusive to insert a row. So a row is visible to
every writer that has not yet read the registry, rows commit in id order, and a writer
that could not see a row committed before that row did.
"""

import hashlib
import os
import secrets
import socket

from django.db import connections, transaction

from ddp.conf import ddp_settings
from ddp.protocol import dumps, to_ejson

#: Advisory lock id shared by writers and servers ("DDP!" in ASCII).
LOCK = 0x44445021


def subscription_key(publication, params, user_id):
    """A short stable key for a distinct subscription: publication + parameters + user."""
    text = dumps([publication, to_ejson(list(params)), user_id])
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def live_subscriptions(collection_names, using="default"):
    """Rows ``(id, key, publication, params, user_id, collections)`` of live servers whose
    subscriptions publish to any of ``collection_names``, within the writer's transaction."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [LOCK])
        cursor.execute(
            "SELECT DISTINCT ON (s.key) s.id, s.key, s.publication, s.params, s.user_id,"
            " s.collections FROM ddp_subscription s JOIN ddp_server v ON v.id = s.server_id"
            " WHERE v.heartbeat > now() - make_interval(secs => %s)"
            " AND s.collections ?| %s ORDER BY s.key, s.id DESC",
            [ddp_settings.SERVER_TIMEOUT, list(collection_names)],
        )
        return cursor.fetchall()


class ServerRegistration:
    """This ``ddpserver``'s row and its distinct subscriptions' rows.

    Every method runs SQL on the calling thread's connection: call them from the
    database pool's workers.
    """

    def __init__(self):
        self.server_id = secrets.token_hex(8)

    def start(self):
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "INSERT INTO ddp_server (id, host, pid, started, heartbeat)"
                " VALUES (%s, %s, %s, now(), now())",
                [self.server_id, socket.gethostname(), os.getpid()],
            )

    def beat(self):
        """Prove this server alive, and delete servers that stopped proving it.

        Returns True when this server had been taken for dead (a long stall) and deleted
        by a peer: its subscriptions must then be registered again, and re-run.
        """
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "UPDATE ddp_server SET heartbeat = now() WHERE id = %s", [self.server_id]
            )
            revived = cursor.rowcount == 0
            if revived:
                self.start()
            cursor.execute(
                "DELETE FROM ddp_server WHERE heartbeat < now() - make_interval(secs => %s)",
                [2 * ddp_settings.SERVER_TIMEOUT],
            )
        return revived

    def add(self, key, publication, params, user_id, collections):
        """Insert (or find) the row of a distinct subscription; return its id."""
        with transaction.atomic(using="default"), connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
            cursor.execute(
                "INSERT INTO ddp_subscription"
                " (server_id, key, publication, params, user_id, collections)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (server_id, key) DO UPDATE SET key = EXCLUDED.key RETURNING id",
                [
                    self.server_id,
                    key,
                    publication,
                    dumps(to_ejson(list(params))),
                    user_id,
                    dumps(sorted(collections)),
                ],
            )
            return cursor.fetchone()[0]

    def remove(self, key):
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "DELETE FROM ddp_subscription WHERE server_id = %s AND key = %s",
                [self.server_id, key],
            )

    def stop(self):
        with connections["default"].cursor() as cursor:
            cursor.execute("DELETE FROM ddp_server WHERE id = %s", [self.server_id])
