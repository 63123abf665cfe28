"""Meteor's accounts methods against django.contrib.auth, through the in-process client."""

import datetime
import hashlib

import pytest
from django.contrib.auth import user_logged_in, user_login_failed
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from ddp import MeteorError
from ddp.accounts.models import LoginToken
from ddp.accounts.tokens import hash_token, mint
from ddp.testing import DDPTestCase
from tests.testapp.hashers import CountingHasher
from tests.testapp.models import Shelf

AMBIGUOUS = "Something went wrong. Please check your credentials."


def digest(password):
    return {"digest": hashlib.sha256(password.encode()).hexdigest(), "algorithm": "sha-256"}


class LoginTests(DDPTestCase):
    def setUp(self):
        self.alice = User.objects.create_user("alice", "alice@example.com", "wonderland")

    def login(self, client, selector=None, password=None):
        password = digest("wonderland") if password is None else password
        return client.call(
            "login", {"user": selector or {"username": "alice"}, "password": password}
        )

    def error_of(self, client, method, *params):
        with pytest.raises(MeteorError) as info:
            client.call(method, *params)
        return info.value.error, info.value.reason

    def test_digest_login_result_and_users_document_before_it(self):
        client = self.ddp_client()
        result = self.login(client)
        assert result["id"] == str(self.alice.pk)
        assert result["type"] == "password"
        assert len(result["token"]) == 43
        assert isinstance(result["tokenExpires"], datetime.datetime)
        kinds = [m["msg"] for m in client.messages]
        assert kinds.index("added") < kinds.index("result")
        client.assert_added(
            "users",
            str(self.alice.pk),
            username="alice",
            emails=[{"address": "alice@example.com", "verified": False}],
        )
        document = client.collection("users")[str(self.alice.pk)]
        assert set(document) == {"username", "emails", "profile"}
        stored = LoginToken.objects.get(user=self.alice)
        assert stored.hashed_token == hash_token(result["token"])
        assert len(stored.hashed_token) == 44

    def test_login_by_email_id_and_plain_text(self):
        for selector in ({"email": "ALICE@example.com"}, {"id": str(self.alice.pk)}):
            assert self.login(self.ddp_client(), selector)["id"] == str(self.alice.pk)
        assert self.login(self.ddp_client(), password="wonderland")["type"] == "password"

    def test_wrong_password_and_unknown_user_look_the_same_and_are_signalled(self):
        failures = []
        user_login_failed.connect(lambda **kw: failures.append(kw["credentials"]), weak=False)
        self.addCleanup(user_login_failed.receivers.clear)
        client = self.ddp_client()
        wrong = self.error_of(
            client, "login", {"user": {"username": "alice"}, "password": digest("x")}
        )
        nobody = self.error_of(
            client, "login", {"user": {"username": "bob"}, "password": digest("x")}
        )
        assert wrong == nobody == (403, AMBIGUOUS)
        assert failures == [{"username": "alice"}, {"username": "bob"}]
        assert client.call("test.whoami")["user_id"] is None
        assert client.collection("users") == {}

    @pytest.mark.filterwarnings("ignore")
    @override_settings(DDP={"RATE_LIMITS": []})  # nine logins on one connection
    def test_malformed_credentials_fail_to_match(self):
        client = self.ddp_client()
        for options in (
            "alice",
            {"user": {"username": "alice"}, "password": 12345},
            {
                "user": {"username": "alice"},
                "password": {"digest": "short", "algorithm": "sha-256"},
            },
            {"user": {"username": "alice"}, "password": {"digest": "a" * 64, "algorithm": "md5"}},
            {"user": {"username": "alice", "email": "a@b.c"}, "password": "x"},
            {"user": {"username": ""}, "password": "x"},
            {"user": {"username": "alice"}, "password": "x" * 257},
            {"resume": 5},
        ):
            assert self.error_of(client, "login", options) == (400, "Match failed"), options
        assert self.error_of(client, "login", {"foo": 1}) == (
            400,
            "Unrecognized options for login request",
        )
        assert not LoginToken.objects.exists()

    def test_plain_made_hash_upgrades_at_the_first_plain_text_login(self):
        bob = User.objects.create(
            username="bob", password=make_password("pw", hasher="pbkdf2_sha256")
        )
        client = self.ddp_client()
        creds = {"user": {"username": "bob"}, "password": digest("pw")}
        assert self.error_of(client, "login", creds) == (403, AMBIGUOUS)
        client.call("login", {"user": {"username": "bob"}, "password": "pw"})
        bob.refresh_from_db()
        assert bob.password.startswith("meteor_pbkdf2_sha256$")
        assert self.ddp_client().call("login", creds)["id"] == str(bob.pk)
        assert bob.check_password("pw")  # Django's own login still works

    def test_bcrypt_sha256_hashes_check_digests_directly(self):
        carol = User.objects.create(
            username="carol", password=make_password("pw", hasher="bcrypt_sha256")
        )
        result = self.ddp_client().call(
            "login", {"user": {"username": "carol"}, "password": digest("pw")}
        )
        assert result["id"] == str(carol.pk)

    def test_resume_keeps_the_token(self):
        token = self.login(self.ddp_client())["token"]
        client = self.ddp_client()
        result = client.call("login", {"resume": token})
        assert (result["id"], result["token"], result["type"]) == (
            str(self.alice.pk),
            token,
            "resume",
        )
        client.assert_added("users", str(self.alice.pk))

    def test_resume_failures(self):
        client = self.ddp_client()
        logged_out = (403, "You've been logged out by the server. Please log in again.")
        assert self.error_of(client, "login", {"resume": "x" * 43}) == logged_out
        token = self.login(self.ddp_client())["token"]
        LoginToken.objects.update(expires=timezone.now() - datetime.timedelta(seconds=1))
        assert self.error_of(client, "login", {"resume": token}) == (
            403,
            "Your session has expired. Please log in again.",
        )
        assert not LoginToken.objects.exists()
        token = self.login(self.ddp_client())["token"]
        self.alice.delete()
        assert self.error_of(client, "login", {"resume": token}) == logged_out

    def test_logout_keeps_the_connection_and_forgets_the_token(self):
        client = self.ddp_client()
        self.login(client)
        client.assert_added("users", str(self.alice.pk))
        assert client.call("logout") is None
        client.assert_removed("users", str(self.alice.pk))
        assert not LoginToken.objects.exists()
        assert not client.closed
        assert client.call("test.whoami")["user_id"] is None

    def test_get_new_token_and_remove_other_tokens_close_other_connections(self):
        assert self.error_of(self.ddp_client(), "getNewToken") == ("You are not logged in.", None)
        first, second = self.ddp_client(), self.ddp_client()
        old = self.login(first)
        self.login(second)
        new = first.call("getNewToken")
        assert set(new) == {"id", "token", "tokenExpires"}
        assert new["token"] != old["token"]
        assert new["tokenExpires"] == old["tokenExpires"]  # same "when" as the current one
        first.call("removeOtherTokens")
        assert LoginToken.objects.get().hashed_token == hash_token(new["token"])
        second.collection("users")  # lets the closing reach it
        assert second.closed and not first.closed

    def test_nothing_runs_as_a_user_once_their_token_is_revoked(self):
        client = self.ddp_client()
        self.login(client)
        LoginToken.objects.filter(user=self.alice).delete()
        self.ddp_bus().flush()  # the notice has arrived; the session has not run since
        client.send({"msg": "method", "id": "after", "method": "test.whoami", "params": []})
        assert client.closed
        assert not [m for m in client.messages if m.get("id") == "after"]

    def test_set_password_closes_the_users_connections(self):
        client = self.ddp_client()
        self.login(client)
        self.alice.set_password("new")
        self.alice.save()
        client.collection("users")
        assert client.closed
        assert not LoginToken.objects.exists()

    def test_a_hash_upgraded_at_login_is_the_same_password_and_revokes_nothing(self):
        bob = User.objects.create(
            username="bob", password=make_password("pw", hasher="pbkdf2_sha256")
        )
        token, _ = mint(bob)
        resumed = self.ddp_client()
        resumed.call("login", {"resume": token})
        self.ddp_client().call("login", {"user": {"username": "bob"}, "password": "pw"})
        bob.refresh_from_db()
        assert bob.password.startswith("meteor_pbkdf2_sha256$")
        resumed.collection("users")
        assert not resumed.closed
        assert LoginToken.objects.filter(user=bob).count() == 2

    def test_saving_an_inactive_user_or_other_fields_revokes_only_when_deactivated(self):
        client = self.ddp_client()
        self.login(client)
        self.alice.first_name = "Alice"
        self.alice.save()
        self.alice.save(update_fields=["last_login"])
        assert LoginToken.objects.exists() and not client.closed
        self.alice.is_active = False
        self.alice.save()
        client.collection("users")
        assert client.closed

    def test_logout_other_clients(self):
        first, second = self.ddp_client(), self.ddp_client()
        self.login(first)
        self.login(second)
        result = first.call("logoutOtherClients")
        assert LoginToken.objects.get().hashed_token == hash_token(result["token"])
        second.collection("users")
        assert second.closed and not first.closed

    def test_create_user_is_refused_unless_allowed(self):
        client = self.ddp_client()
        options = {"username": "dave", "password": digest("pw")}
        assert self.error_of(client, "createUser", options) == (403, "Signups forbidden")
        assert not User.objects.filter(username="dave").exists()

    @override_settings(DDP={"ACCOUNTS_ALLOW_CREATE": True})
    def test_create_user(self):
        client = self.ddp_client()
        result = client.call(
            "createUser",
            {"username": "dave", "email": "dave@example.com", "password": digest("pw")},
        )
        dave = User.objects.get(username="dave")
        assert (result["id"], result["type"]) == (str(dave.pk), "password")
        client.assert_added("users", str(dave.pk), username="dave")
        assert dave.check_password("pw")
        assert self.error_of(client, "createUser", {"username": "ALICE", "password": "pw"}) == (
            403,
            AMBIGUOUS,
        )
        assert self.error_of(client, "createUser", {"password": "pw"}) == (
            400,
            "Need to set a username or email",
        )
        assert User.objects.count() == 2

    @override_settings(
        DDP={"ACCOUNTS_ALLOW_CREATE": True},
        AUTH_PASSWORD_VALIDATORS=[
            {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"}
        ],
    )
    def test_create_user_runs_the_password_validators_and_the_models_rules(self):
        """What a signup form would refuse, createUser refuses: a short plain password,
        a username Django's validator does not allow, an email that is not one."""
        client = self.ddp_client()
        short = {"username": "erin", "password": "pw"}
        code, reason = self.error_of(client, "createUser", short)
        assert code == 400 and "too short" in reason
        bad_name = {"username": "er in!", "password": "a long enough password"}
        code, reason = self.error_of(client, "createUser", bad_name)
        assert code == 400 and "valid username" in reason
        bad_email = {"username": "erin", "email": "erin@", "password": digest("pw")}
        code, reason = self.error_of(client, "createUser", bad_email)
        assert code == 400 and "valid email" in reason
        assert not User.objects.filter(username__startswith="er").exists()
        # A digest hides the password from the validators: only the model's rules apply.
        client.call("createUser", {"username": "erin", "password": digest("pw")})
        assert User.objects.filter(username="erin").exists()

    def test_change_password(self):
        assert self.error_of(self.ddp_client(), "changePassword", "a", "b") == (
            401,
            "Must be logged in",
        )
        client, other = self.ddp_client(), self.ddp_client()
        self.login(client)
        self.login(other)
        assert self.error_of(client, "changePassword", digest("nope"), digest("new")) == (
            403,
            "Incorrect password",
        )
        assert client.call("changePassword", digest("wonderland"), digest("new")) == {
            "passwordChanged": True
        }
        self.alice.refresh_from_db()
        assert self.alice.check_password("new")
        other.collection("users")
        assert other.closed and not client.closed


@override_settings(PASSWORD_HASHERS=["tests.testapp.hashers.CountingHasher"])
class PasswordCostTests(DDPTestCase):
    """What a password check costs, and who may ask for how many."""

    def setUp(self):
        self.alice = User.objects.create_user("alice", "alice@example.com", "wonderland")

    def hashes_of(self, options):
        client = self.ddp_client()
        before = CountingHasher.hashes
        with pytest.raises(MeteorError) as info:
            client.call("login", options)
        assert (info.value.error, info.value.reason) == (403, AMBIGUOUS)
        return CountingHasher.hashes - before

    def test_every_refused_login_costs_one_hash_whoever_it_names(self):
        User.objects.create_user("inactive", password="pw", is_active=False)
        User.objects.create(username="unusable", password=make_password(None))
        # A hash of a hasher this project no longer lists.
        User.objects.create(username="old", password="pbkdf2_sha256$1000$salt$aGFzaA==")
        # Timing must not tell an existing account from a missing one, an inactive one,
        # or one whose hash cannot be checked against what was sent.
        costs = {
            name: self.hashes_of({"user": {"username": name}, "password": password})
            for name, password in (
                ("alice", digest("wrong")),
                ("alice", "wrong"),
                ("nobody", digest("pw")),
                ("nobody", "pw"),
                ("inactive", digest("pw")),
                ("unusable", digest("pw")),
                ("unusable", "pw"),
                ("old", digest("pw")),
            )
        }
        assert set(costs.values()) == {1}, costs

    @override_settings(
        DDP={
            "ACCOUNTS_ALLOW_CREATE": True,
            "RATE_LIMITS": [
                {
                    "match": {"type": "password", "client_address": True},
                    "limit": 3,
                    "interval_ms": 60_000,
                }
            ],
        }
    )
    def test_password_checks_are_limited_per_client_address_across_connections(self):
        creds = {"user": {"username": "alice"}, "password": digest("wonderland")}
        token = self.ddp_client(client_address="10.0.0.1").call("login", creds)["token"]
        logged_in = self.ddp_client(client_address="10.0.0.1")
        logged_in.call("login", {"resume": token})  # no password, no hash: not counted
        logged_in.call("changePassword", digest("wonderland"), digest("wonderland"))
        self.ddp_client(client_address="10.0.0.1").call(
            "createUser", {"username": "bob", "password": digest("pw")}
        )
        for method, params in (
            ("login", (creds,)),
            ("createUser", ({"username": "carol", "password": digest("pw")},)),
            ("changePassword", (digest("wonderland"), digest("new"))),
        ):
            client = (
                logged_in
                if method == "changePassword"
                else self.ddp_client(client_address="10.0.0.1")
            )
            before = CountingHasher.hashes
            with pytest.raises(MeteorError) as info:
                client.call(method, *params)
            assert info.value.error == "too-many-requests", method
            assert CountingHasher.hashes == before  # refused before any hash
        other = self.ddp_client(client_address="10.0.0.2")
        assert other.call("login", creds)["id"] == str(self.alice.pk)

    def test_login_signals_get_a_request_with_the_client_address(self):
        seen = []

        def receiver(request, **kwargs):
            seen.append((request.META["REMOTE_ADDR"], request.META.get("HTTP_USER_AGENT")))

        for signal in (user_login_failed, user_logged_in):
            signal.connect(receiver, weak=False)
            self.addCleanup(signal.disconnect, receiver)
        client = self.ddp_client(client_address="192.0.2.7")
        with pytest.raises(MeteorError):
            client.call("login", {"user": {"username": "alice"}, "password": digest("x")})
        client.call("login", {"user": {"username": "alice"}, "password": digest("wonderland")})
        assert seen == [("192.0.2.7", None), ("192.0.2.7", None)]


class UserAwarePublicationTests(DDPTestCase):
    def setUp(self):
        self.alice = User.objects.create_user("alice", password="pw")
        self.bob = User.objects.create_user("bob", password="pw")
        self.mine = Shelf.objects.create(owner=self.alice, name="alice's")
        self.theirs = Shelf.objects.create(owner=self.bob, name="bob's")

    def test_anonymous_gets_ready_and_login_fills_then_logout_empties(self):
        client = self.ddp_client()
        sub_id = client.subscribe("MyShelves")
        client.assert_no_messages()
        client.call("login", {"user": {"username": "alice"}, "password": "pw"})
        client.assert_added("testapp.shelf", str(self.mine.pk), name="alice's")
        client.assert_ready(sub_id)  # re-sent after the login re-run, before the result
        assert list(client.collection("testapp.shelf")) == [str(self.mine.pk)]
        client.call("logout")
        client.assert_removed("testapp.shelf", str(self.mine.pk))
        assert client.collection("testapp.shelf") == {}

    def test_restriction_holds_for_live_changes(self):
        client = self.ddp_client()
        client.call("login", {"user": {"username": "alice"}, "password": "pw"})
        client.assert_added("users", str(self.alice.pk))
        client.subscribe("MyShelves")
        client.assert_added("testapp.shelf", str(self.mine.pk))
        Shelf.objects.create(owner=self.bob, name="bob's second")
        mine = Shelf.objects.create(owner=self.alice, name="alice's second")
        client.assert_added("testapp.shelf", str(mine.pk))
        self.theirs.owner = self.alice  # given to alice: now hers to see
        self.theirs.save()
        client.assert_added("testapp.shelf", str(self.theirs.pk))
        mine.owner = self.bob
        mine.save()
        client.assert_removed("testapp.shelf", str(mine.pk))
        client.assert_no_messages()
