"""Settings, read lazily from one ``DDP = {...}`` dict over documented defaults.

``ddp_settings.MAX_MESSAGE_SIZE`` reads ``settings.DDP["MAX_MESSAGE_SIZE"]`` when it is
set and the default below otherwise. Values are looked up on every access, so
``override_settings(DDP=...)`` works in tests.
"""

from django.conf import settings

DEFAULTS = {
    # Largest text frame a client may send, in bytes; bigger frames close with 1009.
    "MAX_MESSAGE_SIZE": 1024 * 1024,
    # Seconds of silence before the server pings, then before it gives up (Meteor: 15 + 15).
    "HEARTBEAT_INTERVAL": 15.0,
    "HEARTBEAT_TIMEOUT": 15.0,
    # Green workers (each with its own database connection) for publications and methods.
    "DB_POOL_SIZE": 4,
    # eventlet.wsgi accepts only 1,024 connections unless told otherwise.
    "MAX_CONNECTIONS": 100_000,
    # permessage-deflate triples the cost per frame and adds ~120 KB per connection.
    "WEBSOCKET_COMPRESSION": False,
    # Seconds between a ddpserver's registry heartbeats, and of silence after which
    # writers ignore its subscriptions (and live servers delete them).
    "SERVER_HEARTBEAT": 5.0,
    "SERVER_TIMEOUT": 30.0,
    # A server registering a new distinct subscription waits for the registry's lock in
    # turns of REGISTRY_LOCK_TIMEOUT seconds (its lock_timeout): writers queue behind
    # its request, so no write waits longer than that for a subscription. Between turns
    # it sleeps, holding a database worker, and after REGISTRY_LOCK_WAIT seconds the
    # subscription gets a nosub (503): a transaction held the lock all along.
    "REGISTRY_LOCK_TIMEOUT": 0.02,
    "REGISTRY_LOCK_WAIT": 5.0,
    # Where changes come from: "signals" (Django's model signals in the writing process),
    # "database" (PostgreSQL's logical replication stream, every write whatever made it;
    # see docs/capture.rst), or "auto": "database" where the database allows it, else
    # "signals" with a system check warning saying what to change (ddp/replication/setup.py).
    "CAPTURE": "auto",
    # Seconds after which a half-received chunked change is dropped.
    "CHUNK_TIMEOUT": 30.0,
    # Seconds between reconnection attempts of a lost listener: doubling up to this cap.
    "LISTENER_MAX_BACKOFF": 10.0,
    # ddp.accounts: days a resume token lives (None: 100 years, as Meteor's null), and
    # whether clients may create accounts with the createUser method.
    "ACCOUNTS_TOKEN_DAYS": 90,
    "ACCOUNTS_ALLOW_CREATE": False,
    # The outgoing buffer of one connection: a client that lets more than this pile up
    # (it stopped reading) is disconnected, so it cannot grow the server's memory.
    "OUTBOX_MAX_BYTES": 16 * 1024 * 1024,
    "OUTBOX_MAX_MESSAGES": 100_000,
    # Seconds a subscription's initial documents may take: a client whose buffer is still
    # over half full after this (it reads too slowly for the publication) is disconnected
    # as a slow consumer. One deadline per publish, whatever the client reads meanwhile;
    # one that stops reading altogether goes after HEARTBEAT_TIMEOUT without room.
    "PUBLISH_TIMEOUT": 120.0,
    # Session resumption (Meteor 3.4): a client that drops without saying "disconnect" may
    # come back within DISCONNECT_GRACE_PERIOD seconds and get the same session (login,
    # subscriptions, merge box) with the messages it missed, of which the server keeps at
    # most MAX_MESSAGE_QUEUE_LENGTH (and OUTBOX_MAX_BYTES): more, or the end of the grace
    # period, and the session is torn down as on any disconnect. 0 turns resumption off.
    "DISCONNECT_GRACE_PERIOD": 15.0,
    "MAX_MESSAGE_QUEUE_LENGTH": 100,
    # Pages (origins, such as "https://app.example.com", or "*") allowed to connect,
    # beside the server's own host and ALLOWED_HOSTS: see ddp/origins.py.
    "ALLOWED_ORIGINS": None,
    # Seconds over which SIGTERM closes the clients one by one, so they reconnect to
    # other servers gradually (Meteor's graceful shutdown); each after its method in flight.
    "SHUTDOWN_WINDOW": 5.0,
    # Serve /metrics (Prometheus); False hands the path to Django, e.g. to keep a
    # public port from showing its publications and load.
    "METRICS": True,
    # Who may read /metrics: None, anyone (as before); else a list of addresses and
    # networks ("10.0.0.0/8"), and everyone else gets 403. Checked against the client's
    # address as TRUSTED_PROXIES gives it.
    "METRICS_ALLOWED": None,
    # Reverse proxies (addresses or networks) whose X-Forwarded-For names the client:
    # without them, the client's address is REMOTE_ADDR, a proxy's own (ddp/addresses.py).
    "TRUSTED_PROXIES": None,
    # ddpserver collects the young generation of Python's garbage collector after this
    # many allocations (Python's own: 700), so that full collections over every client's
    # merge box come less often: at 1,000 clients they were the tail of a change's
    # latency (bench/RESULTS.md). None keeps Python's thresholds.
    "GC_THRESHOLD": 50_000,
    # Send {"server_id": "0"} first, as Meteor did before 2.3 (ddptest needs it).
    "SEND_SERVER_ID": False,
    # Limits on what one client may ask (ddp/ratelimit.py). Rules for method calls and
    # subscriptions, as Meteor's DDPRateLimiter.addRule: each allows "limit" calls per
    # "interval_ms" for each distinct value of the fields its "match" names ("type",
    # "name", "connection_id", "user_id"); more get the error "too-many-requests".
    # Rules of type "password" count the password checks of login, createUser and
    # changePassword (each costs a password hash), by "name" (the method) and
    # "client_address" too. The defaults: Meteor's accounts rule (5 calls per 10 s per
    # connection, changePassword added), and 30 password checks per 10 s per address.
    "RATE_LIMITS": [
        {
            "match": {
                "type": "method",
                "name": [
                    "login",
                    "createUser",
                    "changePassword",
                    "resetPassword",
                    "forgotPassword",
                ],
                "connection_id": True,
            },
            "limit": 5,
            "interval_ms": 10_000,
        },
        {
            "match": {"type": "password", "client_address": True},
            "limit": 30,
            "interval_ms": 10_000,
        },
    ],
    # Frames a connection may send per second, in bursts of up to MESSAGE_BURST (a
    # reconnecting Meteor client sends every sub and unanswered method at once); a
    # client over it is closed with 1008. None: no limit.
    "MESSAGES_PER_SECOND": 100,
    "MESSAGE_BURST": 20_000,
    # Active subscriptions per connection, and method calls received but not yet
    # answered; one more gets "too-many-requests" with timeToReset 0. None: no limit.
    "MAX_SUBSCRIPTIONS": 1000,
    "MAX_PENDING_METHODS": 100,
    # Bytes of a subscription's parameters (as JSON): more get a nosub. Writers match
    # every change against every distinct subscription's parameters, so they must stay
    # small. None: no limit.
    "MAX_SUBSCRIPTION_PARAMS": 8 * 1024,
    # Password hashes checked or made at once, each in an OS thread off the hub; more
    # wait their turn. None: one per CPU.
    "PASSWORD_HASHING_THREADS": None,
}


class DDPSettings:
    """Attribute access to the ``DDP`` setting with defaults; unknown names raise."""

    def __getattr__(self, name):
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown DDP setting: {name!r}")
        return getattr(settings, "DDP", {}).get(name, DEFAULTS[name])


ddp_settings = DDPSettings()
