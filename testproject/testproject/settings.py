"""Settings of the bookstore example and of the test suite.

They run as they are on a fresh clone: the database is ``DATABASE_URL``'s when it is set,
and otherwise an embedded PostgreSQL kept in ``.pgdata/`` at the repository's root.
"""

import os
from pathlib import Path

from ddp.testing.database import database_settings

# The repository's root, two folders above this file.
BASE_DIR = Path(__file__).resolve().parents[2]

# A development key, public on purpose: set SECRET_KEY for anything but this example.
SECRET_KEY = os.environ.get("SECRET_KEY", "django-insecure-ddp-bookstore-example-only")
DEBUG = os.environ.get("DEBUG", "true").lower() in ("1", "true", "yes", "on")
# The example is reached as localhost, by a container's name, or from a phone on the LAN.
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ddp",
    "ddp.accounts",
    "bookstore",
]

# Meteor clients log in with a SHA-256 digest of the password: this hasher checks it, and
# Django re-hashes older passwords with it at their next plain-text login.
PASSWORD_HASHERS = [
    "ddp.accounts.passwords.MeteorPBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_settings(BASE_DIR / ".pgdata")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
STATIC_URL = "static/"

# Every DDP setting at its documented default (see ddp/conf.py).
DDP = {}
