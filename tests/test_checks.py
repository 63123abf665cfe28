"""System checks: a wrong database or driver is reported by id before a server starts."""

import sys
import types
from unittest import mock

import pytest
from django.db.backends.postgresql.base import DatabaseWrapper
from django.test import override_settings

from ddp.checks import check_database_engines, check_psycopg_version

pytestmark = [
    pytest.mark.quick,
    # The checks read settings only and open no connection, which is what Django warns about.
    pytest.mark.filterwarnings("ignore:Overriding setting DATABASES:UserWarning"),
]

POSTGRES = {"ENGINE": "django.db.backends.postgresql", "NAME": "ddp"}
SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}


def ids(errors):
    return [error.id for error in errors]


@override_settings(DATABASES={"default": POSTGRES, "other": POSTGRES})
def test_postgresql_everywhere_passes():
    assert check_database_engines() == []


@override_settings(DATABASES={"default": POSTGRES, "cache": SQLITE, "legacy": SQLITE})
def test_every_other_engine_is_reported_with_its_alias():
    errors = check_database_engines()
    assert ids(errors) == ["ddp.E001", "ddp.E001"]
    assert ["'cache'" in errors[0].msg, "'legacy'" in errors[1].msg] == [True, True]


@override_settings(DATABASES={"default": {"ENGINE": "wrapped_pg", "NAME": "ddp"}})
def test_a_backend_built_on_djangos_postgresql_counts(monkeypatch):
    """PostGIS, connection poolers and instrumented backends wrap Django's own."""
    base = types.ModuleType("wrapped_pg.base")
    base.DatabaseWrapper = type("DatabaseWrapper", (DatabaseWrapper,), {})
    monkeypatch.setitem(sys.modules, "wrapped_pg", types.ModuleType("wrapped_pg"))
    monkeypatch.setitem(sys.modules, "wrapped_pg.base", base)
    assert check_database_engines() == []


@override_settings(DATABASES={"default": {"ENGINE": "no.such.backend", "NAME": "ddp"}})
def test_unimportable_engine_is_reported():
    assert ids(check_database_engines()) == ["ddp.E001"]


@override_settings(DATABASES={"default": POSTGRES})
def test_psycopg2_passes():
    with mock.patch("django.db.backends.postgresql.psycopg_any.is_psycopg3", False):
        assert check_psycopg_version() == []


@override_settings(DATABASES={"default": POSTGRES})
def test_psycopg3_is_reported():
    with mock.patch("django.db.backends.postgresql.psycopg_any.is_psycopg3", True):
        assert ids(check_psycopg_version()) == ["ddp.E002"]


@override_settings(DATABASES={"default": SQLITE})
def test_psycopg3_does_not_matter_without_postgresql():
    with mock.patch("django.db.backends.postgresql.psycopg_any.is_psycopg3", True):
        assert check_psycopg_version() == []


def test_the_project_passes():
    assert check_database_engines() + check_psycopg_version() == []


class RouteBooksElsewhere:
    def db_for_write(self, model, **hints):
        return "other" if model._meta.model_name == "book" else None


@override_settings(DATABASE_ROUTERS=[RouteBooksElsewhere()])
def test_published_model_written_elsewhere_is_refused():
    from ddp.checks import check_published_models_on_default

    errors = check_published_models_on_default()
    assert errors
    assert set(ids(errors)) == {"ddp.E003"}
    assert "bookstore.Book" in errors[0].msg


def test_published_models_on_default_pass():
    from ddp.checks import check_published_models_on_default

    assert check_published_models_on_default() == []


@pytest.mark.parametrize("value", [0, -1, 1.5, "50000", True])
def test_gc_threshold_must_be_a_positive_int_or_none(value):
    from ddp.checks import check_gc_threshold

    with override_settings(DDP={"GC_THRESHOLD": value}):
        assert ids(check_gc_threshold()) == ["ddp.E004"]


@pytest.mark.parametrize("value", [None, 1, 50_000])
def test_gc_threshold_accepts_a_positive_int_or_none(value):
    from ddp.checks import check_gc_threshold

    with override_settings(DDP={"GC_THRESHOLD": value}):
        assert check_gc_threshold() == []


@pytest.mark.parametrize("value", [0, -8, 8.5, "8192", False])
def test_max_subscription_params_must_be_a_positive_int_or_none(value):
    from ddp.checks import check_max_subscription_params

    with override_settings(DDP={"MAX_SUBSCRIPTION_PARAMS": value}):
        assert ids(check_max_subscription_params()) == ["ddp.E005"]


@pytest.mark.parametrize("value", [None, 1, 8192])
def test_max_subscription_params_accepts_a_positive_int_or_none(value):
    from ddp.checks import check_max_subscription_params

    with override_settings(DDP={"MAX_SUBSCRIPTION_PARAMS": value}):
        assert check_max_subscription_params() == []


