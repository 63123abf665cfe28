"""Accounts with a custom AUTH_USER_MODEL, in a fresh project run the way a user runs it."""

import os
import sys

import pytest
from django.db import connection

from ddp.testing.database import database_url

SETTINGS = """
import os
INSTALLED_APPS = [
    "django.contrib.auth", "django.contrib.contenttypes", "ddp", "ddp.accounts", "people",
]
AUTH_USER_MODEL = "people.Person"
PASSWORD_HASHERS = ["ddp.accounts.passwords.MeteorPBKDF2PasswordHasher"]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql",
    **__import__("ddp.testing.database", fromlist=["x"]).database_settings(None),
}}
DATABASES["default"]["TEST"] = {"NAME": f"test_people_{os.getpid()}"}
SECRET_KEY = "custom-user-test"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
"""

MODELS = """
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models


class PersonManager(BaseUserManager):
    def create_user(self, email, password):
        person = self.model(email=email)
        person.set_password(password)
        person.save()
        return person


class Person(AbstractBaseUser):
    email = models.EmailField(unique=True)
    nickname = models.CharField(max_length=50, blank=True)
    is_active = models.BooleanField(default=True)
    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    objects = PersonManager()
"""

TESTS = """
import hashlib

from ddp.testing import DDPTestCase
from people.models import Person


def digest(password):
    return {"digest": hashlib.sha256(password.encode()).hexdigest(), "algorithm": "sha-256"}


class PersonLoginTests(DDPTestCase):
    def test_login_by_email_and_by_username_field(self):
        ada = Person.objects.create_user("ada@example.com", "pw")
        for selector in ({"email": "ada@example.com"}, {"username": "ADA@example.com"}):
            client = self.ddp_client()
            result = client.call("login", {"user": selector, "password": digest("pw")})
            assert result["id"] == str(ada.pk)
            client.assert_added(
                "users",
                str(ada.pk),
                username="ada@example.com",
                emails=[{"address": "ada@example.com", "verified": False}],
            )

    def test_wrong_password(self):
        Person.objects.create_user("ada@example.com", "pw")
        client = self.ddp_client()
        try:
            client.call("login", {"user": {"email": "ada@example.com"}, "password": digest("x")})
        except Exception as exc:
            assert exc.error == 403
        else:
            raise AssertionError("logged in with a wrong password")
"""


@pytest.mark.django_db
def test_accounts_with_a_custom_user_model(pytester):
    pytester.makepyfile(
        settings=SETTINGS,
        **{
            "people/__init__": "",
            "people/models": MODELS,
            "people/migrations/__init__": "",
            "test_people": TESTS,
        },
    )
    pytester.syspathinsert()
    os.environ["DATABASE_URL"] = database_url({**connection.settings_dict, "NAME": "postgres"})
    try:
        makemigrations = pytester.run(
            sys.executable, "-m", "django", "makemigrations", "people", "--settings=settings"
        )
        assert makemigrations.ret == 0, makemigrations.stderr.str()
        result = pytester.runpytest_subprocess("--ds=settings")
    finally:
        del os.environ["DATABASE_URL"]
    result.assert_outcomes(passed=2)
