"""Test publications and methods: clients, test cases and pytest fixtures.

``from ddp.testing import DDPTestCase`` works, but names are imported lazily (PEP 562):
a settings module that imports :mod:`ddp.testing.database` must not pull in
``django.test`` before Django is set up.
"""

_NAMES = {
    "DDPClient": "ddp.testing.client",
    "WebSocketDDPClient": "ddp.testing.client",
    "SubscriptionError": "ddp.testing.client",
    "DDPTestCase": "ddp.testing.cases",
    "DDPLiveServerTestCase": "ddp.testing.cases",
    "ServerProcess": "ddp.testing.live",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module 'ddp.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_NAMES[name]), name)
