"""Accounts across real servers: a token revoked anywhere closes its connections everywhere."""

import time

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


def test_a_password_being_checked_does_not_stop_other_clients():
    # A stored hash of 12 times Django's iterations: seconds of CPU for one wrong password
    # (the test never makes it, so it costs nothing here).
    User.objects.create(username="slow", password="pbkdf2_sha256$12000000$salt$aGFzaA==")
    with ServerProcess() as server:
        login = WebSocketDDPClient(server.ws_url, timeout=60)
        bystander = WebSocketDDPClient(server.ws_url, timeout=1.5)
        login.send(
            {
                "msg": "method",
                "id": "slow",
                "method": "login",
                "params": [{"user": {"username": "slow"}, "password": "wrong"}],
            }
        )
        time.sleep(0.3)  # the server is hashing now
        for n in range(3):
            bystander.send({"msg": "ping", "id": str(n)})
            bystander._wait(lambda m, n=n: m == {"msg": "pong", "id": str(n)}, "pong")
        assert bystander.call("test.echo", "meanwhile") == ["meanwhile"]
        result = login._wait(lambda m: m.get("msg") == "result", "the login's result")
        assert result["error"]["error"] == 403
        login.close()
        bystander.close()
