"""Who is at the other end of a connection: Meteor's ``clientAddress`` and ``httpHeaders``.

Rate limits per address and lockout tools (``user_login_failed`` receivers such as
django-axes) need the client's address. Behind a proxy the socket's peer is the proxy, and
the client is in ``X-Forwarded-For``; that header is trusted only when the peer is one of
``DDP["TRUSTED_PROXIES"]``, since any client can send it. The address is then the right-most
one the trusted proxies did not add, as Django's and Meteor's deployments read it.
"""

import ipaddress

from django.http import HttpRequest

from ddp.conf import ddp_settings

#: The request headers a connection shows its methods, as Meteor's ``httpHeaders``: enough
#: to tell clients apart, never the cookies or credentials of the handshake.
SHOWN_HEADERS = (
    "referer",
    "x-client-ip",
    "x-forwarded-for",
    "x-cluster-client-ip",
    "via",
    "x-real-ip",
    "host",
    "user-agent",
    "accept-language",
)


def networks(entries):
    """``ipaddress`` networks of a list of addresses and CIDR ranges; ValueError if malformed."""
    if isinstance(entries, str):
        raise ValueError("a list of addresses is expected, not one string")
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _within(address, nets):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in nets)


def client_address(environ):
    """The client's address for the WSGI ``environ`` of its handshake (or request)."""
    remote = environ.get("REMOTE_ADDR") or None
    trusted = networks(ddp_settings.TRUSTED_PROXIES or ())
    if remote is None or not _within(remote, trusted):
        return remote
    forwarded = [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for hop in reversed([hop for hop in forwarded if hop]):
        if not _within(hop, trusted):
            return hop
    return remote


def http_headers(environ):
    """The :data:`SHOWN_HEADERS` of ``environ``, by their lowercase names."""
    headers = {}
    for name in SHOWN_HEADERS:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        if isinstance(value, str):
            headers[name] = value
    return headers


def request_for(address, headers):
    """A Django request standing for a DDP call, for signals that expect one.

    Its ``META`` has the client's address and shown headers, as a view's request would:
    what ``user_login_failed`` receivers read to throttle by address.
    """
    request = HttpRequest()
    request.method = "POST"
    request.META["REMOTE_ADDR"] = address or ""
    for name, value in headers.items():
        request.META["HTTP_" + name.upper().replace("-", "_")] = value
    return request
