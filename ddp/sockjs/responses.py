"""The HTTP side of SockJS: its headers and its short answers, as sockjs-node gives them.

Headers are lists of ``(name, value)`` pairs ready for ``start_response``. The rules come
from sockjs-node's ``src/webjs.coffee``, ``src/sockjs.coffee`` and ``src/trans-xhr.coffee``
(PROTOCOL.md T6, T9, T10).
"""

import time
from wsgiref.handlers import format_date_time

ONE_YEAR = 365 * 24 * 60 * 60

TEXT = ("Content-Type", "text/plain; charset=UTF-8")
JAVASCRIPT = ("Content-Type", "application/javascript; charset=UTF-8")
JSON = ("Content-Type", "application/json; charset=UTF-8")

#: iOS 6 caches POST answers, and a proxy must neither cache nor transform a stream.
NO_CACHE = ("Cache-Control", "no-store, no-cache, no-transform, must-revalidate, max-age=0")


def cors(environ):
    """Let a page from another origin read the answer, with its cookies (T10).

    The Origin is echoed, ``null`` included (a page opened from a file); without one, any
    origin may read, but without credentials. Headers a preflight asks for are allowed.
    """
    origin = environ.get("HTTP_ORIGIN")
    headers = [
        ("Access-Control-Allow-Origin", origin or "*"),
        ("Vary", "Origin"),
    ]
    if origin:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")
    if requested:
        headers.append(("Access-Control-Allow-Headers", requested))
    return headers


def cache_for_a_year():
    """Preflight answers and refusals that never change: let browsers keep them."""
    return [
        ("Cache-Control", f"public, max-age={ONE_YEAR}"),
        ("Expires", format_date_time(time.time() + ONE_YEAR)),
    ]


def jsessionid(environ):
    """The ``JSESSIONID`` cookie some load balancers need for sticky sessions.

    It is set on every answer of a session, echoing the client's value (or ``dummy``) so
    that the balancer can attach its own.
    """
    value = "dummy"
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        name, _, cookie = part.strip().partition("=")
        if name == "JSESSIONID" and cookie:
            value = cookie
            break
    return ("Set-Cookie", f"JSESSIONID={value}; path=/")


def respond(start_response, status, headers, body=b""):
    start_response(status, headers)
    return [body]


def not_found(start_response, headers=()):
    return respond(
        start_response, "404 Not Found", [TEXT, *headers], b"404 Error: Page not found\n"
    )


def method_not_allowed(start_response, allowed):
    """405 with neither body nor content type, as sockjs-protocol checks."""
    return respond(start_response, "405 Method Not Allowed", [("Allow", ", ".join(allowed))])


def preflight(start_response, methods, headers):
    """204 to an ``OPTIONS`` request: the methods allowed, and a year of caching."""
    return respond(
        start_response,
        "204 No Content",
        [
            *headers,
            *cache_for_a_year(),
            ("Access-Control-Allow-Methods", ", ".join(methods)),
            ("Access-Control-Max-Age", str(ONE_YEAR)),
        ],
    )
