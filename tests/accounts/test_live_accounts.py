"""Accounts across real servers: a token revoked anywhere closes its connections everywhere."""

import datetime
import time

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from ddp import MeteorError
from ddp.accounts.models import LoginToken
from ddp.testing import ServerProcess, WebSocketDDPClient
from ddp.testing.database import database_url
from tests.testapp.models import Shelf

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def two_servers(start_server):
    """Two servers on the one database, for the tests of what one tells the other; each
    test makes the account it logs in with, and its connections end with the test."""
    return start_server(), start_server()


def test_revoked_token_closes_its_connection_on_another_server(two_servers):
    alice = User.objects.create_user("alice", password="pw")
    Shelf.objects.create(owner=alice, name="hers")
    first, second = two_servers
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


@pytest.mark.parametrize("capture", ["auto", "signals"])
def test_logging_out_keeps_the_connection_open(capture):
    """A logout deletes its own token. With database capture ("auto" here) the logout waits
    for the reader to pass its commit, and the token's revocation arrives meanwhile: it
    must not close the connection that the call is logging out."""
    User.objects.create_user("alice", password="pw")
    with ServerProcess(ddp={"CAPTURE": capture}) as server:
        client = WebSocketDDPClient(server.ws_url)
        client.call("login", {"user": {"username": "alice"}, "password": "pw"})
        client.call("logout")
        assert client.call("test.echo", "still here") == ["still here"]
        client.close()
    assert not LoginToken.objects.exists()


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


def logged_in(server, username="alice", password="pw"):
    client = WebSocketDDPClient(server.ws_url)
    result = client.call("login", {"user": {"username": username}, "password": password})
    return client, result["token"]


def assert_closed(client):
    with pytest.raises(AssertionError, match="closed the connection"):
        client.assert_added("never", "sent")


@pytest.mark.parametrize("change", ["password", "deactivation", "deletion"])
def test_a_new_password_or_the_end_of_an_account_logs_it_out_on_every_server(change, two_servers):
    alice = User.objects.create_user("alice", password="pw")
    first, second = two_servers
    here, token = logged_in(first)
    there, _ = logged_in(second)
    # In this process, as a Django view, the admin or a shell would do it.
    if change == "password":
        alice.set_password("new")
        alice.save()
    elif change == "deactivation":
        alice.is_active = False
        alice.save(update_fields=["is_active"])
    else:
        alice.delete()
    assert_closed(here)
    assert_closed(there)
    again = WebSocketDDPClient(first.ws_url)
    with pytest.raises(MeteorError) as info:
        again.call("login", {"resume": token})
    assert info.value.error == 403
    again.close()


def test_expired_tokens_are_swept_and_their_connections_closed():
    User.objects.create_user("alice", password="pw")
    with ServerProcess(ddp={"SERVER_HEARTBEAT": 0.3}) as server:
        client, token = logged_in(server)
        # An update sends no signal: only the server's sweep can notice.
        LoginToken.objects.update(expires=timezone.now() - datetime.timedelta(seconds=1))
        assert_closed(client)
        assert not LoginToken.objects.exists()


def test_a_revocation_sent_while_the_listener_was_away_is_found_at_its_resync():
    User.objects.create_user("alice", password="pw")
    # Its connections named, so that only its listener is cut (the module's servers run).
    name = "ddp-resync"
    url = database_url({**connection.settings_dict, "OPTIONS": {"application_name": name}})
    with ServerProcess(env={"DATABASE_URL": url}) as server:
        client, token = logged_in(server)
        with connection.cursor() as cursor:
            # Deleted in SQL, no notice: as one sent while the listener was reconnecting.
            cursor.execute("DELETE FROM ddp_accounts_logintoken")
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
                " AND application_name = %s",
                [name],
            )
            assert cursor.fetchall() == [(True,)]
        assert_closed(client)
    assert "Listener reconnected" in server.output()
