"""``/healthz`` and ``/metrics``: is this server fit to serve, and what is it doing.

Both are plain WSGI handlers of a server's state: anything with the
:class:`~ddp.server.wsgi.DDPApplication`'s ``run_db`` (the database pool), ``bus`` (whose
``listener`` has a ``connected`` event and ``stats``) and ``connections`` (the live
:class:`~ddp.runtime.connection.ConnectionRuntime` objects). Everything is read when asked, so
nothing needs updating as clients come and go.

``/metrics`` needs ``prometheus_client`` (the ``metrics`` extra); without it the path
answers 501 and says what to install, and the server runs as before.
"""

import contextlib
import logging
from collections import Counter

from django.db import connections, transaction

from ddp import metrics
from ddp.addresses import client_address, networks, within
from ddp.api import API
from ddp.conf import ddp_settings
from ddp.replication import setup

try:
    import prometheus_client
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.utils import floatToGoString
except ImportError:  # the optional extra is not installed: /metrics answers 501
    prometheus_client = None

logger = logging.getLogger("ddp.server")

#: Seconds a probe or a scrape waits for the database. Load balancers and Prometheus
#: (10 s by default) give up on a request that hangs, and a hung scrape loses every other
#: metric too, exactly when the database is in trouble.
DB_TIMEOUT = 5.0

#: The listener's own counters (``Listener.stats``), as Prometheus counters.
LISTENER_COUNTERS = {
    "events": ("ddp_notify_events_total", "Change events received by NOTIFY and dispatched."),
    "reconnects": ("ddp_listener_reconnects_total", "Times the listener lost its connection."),
    "dropped_chunks": (
        "ddp_listener_dropped_chunk_sets_total",
        "Chunked change events dropped because a chunk never arrived in time.",
    ),
    "bad_payloads": (
        "ddp_listener_bad_payloads_total",
        "NOTIFY payloads on a change channel that were not a valid change event.",
    ),
}


def endpoint(path, worker=None):
    """The handler for ``path`` if it is one of these two, else None (Django's path).

    ``DDP["METRICS"] = False`` gives ``/metrics`` back to Django, for a project that
    does not want its publications and load visible on its public port;
    ``DDP["METRICS_ALLOWED"]`` keeps it but answers only the addresses listed.

    Worker ``k`` of ``ddpserver --workers`` also answers ``/metrics/k``, to which every
    worker routes (:mod:`ddp.server.affinity`): one scrape per worker through the one
    port, where ``/metrics`` gets whichever worker accepted the connection.
    """
    if path == "/healthz":
        return healthz
    if ddp_settings.METRICS and (
        path == "/metrics" or (worker is not None and path == f"/metrics/{worker}")
    ):
        return metrics_view
    return None


def healthz(state, environ, start_response):
    """200 ``ok`` when the server can serve live data, else 503 and one line saying why.

    A server whose listener is down still answers, but its clients miss changes until it
    reconnects; one that cannot reach the database cannot subscribe anyone. Either way a
    load balancer should send new clients elsewhere.
    """
    problem = health_problem(state)
    if problem is None:
        return respond(start_response, "200 OK", "ok")
    return respond(start_response, "503 Service Unavailable", problem)


def health_problem(state):
    """What keeps ``state`` from serving, in one line, or None."""
    if state.bus is not None and not state.bus.listener.connected.is_set():
        return "listener: not connected to PostgreSQL"
    try:
        run_within(state.run_db, DB_TIMEOUT, "SELECT 1")
    except TimeoutError:
        return f"database: no answer within {DB_TIMEOUT:g} s"
    except Exception as exc:
        # The reason goes to the log only: the error names hosts and users, and this
        # path answers anyone who can reach the port.
        logger.warning("Health check: the database failed: %s", exc)
        return f"database: {type(exc).__name__}"
    return None


def metrics_view(state, environ, start_response):
    """Every ``ddp_`` metric and the process' own, in Prometheus' text format; 403 to a
    client that ``DDP["METRICS_ALLOWED"]`` does not list."""
    allowed = ddp_settings.METRICS_ALLOWED
    if allowed is not None and not within(client_address(environ), networks(allowed)):
        return respond(start_response, "403 Forbidden", "/metrics: not from this address")
    if prometheus_client is None:
        return respond(
            start_response,
            "501 Not Implemented",
            "/metrics needs prometheus_client: pip install django-ddp-server[metrics]",
        )
    # A registry per scrape, bound to this server's state: nothing global to register
    # once, or to clash with when a process holds several applications (tests do).
    registry = prometheus_client.CollectorRegistry()
    # Memory and open files, which grow with the number of clients.
    collectors = [ServerCollector(state), prometheus_client.ProcessCollector(registry=None)]
    worker = getattr(state, "worker", None)
    for collector in collectors:
        registry.register(collector if worker is None else Labelled(collector, str(worker)))
    body = prometheus_client.generate_latest(registry)
    start_response("200 OK", headers(prometheus_client.CONTENT_TYPE_LATEST, body))
    return [body]


class Labelled:
    """A collector whose every sample gets a ``worker`` label: each worker of
    ``ddpserver --workers`` counts for itself, and Prometheus sums them (or not)."""

    def __init__(self, collector, worker):
        self.collector = collector
        self.worker = worker

    def collect(self):
        for family in self.collector.collect():
            family.samples = [
                sample._replace(labels={**sample.labels, "worker": self.worker})
                for sample in family.samples
            ]
            yield family