@pytest.mark.parametrize("value", [0, -1, 2.5, "4"])
def test_password_hashing_threads_must_be_a_positive_int_or_none(value):
    from ddp.checks import check_password_hashing_threads

    with override_settings(DDP={"PASSWORD_HASHING_THREADS": value}):
        assert ids(check_password_hashing_threads()) == ["ddp.E007"]


def test_an_empty_secret_key_is_reported_since_it_signs_notifications():
    from ddp.checks import check_secret_key

    assert check_secret_key() == []
    with override_settings(SECRET_KEY=""):
        assert ids(check_secret_key()) == ["ddp.E008"]


@pytest.mark.parametrize(
    "ddp",
    [
        # 0 is PostgreSQL's "no lock_timeout": writers would queue as long as ever.
        {"REGISTRY_LOCK_TIMEOUT": 0},
        {"REGISTRY_LOCK_TIMEOUT": -0.02},
        {"REGISTRY_LOCK_TIMEOUT": None},
        {"REGISTRY_LOCK_TIMEOUT": float("inf")},
        {"REGISTRY_LOCK_TIMEOUT": "20ms"},
        {"REGISTRY_LOCK_WAIT": -1},
        {"REGISTRY_LOCK_WAIT": float("nan")},
        {"REGISTRY_LOCK_WAIT": True},
    ],
)
def test_registry_lock_settings_must_be_seconds(ddp):
    from ddp.checks import check_registry_lock

    with override_settings(DDP=ddp):
        assert ids(check_registry_lock()) == ["ddp.E009"]


@pytest.mark.parametrize(
    "ddp",
    [{}, {"REGISTRY_LOCK_TIMEOUT": 0.001, "REGISTRY_LOCK_WAIT": 0}, {"REGISTRY_LOCK_WAIT": 30}],
)
def test_registry_lock_settings_accept_seconds(ddp):
    from ddp.checks import check_registry_lock

    with override_settings(DDP=ddp):
        assert check_registry_lock() == []


ADDRESS_SETTINGS = [("METRICS_ALLOWED", "ddp.E010"), ("TRUSTED_PROXIES", "ddp.E006")]


@pytest.mark.parametrize(("name", "check_id"), ADDRESS_SETTINGS)
@pytest.mark.parametrize("value", [["10.0.0.300"], ["localhost"], "10.0.0.0/8", [10], {"::1"}])
def test_address_lists_must_hold_addresses_or_networks(name, check_id, value):
    from ddp import checks

    with override_settings(DDP={name: value}):
        errors = checks.check_metrics_allowed() + checks.check_trusted_proxies()
    assert ids(errors) == [check_id]
    assert name in errors[0].msg


@pytest.mark.parametrize(("name", "check_id"), ADDRESS_SETTINGS)
@pytest.mark.parametrize("value", [None, [], ["10.0.0.7", "10.0.0.0/8", "::1", "fd00::/8"]])
def test_address_lists_accept_addresses_and_networks(name, check_id, value):
    from ddp import checks

    with override_settings(DDP={name: value}):
        assert checks.check_metrics_allowed() + checks.check_trusted_proxies() == []


@pytest.mark.parametrize("value", [0, -1.0, None, "120", True, float("nan")])
def test_publish_timeout_must_be_a_positive_number(value):
    from ddp.checks import check_publish_timeout

    with override_settings(DDP={"PUBLISH_TIMEOUT": value}):
        assert ids(check_publish_timeout()) == ["ddp.E011"]


@pytest.mark.parametrize("value", [0.5, 120, 120.0])
def test_publish_timeout_accepts_a_positive_number(value):
    from ddp.checks import check_publish_timeout

    with override_settings(DDP={"PUBLISH_TIMEOUT": value}):
        assert check_publish_timeout() == []


@pytest.mark.parametrize(
    "ddp",
    [
        {"DISCONNECT_GRACE_PERIOD": -1},
        {"DISCONNECT_GRACE_PERIOD": "15"},
        {"DISCONNECT_GRACE_PERIOD": None},
        {"DISCONNECT_GRACE_PERIOD": float("inf")},
        {"MAX_MESSAGE_QUEUE_LENGTH": -1},
        {"MAX_MESSAGE_QUEUE_LENGTH": 1.5},
        {"MAX_MESSAGE_QUEUE_LENGTH": None},
        {"MAX_MESSAGE_QUEUE_LENGTH": True},
    ],
)
def test_session_resumption_settings_must_be_numbers(ddp):
    from ddp.checks import check_session_resumption

    with override_settings(DDP=ddp):
        assert ids(check_session_resumption()) == ["ddp.E014"]


@pytest.mark.parametrize(
    "ddp",
    [
        {},
        {"DISCONNECT_GRACE_PERIOD": 0, "MAX_MESSAGE_QUEUE_LENGTH": 0},
        {"DISCONNECT_GRACE_PERIOD": 0.5, "MAX_MESSAGE_QUEUE_LENGTH": 1000},
    ],
)
def test_session_resumption_settings_accept_meteors_range(ddp):
    from ddp.checks import check_session_resumption

    with override_settings(DDP=ddp):
        assert check_session_resumption() == []
