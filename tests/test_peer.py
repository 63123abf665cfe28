"""The client's address behind proxies (ddp.peer): only trusted proxies' headers count."""

import pytest
from django.test import override_settings

from ddp.peer import client_address, http_headers, request_for

pytestmark = pytest.mark.quick


def environ(remote, forwarded=None):
    env = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        env["HTTP_X_FORWARDED_FOR"] = forwarded
    return env


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_claims():
    assert client_address(environ("198.51.100.4", "203.0.113.9")) == "198.51.100.4"
    assert client_address({}) is None


@override_settings(DDP={"TRUSTED_PROXIES": ["10.0.0.0/8", "::1"]})
@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        # One proxy: the address it saw.
        ("10.1.2.3", "203.0.113.9", "203.0.113.9"),
        # Two of ours: the right-most address they did not add.
        ("10.1.2.3", "203.0.113.9, 10.9.9.9", "203.0.113.9"),
        # A client that sends its own header cannot choose its address.
        ("10.1.2.3", "1.1.1.1, 203.0.113.9", "203.0.113.9"),
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("::ffff:10.1.2.3", "203.0.113.9", "203.0.113.9"),
        # No header, an empty one, or only proxies: the proxy itself.
        ("10.1.2.3", None, "10.1.2.3"),
        ("10.1.2.3", " , ", "10.1.2.3"),
        ("10.1.2.3", "10.4.4.4", "10.1.2.3"),
        # Not a trusted proxy: its header is ignored.
        ("198.51.100.4", "203.0.113.9", "198.51.100.4"),
    ],
)
def test_behind_trusted_proxies_the_forwarded_address_counts(remote, forwarded, expected):
    assert client_address(environ(remote, forwarded)) == expected


def test_shown_headers_are_meteors_list_never_cookies():
    env = {
        "HTTP_USER_AGENT": "Meteor",
        "HTTP_X_REAL_IP": "203.0.113.9",
        "HTTP_COOKIE": "sessionid=secret",
        "HTTP_AUTHORIZATION": "Bearer secret",
    }
    assert http_headers(env) == {"user-agent": "Meteor", "x-real-ip": "203.0.113.9"}


def test_a_request_for_signals_carries_the_address_and_headers():
    request = request_for("203.0.113.9", {"user-agent": "Meteor"})
    assert request.META["REMOTE_ADDR"] == "203.0.113.9"
    assert request.META["HTTP_USER_AGENT"] == "Meteor"
