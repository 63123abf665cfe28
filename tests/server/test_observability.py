"""``/healthz``, ``/metrics`` and the structured event log lines."""

import logging
import sys
import threading
import urllib.error
import urllib.request
from functools import partial
from types import SimpleNamespace

import pytest
from django.db import OperationalError
from django.test.utils import override_settings
from prometheus_client.parser import text_string_to_metric_families

from bookstore.models import Author, Book
from ddp import metrics
from ddp.protocol import SubscriptionOwner
from ddp.server import observability
from ddp.server.wsgi import DDPApplication
from ddp.session import Subscription
from ddp.testing import WebSocketDDPClient
from tests.live import ServerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

JANET = "janet@evanovich.com"


class Response:
    """A WSGI ``start_response`` that keeps what it was given."""

    def __call__(self, status, headers):
        self.status = status
        self.headers = dict(headers)


def request(wsgi, path="/", **environ):
    """``(response, body)`` of one GET of ``path`` from a WSGI callable."""
    response = Response()
    body = b"".join(wsgi({"PATH_INFO": path, **environ}, response))
    return response, body


def call(handler, state):
    """One request to an observability handler for ``state``."""
    return request(partial(handler, state))


def scrape(state):
    return parse(call(observability.metrics_view, state)[1].decode())


def parse(text):
    """``{(sample name, ((label, value), ...)): value}`` of a Prometheus exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def server_state(run_db, connected=True, publications=()):
    """What the handlers read of a DDPApplication: its pool, bus listener and clients."""
    listener = SimpleNamespace(
        connected=threading.Event(),
        stats={"events": 7, "reconnects": 2, "dropped_chunks": 1, "bad_payloads": 3},
    )
    if connected:
        listener.connected.set()
    clients = [
        SimpleNamespace(
            session=SimpleNamespace(
                subs={
                    str(n): Subscription(name, (), SubscriptionOwner(str(n)))
                    for n, name in enumerate(names)
                }
            )
        )
        for names in publications
    ]
    return SimpleNamespace(
        run_db=run_db, bus=SimpleNamespace(listener=listener), connections=clients
    )


# /healthz ----------------------------------------------------------------------------


def test_healthz_is_ok_with_the_listener_up_and_the_database_answering(pool):
    response, body = call(observability.healthz, server_state(pool.run))
    assert (response.status, body) == ("200 OK", b"ok\n")
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_fails_without_the_listener_and_asks_nothing_of_the_database():
    asked = []
    state = server_state(lambda func, *args: asked.append(args), connected=False)
    response, body = call(observability.healthz, state)
    assert (response.status, body) == (
        "503 Service Unavailable",
        b"listener: not connected to PostgreSQL\n",
    )
    assert asked == []


def test_healthz_names_the_database_error_but_not_its_details(caplog):
    def run_db(func, *args, timeout=None):
        raise OperationalError('connection to server at "db.internal" failed')

    with caplog.at_level(logging.WARNING, logger="ddp.server"):
        response, body = call(observability.healthz, server_state(run_db))
    assert (response.status, body) == ("503 Service Unavailable", b"database: OperationalError\n")
    assert "db.internal" in caplog.text


@pytest.fixture
def busy_pool(pool):
    """The one-worker pool, its worker held (a stuck database) until the test ends."""
    release = pool.driver.event()
    pool.driver.spawn(pool.run, release.wait)
    pool.driver.run()
    assert pool.waiting == 0  # the worker has taken the holding job
    yield pool
    release.set()


def test_healthz_fails_when_the_database_does_not_answer_in_time(busy_pool, monkeypatch):
    monkeypatch.setattr(observability, "DB_TIMEOUT", 0)
    response, body = call(observability.healthz, server_state(busy_pool.run))
    assert (response.status, body) == (
        "503 Service Unavailable",
        b"database: no answer within 0 s\n",
    )


def test_probes_that_time_out_do_not_pile_up_in_the_pool(busy_pool):
    state = server_state(busy_pool.run)
    start = busy_pool.driver.clock()
    for _ in range(5):
        assert observability.health_problem(state) == "database: no answer within 5 s"
    assert busy_pool.driver.clock() - start == 5 * observability.DB_TIMEOUT
    assert busy_pool.waiting == 0
    assert scrape(state).get(("ddp_notification_queue_usage", ())) is None
    assert busy_pool.waiting == 0


def test_a_probe_that_runs_too_long_is_cancelled_by_postgresql(pool):
    # A probe a worker took before the caller gave up: PostgreSQL ends it, not 30 s later.
    with pytest.raises(OperationalError, match="statement timeout"):
        pool.run(observability.scalar, "SELECT pg_sleep(30)", 0.1)
    assert pool.run(observability.scalar, "SELECT 1", 0.1) == 1


# /metrics ----------------------------------------------------------------------------


def test_metrics_read_counters_histograms_and_the_state_at_each_scrape(pool):
    metrics.inc("ddp_test_widgets_total", 3)
    state = server_state(pool.run, publications=[["AllBooks"], ["AllBooks", "Authors"], []])
    response, body = call(observability.metrics_view, state)
    values = parse(body.decode())
    assert response.status == "200 OK"
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert values[("ddp_connections", ())] == 3
    assert values[("ddp_subscriptions", (("publication", "AllBooks"),))] == 2
    assert values[("ddp_subscriptions", (("publication", "Authors"),))] == 1
    # Registered, subscribed by nobody: still a series.
    assert values[("ddp_subscriptions", (("publication", "BooksByAuthorEmail"),))] == 0
    assert values[("ddp_listener_connected", ())] == 1
    assert values[("ddp_notify_events_total", ())] == 7
    assert values[("ddp_listener_reconnects_total", ())] == 2
    assert values[("ddp_listener_dropped_chunk_sets_total", ())] == 1
    assert values[("ddp_listener_bad_payloads_total", ())] == 3
    assert 0 <= values[("ddp_notification_queue_usage", ())] <= 1
    # Every declared counter is there from the start; one nobody declared still shows.
    for name in metrics.COUNTERS:
        assert (name, ()) in values
    assert values[("ddp_test_widgets_total", ())] == metrics.counters["ddp_test_widgets_total"]
    assert ("ddp_method_duration_seconds_count", ()) in values
    if sys.platform == "linux":  # the process collector reads /proc
        assert ("process_open_fds", ()) in values

    metrics.inc("ddp_test_widgets_total")
    state.bus.listener.connected.clear()
    later = scrape(state)
    assert later[("ddp_test_widgets_total", ())] == values[("ddp_test_widgets_total", ())] + 1
    assert later[("ddp_listener_connected", ())] == 0


def test_a_histogram_counts_each_observation_in_its_bucket_and_every_one_above():
    histogram = metrics.Histogram()
    for seconds in (0.005, 0.006, 0.3, 99):
        histogram.observe(seconds)
    buckets = dict(histogram.cumulative())
    assert (buckets[0.005], buckets[0.01], buckets[0.25], buckets[0.5]) == (1, 2, 2, 3)
    assert (buckets[10.0], buckets[float("inf")]) == (3, 4)
    assert histogram.sum == pytest.approx(99.311)


def test_metrics_observed_reach_the_exposition(pool):
    name = "ddp_method_duration_seconds"
    before = scrape(server_state(pool.run))
    metrics.observe(name, 0.02)
    metrics.observe(name, 3.0)
    after = scrape(server_state(pool.run))

    def grew(sample, labels=()):
        return after[(sample, labels)] - before[(sample, labels)]

    assert grew(f"{name}_count") == 2
    assert grew(f"{name}_bucket", (("le", "0.025"),)) == 1
    assert grew(f"{name}_bucket", (("le", "2.5"),)) == 1
    assert grew(f"{name}_bucket", (("le", "5.0"),)) == 2
    assert grew(f"{name}_bucket", (("le", "+Inf"),)) == 2


def test_metrics_leave_out_the_queue_usage_when_the_database_fails(caplog):
    def run_db(func, *args, timeout=None):
        raise OperationalError("the database is gone")

    with caplog.at_level(logging.WARNING, logger="ddp.server"):
        response, body = call(observability.metrics_view, server_state(run_db))
    values = parse(body.decode())
    assert response.status == "200 OK"
    assert ("ddp_notification_queue_usage", ()) not in values
    assert ("ddp_connections", ()) in values
    assert "the database is gone" in caplog.text


def test_metrics_without_prometheus_client_say_what_to_install(monkeypatch):
    monkeypatch.setattr(observability, "prometheus_client", None)
    response, body = call(observability.metrics_view, server_state(lambda *a: None))
    assert response.status == "501 Not Implemented"
    assert b"pip install django-ddp-server[metrics]" in body
    assert body.count(b"\n") == 1


# Routing -----------------------------------------------------------------------------


def test_the_two_paths_come_before_django_and_metrics_can_be_turned_off(pool):
    def django_app(environ, start_response):
        start_response("404 Not Found", [])
        return [b"django"]

    # No client connects here: the heartbeat thread the app asks for is never started.
    driver = SimpleNamespace(spawn=lambda function, *args: None)
    app = DDPApplication(pool.run, lambda: None, driver, 1024, django_app=django_app)
    assert request(app, "/healthz")[1] == b"ok\n"
    for path in ("/metrics", "/other"):
        with override_settings(DDP={"METRICS": False}):
            response, body = request(app, path)
        assert (response.status, body) == ("404 Not Found", b"django")
    response, body = request(app, "/metrics")
    assert response.status == "200 OK"
    assert parse(body.decode())[("ddp_connections", ())] == 0


@pytest.mark.parametrize(
    ("ddp", "environ", "status"),
    [
        ({"METRICS_ALLOWED": ["10.0.0.0/8", "::1"]}, {"REMOTE_ADDR": "10.1.2.3"}, "200 OK"),
        ({"METRICS_ALLOWED": ["10.0.0.0/8", "::1"]}, {"REMOTE_ADDR": "::1"}, "200 OK"),
        ({"METRICS_ALLOWED": ["10.0.0.0/8"]}, {"REMOTE_ADDR": "192.168.1.1"}, "403 Forbidden"),
        ({"METRICS_ALLOWED": []}, {"REMOTE_ADDR": "10.1.2.3"}, "403 Forbidden"),
        # The forwarded address counts only from a trusted proxy.
        (
            {"METRICS_ALLOWED": ["10.0.0.0/8"], "TRUSTED_PROXIES": ["192.168.1.1"]},
            {"REMOTE_ADDR": "192.168.1.1", "HTTP_X_FORWARDED_FOR": "10.1.2.3"},
            "200 OK",
        ),
        (
            {"METRICS_ALLOWED": ["10.0.0.0/8"]},
            {"REMOTE_ADDR": "192.168.1.1", "HTTP_X_FORWARDED_FOR": "10.1.2.3"},
            "403 Forbidden",
        ),
        (
            {"METRICS_ALLOWED": ["192.168.1.1"], "TRUSTED_PROXIES": ["192.168.1.1"]},
            {"REMOTE_ADDR": "192.168.1.1", "HTTP_X_FORWARDED_FOR": "10.1.2.3"},
            "403 Forbidden",
        ),
    ],
)
def test_metrics_answer_only_the_addresses_allowed(pool, ddp, environ, status):
    with override_settings(DDP=ddp):
        response, body = request(
            partial(observability.metrics_view, server_state(pool.run)), **environ
        )
    assert response.status == status
    assert (b"ddp_connections" in body) == (status == "200 OK")


# Event log lines ---------------------------------------------------------------------


def test_log_event_writes_one_key_value_line_with_the_connection_id(caplog):
    with caplog.at_level(logging.INFO, logger="ddp.server"):
        metrics.log_event("connect", "Xyz12", remote="10.0.0.1", agent='a "b"=c', user=None)
        try:
            raise ValueError("boom")
        except ValueError:
            metrics.log_error("Xyz12", method="m")
    connect, error = caplog.records
    assert (connect.name, connect.levelno) == ("ddp.server", logging.INFO)
    assert connect.getMessage() == 'ddp.connect id=Xyz12 remote=10.0.0.1 agent="a \\"b\\"=c"'
    assert (error.getMessage(), error.levelno) == ("ddp.error id=Xyz12 method=m", logging.ERROR)
    assert error.exc_info[0] is ValueError


# A live server -----------------------------------------------------------------------


def get(server, path, headers=None):
    request = urllib.request.Request(server.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_a_running_server_takes_client_addresses_from_its_trusted_proxies_only():
    ddp = {"METRICS_ALLOWED": ["10.0.0.0/8"], "TRUSTED_PROXIES": ["127.0.0.1"]}
    with ServerProcess(ddp=ddp) as server:
        refused = get(server, "metrics")
        forwarded = get(server, "metrics", {"X-Forwarded-For": "10.0.0.9"})
        elsewhere = get(server, "metrics", {"X-Forwarded-For": "192.168.1.1"})
        client = WebSocketDDPClient(server.ws_url, header=["X-Forwarded-For: 10.0.0.9"])
        client.close()
        wait_until(lambda: "ddp.disconnect" in server.output(), 10, what="the disconnect logged")
    assert refused[0] == 403
    assert forwarded[0] == 200
    assert b"ddp_connections" in forwarded[2]
    assert elsewhere[0] == 403
    # The log lines name the same client.
    assert "transport=websocket remote=10.0.0.9" in server.output()


def test_a_running_server_is_healthy_and_counts_its_clients():
    janet = Author.objects.create(name="Janet", email=JANET)
    with ServerProcess() as server:
        status, headers, body = get(server, "healthz")
        assert (status, body) == (200, b"ok\n")
        first = WebSocketDDPClient(server.ws_url)
        first.subscribe("AllBooks")
        second = WebSocketDDPClient(server.ws_url)
        second.subscribe("AllBooks")
        second.subscribe("BooksByAuthorEmail", JANET)
        pk = str(Book.objects.create(title="Hot Six", author=janet).pk)
        for client in (first, second):
            client.wait_for(lambda c: pk in c.collection("bookstore.book"))
        status, headers, body = get(server, "metrics")
        first.close()
        second.close()
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    values = parse(body.decode())
    assert values[("ddp_connections", ())] == 2
    assert values[("ddp_subscriptions", (("publication", "AllBooks"),))] == 2
    assert values[("ddp_subscriptions", (("publication", "BooksByAuthorEmail"),))] == 1
    assert values[("ddp_listener_connected", ())] == 1
    # One change, one NOTIFY, however many clients it reached.
    assert values[("ddp_notify_events_total", ())] == 1
    assert values[("ddp_listener_reconnects_total", ())] == 0
    assert 0 <= values[("ddp_notification_queue_usage", ())] < 1
