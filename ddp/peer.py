"""What a connection shows of its client besides its address: Meteor's ``httpHeaders``,
and a Django request standing for it where Django expects one.

The address itself is :func:`ddp.addresses.client_address`'s (``DDP["TRUSTED_PROXIES"]``).
"""

from django.http import HttpRequest

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
