"""The pytest plugin, run the way a user runs it: in a fresh project, in a subprocess."""

import os

import pytest
from django.db import connection

from ddp.testing.database import database_url

SETTINGS = """
import os
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "ddp", "shop"]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql",
    **__import__("ddp.testing.database", fromlist=["x"]).database_settings(None),
}}
DATABASES["default"]["TEST"] = {"NAME": f"test_plugin_{os.getpid()}"}
SECRET_KEY = "plugin-test"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
"""

MODELS = """
from django.db import models

class Item(models.Model):
    name = models.CharField(max_length=50)
"""

DDP = """
from ddp.api import API, Collection, Publication
from shop.models import Item

class Items(Collection):
    model = Item

class AllItems(Publication):
    queries = [Item.objects.all()]

API.register([Items, AllItems])
"""

TESTS = """
from ddp.testing import DDPTestCase
from shop.models import Item


def test_fixture(ddp_client):
    ddp_client.subscribe("AllItems")
    item = Item.objects.create(name="pen")
    ddp_client.assert_added("shop.item", str(item.pk), name="pen")


def test_factory(ddp_client_factory):
    first, second = ddp_client_factory(), ddp_client_factory()
    first.subscribe("AllItems")
    item = Item.objects.create(name="ink")
    first.assert_added("shop.item", str(item.pk))
    second.assert_no_messages()


class ItemTests(DDPTestCase):
    def test_case(self):
        client = self.ddp_client()
        client.subscribe("AllItems")
        item = Item.objects.create(name="nib")
        client.assert_added("shop.item", str(item.pk), name="nib")
"""


@pytest.fixture
def project(pytester):
    pytester.makepyfile(
        settings=SETTINGS,
        **{"shop/__init__": "", "shop/models": MODELS, "shop/ddp": DDP, "test_items": TESTS},
    )
    pytester.syspathinsert()
    url = database_url({**connection.settings_dict, "NAME": "postgres"})
    os.environ["DATABASE_URL"] = url
    yield pytester
    del os.environ["DATABASE_URL"]


def test_fixtures_and_test_case_in_a_fresh_project(project):
    result = project.runpytest_subprocess("--ds=settings", "-p", "pytester")
    result.assert_outcomes(passed=3)


def test_fixture_names_are_listed(project):
    result = project.runpytest_subprocess("--ds=settings", "--fixtures")
    for name in ("ddp_client", "ddp_client_factory", "ddp_live_server", "ddp_live_client"):
        result.stdout.fnmatch_lines([f"{name}*"])


def test_plugin_can_be_disabled(project):
    result = project.runpytest_subprocess("--ds=settings", "-p", "no:ddp", "-k", "test_fixture")
    result.stdout.fnmatch_lines(["*fixture 'ddp_client' not found*"])
