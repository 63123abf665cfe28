"""Who is at the other end of a request: the client's address, behind proxies or not.

Behind a reverse proxy, ``REMOTE_ADDR`` is the proxy's address, and the client's is in
the ``X-Forwarded-For`` the proxy adds. Anyone can send that header too, so it is read
only from proxies that ``DDP["TRUSTED_PROXIES"]`` lists: the client is the last address
in it that is not itself a trusted proxy (each proxy appends the address it saw).
Every place that looks at the client's address (log lines, the SockJS session check,
``DDP["METRICS_ALLOWED"]``) asks :func:`client_address`.

Entries of both settings are addresses (``"10.0.0.7"``, ``"::1"``) or networks in CIDR
form (``"10.0.0.0/8"``), as :mod:`ipaddress` reads them.
"""

import functools
import ipaddress

from ddp.conf import ddp_settings


def networks(entries):
    """The networks ``entries`` name; ValueError (saying which) for one that is none."""
    return _networks(tuple(entries))


@functools.lru_cache(maxsize=16)
def _networks(entries):
    # Read on every request; parsed once per distinct setting.
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def within(address, nets):
    """Whether ``address`` (text) is in one of ``nets``; never for what is no address."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:10.0.0.7 on a dual stack
        ip = ip.ipv4_mapped
    return any(ip in net for net in nets)


def client_address(environ):
    """The address of the client that sent the request ``environ`` (a WSGI environ)."""
    remote = environ.get("REMOTE_ADDR", "")
    proxies = ddp_settings.TRUSTED_PROXIES
    if not proxies:
        return remote
    trusted = networks(proxies)
    if not within(remote, trusted):
        return remote
    address = remote
    for hop in reversed(environ.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        if not hop.strip():
            continue
        address = hop.strip()
        if not within(address, trusted):
            break
    return address
