"""Which web pages may open a DDP connection: the ``Origin`` check.

A browser lets any page open a WebSocket (or a SockJS session) to any server, with the
user's cookies, and says which page it was in ``Origin``. So a connection whose
``Origin`` is another site is refused (403) unless ``DDP["ALLOWED_ORIGINS"]`` lists it.
By default the page must come from the host it connects to, or from one of Django's
``ALLOWED_HOSTS``. Clients that are not browsers send no ``Origin`` and are not concerned:
they carry no one's cookies.

``ALLOWED_ORIGINS`` entries are full origins (``"https://app.example.com"``), or ``"*"``
for any origin.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from ddp.conf import ddp_settings


def origin_allowed(environ):
    origin = environ.get("HTTP_ORIGIN")
    if not origin:
        return True
    allowed = ddp_settings.ALLOWED_ORIGINS
    if allowed is not None and ("*" in allowed or origin.rstrip("/") in allowed):
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = environ.get("HTTP_HOST", "")
    origin_host = parts.netloc.lower()
    if origin_host == host.lower():
        return True
    domain, _ = split_domain_port(origin_host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)
