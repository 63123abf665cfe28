"""Test publications and methods: clients, test cases and pytest fixtures.

``from ddp.testing import DDPTestCase`` works, but names are imported lazily (PEP 562):
a settings module that imports :mod:`ddp.testing.database` must not pull in
``django.test`` before Django is set up.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as type checkers see them; at run time, __getattr__ below
    from ddp.testing.cases import DDPLiveServerTestCase, DDPTestCase
    from ddp.testing.client import DDPClient, SubscriptionError, WebSocketDDPClient
    from ddp.testing.live import ServerProcess

_NAMES = {
    "DDPClient": "ddp.testing.client",
    "WebSocketDDPClient": "ddp.testing.client",
    "SubscriptionError": "ddp.testing.client",
    "DDPTestCase": "ddp.testing.cases",
    "DDPLiveServerTestCase": "ddp.testing.cases",
    "ServerProcess": "ddp.testing.live",
}

# Written out, not sorted(_NAMES): type checkers and linters read it as a literal.
__all__ = [
    "DDPClient",
    "DDPLiveServerTestCase",
    "DDPTestCase",
    "ServerProcess",
    "SubscriptionError",
    "WebSocketDDPClient",
]


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'ddp.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_NAMES[name]), name)
