"""Sphinx configuration: the reference of django-ddp-server, built from this checkout.

CI builds it with ``python -m sphinx -W --keep-going -b html docs <folder>`` (warnings as
errors), after ``pip install -e '.[docs]'``. autodoc imports :mod:`ddp.api` and
:mod:`ddp.testing`, which need Django configured but no database: the minimal settings
below are never connected to.
"""

import sys
from pathlib import Path

import django
from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]
# The checkout's ddp, installed or not: the docs describe the source they sit beside.
sys.path.insert(0, str(ROOT))

import ddp  # noqa: E402

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "ddp", "ddp.accounts"],
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "docs"}},
    SECRET_KEY="the docs build connects to nothing",
    USE_TZ=True,
)
django.setup()

project = "django-ddp-server"
copyright = "the django-ddp-server authors"
release = version = ddp.__version__

extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Sphinx's own theme, installed with it: nothing is fetched while building.
html_theme = "alabaster"
exclude_patterns = ["_build"]
