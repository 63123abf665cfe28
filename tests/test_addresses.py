"""The client's address: REMOTE_ADDR, or X-Forwarded-For from a trusted proxy only."""

import pytest
from django.test import override_settings

from ddp.addresses import client_address

pytestmark = pytest.mark.quick


def environ(remote, forwarded=None):
    env = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        env["HTTP_X_FORWARDED_FOR"] = forwarded
    return env


def test_without_trusted_proxies_the_header_is_ignored():
    assert client_address(environ("10.0.0.2", "1.2.3.4")) == "10.0.0.2"


@override_settings(DDP={"TRUSTED_PROXIES": ["10.0.0.0/24", "::1"]})
@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        # One proxy: the address it saw.
        ("10.0.0.2", "1.2.3.4", "1.2.3.4"),
        # What the client claimed comes first; the last untrusted address is the client.
        ("10.0.0.2", "6.6.6.6, 1.2.3.4", "1.2.3.4"),
        # Two proxies of ours in a row.
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.9", "1.2.3.4"),
        ("::1", " 1.2.3.4 ", "1.2.3.4"),
        ("::ffff:10.0.0.2", "1.2.3.4", "1.2.3.4"),
        # A trusted proxy that forwarded nothing is the client itself.
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "", "10.0.0.2"),
        # Anyone else's header is not believed.
        ("10.0.1.2", "1.2.3.4", "10.0.1.2"),
    ],
)
def test_a_trusted_proxy_names_the_client(remote, forwarded, client):
    assert client_address(environ(remote, forwarded)) == client
