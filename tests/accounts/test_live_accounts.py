"""Accounts across real servers: a token revoked anywhere closes its connections everywhere."""

import pytest
from django.contrib.auth.models import User

from ddp.testing import ServerProcess, WebSocketDDPClient
from tests.testapp.models import Shelf

pytestmark = pytest.mark.django_db(transaction=True)


def test_revoked_token_closes_its_connection_on_another_server():
    alice = User.objects.create_user("alice", password="pw")
    Shelf.objects.create(owner=alice, name="hers")
    with ServerProcess() as first, ServerProcess() as second:
        here = WebSocketDDPClient(first.ws_url)
        there = WebSocketDDPClient(second.ws_url)
        there.subscribe("MyShelves")
        there.call("login", {"user": {"username": "alice"}, "password": "pw"})
        assert len(there.collection("testapp.shelf")) == 1
        here.call("login", {"user": {"username": "alice"}, "password": "pw"})
        here.call("removeOtherTokens")
        with pytest.raises(AssertionError, match="closed the connection"):
            there.assert_added("never", "sent")
        # The connection that revoked the others goes on.
        assert here.call("test.echo", "still here") == ["still here"]
        here.close()
