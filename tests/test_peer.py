"""What a connection shows of its client (ddp.peer): some headers, never its cookies."""

import pytest

from ddp.peer import http_headers, request_for

pytestmark = pytest.mark.quick


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
