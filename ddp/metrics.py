"""What a server has seen: counters and histograms for ``/metrics``, and event log lines.

Plain numbers in one process, updated from green threads (no lock needed under eventlet's
cooperative switching, and ``+=`` on a dict entry is atomic enough in CPython for
counters). Names follow Prometheus conventions. This module imports nothing of the
project, so the session, the bus and the transport can all count here without depending
on ``prometheus_client`` (an optional extra) or on each other; ``ddp.server.observability``
turns these numbers into Prometheus' format on each scrape.
"""

import json
import logging
from bisect import bisect_left
from collections import Counter, defaultdict
from itertools import accumulate

#: Every counter the server increments, with its help text: declared so that each is
#: exposed from the start at 0, which Prometheus' ``rate()`` needs to see a first increase.
COUNTERS = {
    "ddp_messages_received_total": "DDP messages received from clients.",
    "ddp_messages_sent_total": "DDP messages written to clients.",
    "ddp_messages_encoded_total": (
        "DDP messages JSON-encoded; a change encoded once for many clients counts once."
    ),
    "ddp_slow_client_disconnects_total": (
        "Clients disconnected because their outgoing buffer overflowed."
    ),
    "ddp_chunk_reassemblies_total": "Change events over 8000 bytes joined from their chunks.",
    "ddp_listener_refused_payloads_total": (
        "NOTIFY payloads refused because their signature was missing or wrong: forged, or"
        " sent with another SECRET_KEY."
    ),
    "ddp_match_fallback_total": (
        "Subscriptions a writer matched one by one, running their publication (no template)."
    ),
    "ddp_match_failures_total": (
        "Matching statements or publications that failed in a writer; their subscriptions "
        "were re-run by their servers instead."
    ),
    "ddp_match_reruns_total": (
        "Subscriptions this server re-ran because a writer could not match a change."
    ),
    "ddp_registry_lock_retries_total": (
        "Turns a new distinct subscription waited in vain for the registry lock, which a "
        "writer's transaction held (DDP['REGISTRY_LOCK_TIMEOUT'] each)."
    ),
    "ddp_registry_busy_total": (
        "Subscriptions refused with a 503 nosub: the registry lock stayed held for "
        "DDP['REGISTRY_LOCK_WAIT']."
    ),
    "ddp_sessions_resumed_total": (
        "Sessions handed back to a client that came back within the grace period (Meteor"
        " 3.4's session resumption)."
    ),
    "ddp_resumptions_refused_total": (
        "Clients that asked for their session back and got a new one: unknown here, past"
        " its grace period, or a count of messages received that did not match."
    ),
    "ddp_held_sessions_ended_total": (
        "Sessions held for resumption that were torn down instead: grace period over, queue"
        " full, count mismatch, lost listener."
    ),
    "ddp_replication_changes_total": (
        "Row changes this server read from the replication slot and announced, as the "
        "database's reader (database capture)."
    ),
    "ddp_repeated_events_total": (
        "Change events dropped because they repeated a batch of the replication reader's "
        "this server had (announced again after a takeover)."
    ),
}
#: Every histogram, with its help text.
HISTOGRAMS = {
    "ddp_method_duration_seconds": (
        "Time from taking a method call off the inbox to sending its updated message."
    ),
}
#: Upper bounds in seconds, shared by every histogram so that they aggregate across
#: servers: from a 5 ms primary-key lookup to a method stuck behind a 10 s fence.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

counters = Counter()

event_logger = logging.getLogger("ddp.server")


class Histogram:
    """Observations counted per bucket, with their sum: what Prometheus needs."""

    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one for "over the top bound"
        self.sum = 0.0

    def observe(self, seconds):
        # bisect_left puts a value equal to a bound in that bound's bucket ("le").
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self):
        """``[(upper bound, observations at most that), ...]``, ending with infinity."""
        return list(zip((*BUCKETS, float("inf")), accumulate(self.counts), strict=True))


histograms = defaultdict(Histogram)


def inc(name, amount=1):
    counters[name] += amount


def observe(name, seconds):
    histograms[name].observe(seconds)


def log_event(event, connection_id, level=logging.INFO, exc_info=None, **fields):
    """Log one ``ddp.<event> id=<connection id> key=value ...`` line on ``ddp.server``.

    One line per event, keyed by the DDP session id the client also sees, so that a log
    search for one id follows a client from connect to disconnect across its logins and
    errors. Values with spaces, quotes or ``=`` are JSON-quoted (logfmt), and fields that
    are None are left out.
    """
    parts = [f"ddp.{event}", f"id={connection_id}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(c.isspace() or c in '"=' for c in text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    event_logger.log(level, " ".join(parts), exc_info=exc_info)


def log_error(connection_id, **fields):
    """Log ``ddp.error id=... key=value ...`` and the traceback of the exception being
    handled: a failure can then be traced back to the client it happened to."""
    log_event("error", connection_id, level=logging.ERROR, exc_info=True, **fields)