class ServerCollector:
    """Yields the metric families of one scrape, read from the state at that moment."""

    def __init__(self, state):
        self.state = state

    def collect(self):
        for name in sorted(metrics.COUNTERS.keys() | metrics.counters.keys()):
            help_text = metrics.COUNTERS.get(name, name)
            yield CounterMetricFamily(name, help_text, value=metrics.counters[name])
        for name in sorted(metrics.HISTOGRAMS.keys() | metrics.histograms.keys()):
            histogram = metrics.histograms[name]
            yield HistogramMetricFamily(
                name,
                metrics.HISTOGRAMS.get(name, name),
                buckets=[(floatToGoString(le), n) for le, n in histogram.cumulative()],
                sum_value=histogram.sum,
            )
        live = list(self.state.connections)
        yield GaugeMetricFamily("ddp_connections", "Open DDP connections.", value=len(live))
        by_publication = GaugeMetricFamily(
            "ddp_subscriptions", "Active subscriptions, by publication.", labels=["publication"]
        )
        for name, count in sorted(subscriptions_by_publication(live).items()):
            by_publication.add_metric([name], count)
        yield by_publication
        holder = getattr(self.state, "holder", None)
        if holder is not None:
            sessions, messages, size = holder.gauges()
            yield GaugeMetricFamily(
                "ddp_held_sessions",
                "Sessions held for clients that dropped, until they resume or their grace "
                "period ends (DDP['DISCONNECT_GRACE_PERIOD']).",
                value=sessions,
            )
            yield GaugeMetricFamily(
                "ddp_held_messages",
                "Messages queued for the clients of held sessions (at most "
                "DDP['MAX_MESSAGE_QUEUE_LENGTH'] each).",
                value=messages,
            )
            yield GaugeMetricFamily(
                "ddp_held_bytes", "Bytes of the messages queued for held sessions.", value=size
            )
        if self.state.bus is not None:
            listener = self.state.bus.listener
            yield GaugeMetricFamily(
                "ddp_listener_connected",
                "1 while the listener's connection to PostgreSQL is up.",
                value=int(listener.connected.is_set()),
            )
            for key, (name, help_text) in LISTENER_COUNTERS.items():
                yield CounterMetricFamily(name, help_text, value=listener.stats[key])
        usage, slot = database_gauges(self.state.run_db)
        if usage is not None:
            yield GaugeMetricFamily(
                "ddp_notification_queue_usage",
                "Fraction of PostgreSQL's 8 GB NOTIFY queue in use; when full, every "
                "transaction that notifies fails at COMMIT.",
                value=usage,
            )
        if slot is not None:
            yield GaugeMetricFamily(
                "ddp_replication_slot_lag_bytes",
                "WAL written since the position database capture's reader confirmed, which "
                "PostgreSQL keeps for its slot: a slot nobody reads fills the disk.",
                value=slot.lag_bytes,
            )
            if slot.lag_seconds is not None:
                yield GaugeMetricFamily(
                    "ddp_replication_slot_lag_seconds",
                    "How far database capture's reader is behind: PostgreSQL's flush lag "
                    "while one reads, the time since the last one stopped otherwise.",
                    value=slot.lag_seconds,
                )


def subscriptions_by_publication(live):
    """``{publication: active subscriptions}`` over ``live`` connections.

    Every registered publication is there, at 0 when nobody subscribes, so that a series
    does not vanish (and an alert on it go quiet) when its last subscriber leaves.
    """
    counts = Counter(dict.fromkeys(API.publications, 0))
    for connection in live:
        for subscription in list(connection.session.subs.values()):
            counts[subscription.name] += 1
    return counts


def database_gauges(run_db):
    """``(pg_notification_queue_usage(), database capture's slot)``, in one probe so that a
    scrape waits for a stuck database once; ``(None, None)`` when it does not answer.

    A listener that stops reading (on any server of the cluster) holds the NOTIFY queue
    back; at 1.0 every notifying COMMIT fails, so this is the number to alert on early.
    The slot (a :class:`ddp.replication.setup.SlotStatus`, None when there is none) keeps
    the WAL its reader has not confirmed: one that nobody reads fills the disk.
    """
    try:
        return run_db(read_gauges, DB_TIMEOUT, timeout=DB_TIMEOUT)
    except Exception as exc:
        logger.warning("/metrics: could not read the database's gauges: %s", exc)
        return None, None


@contextlib.contextmanager
def bounded_cursor(timeout):
    """A cursor in a transaction whose statements PostgreSQL cancels after ``timeout``
    seconds, when the caller has given up on them: a stuck probe must not keep holding a
    worker of the pool."""
    with transaction.atomic(), connections["default"].cursor() as cursor:
        # 0 would mean no limit at all.
        cursor.execute("SET LOCAL statement_timeout = %s", [max(1, round(timeout * 1000))])
        yield cursor


def scalar(sql, timeout):
    """Run in a database worker: the one value ``sql`` selects."""
    with bounded_cursor(timeout) as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def read_gauges(timeout):
    """Run in a database worker: what :func:`database_gauges` returns."""
    with bounded_cursor(timeout) as cursor:
        cursor.execute("SELECT pg_notification_queue_usage()")
        usage = cursor.fetchone()[0]
        return usage, setup.slot_status(cursor)


def run_within(run_db, timeout, sql):
    """The value ``sql`` selects, through the pool ``run_db``; TimeoutError after
    ``timeout`` seconds, with the probe withdrawn from the pool's queue if no worker has
    taken it yet, and cancelled by PostgreSQL if one has."""
    return run_db(scalar, sql, timeout, timeout=timeout)


def respond(start_response, status, text):
    body = f"{text}\n".encode()
    start_response(status, headers("text/plain; charset=utf-8", body))
    return [body]


def headers(content_type, body):
    # A proxy must never answer a probe or a scrape from its cache.
    return [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
