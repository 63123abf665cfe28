"""Meteor's accounts methods and the ``users`` document (PROTOCOL.md section 13).

Every failure a client can cause is a ``Meteor.Error`` with Meteor's wording. Wrong
credentials get one answer whether the user or the password was wrong (Meteor 3's
ambiguous message), and send Django's ``user_login_failed`` so that throttling and audit
tools see them: that error is raised as a :class:`~ddp.api.CommittedError`, so their
records are not rolled back with the method.
"""

from django.contrib.auth import get_user_model, user_logged_in, user_login_failed
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import password_changed, validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from ddp import MeteorError
from ddp.accounts import hashing, tokens
from ddp.accounts.models import LoginToken
from ddp.accounts.passwords import DIGEST_ALGORITHM, hash_digest
from ddp.api import API, CommittedError
from ddp.conf import ddp_settings
from ddp.peer import request_for
from ddp.ratelimit import refuse, shared_rate_limiter

AMBIGUOUS = "Something went wrong. Please check your credentials."
NOT_LOGGED_IN = "You are not logged in."
#: Meteor intends a 256-character limit on plain-text passwords (A2); so do we.
MAX_PASSWORD = 256


def match_failed():
    return MeteorError(400, "Match failed")


def user_document(user):
    """The ``users`` document of ``user``: never the password hash or staff flags."""
    model = type(user)
    email = getattr(user, model.get_email_field_name(), "") or ""
    name = user.get_full_name() if hasattr(user, "get_full_name") else ""
    fields = {
        "username": user.get_username(),
        "emails": [{"address": email, "verified": False}] if email else [],
        "profile": {"name": name} if name else {},
    }
    return "users", str(user.pk), fields


API.user_document = user_document


def _selector(value):
    """``{id|username|email: non-empty string}``, exactly one key (A2)."""
    if not isinstance(value, dict) or len(value) != 1:
        raise match_failed()
    ((kind, text),) = value.items()
    if kind not in ("id", "username", "email") or not isinstance(text, str) or not text:
        raise match_failed()
    return kind, text


def _password(value):
    """``("plain", text)`` or ``("digest", hex)``; anything else fails to match (A2)."""
    if isinstance(value, str) and 0 < len(value) <= MAX_PASSWORD:
        return "plain", value
    if (
        isinstance(value, dict)
        and isinstance(value.get("digest"), str)
        and len(value["digest"]) == 64
        and value.get("algorithm") == DIGEST_ALGORITHM
    ):
        return "digest", value["digest"].lower()
    raise match_failed()


def _find_user(kind, text):
    """Exact match first, then a case-insensitive one only if it is unique (A23)."""
    model = get_user_model()
    manager = model._default_manager
    if kind == "id":
        try:
            return manager.filter(pk=text).first()
        except (ValueError, ValidationError):
            return None
    field = model.USERNAME_FIELD if kind == "username" else model.get_email_field_name()
    user = manager.filter(**{field: text}).first()
    if user is None:
        candidates = list(manager.filter(**{f"{field}__iexact": text})[:2])
        user = candidates[0] if len(candidates) == 1 else None
    return user


def _check_allowed(this, method):
    """Refuse a password check over the ``"password"`` rate limits (per address, by default).

    Each check costs a password hash, the most expensive thing a client can ask for, and a
    client that opens connection after connection escapes the per-connection rule.
    """
    error = refuse("password", method, this, shared_rate_limiter(ddp_settings.RATE_LIMITS))
    if error is not None:
        raise error


def _password_matches(user, kind, secret):
    """Whether ``secret`` is ``user``'s password (``user`` may be None): one hash's time.

    A matching hash made by an older hasher is made again, as Django's login does.
    """
    encoded = user.password if user is not None else None
    matches, stale = hashing.run(hashing.verify, kind, secret, encoded)
    if matches and stale:
        user.password = hashing.run(make_password, secret)
        user.save(update_fields=["password"])
    return matches


def _hash(kind, secret):
    """The hash to store for ``secret``: 400 if only a digest came and none can be stored."""
    if kind == "plain":
        return hashing.run(make_password, secret)
    try:
        return hashing.run(hash_digest, secret)
    except ValueError:
        raise MeteorError(400, "This server cannot store password digests") from None


def _request(this):
    """A request for Django's login signals, with the client's address (django-axes...)."""
    return request_for(this.client_address, this.http_headers)


def _logged_in(this, user, row, token, kind):
    this.set_user(user, row.hashed_token)
    user_logged_in.send(sender=type(user), request=_request(this), user=user)
    result = {"id": str(user.pk), "token": token, "tokenExpires": row.expires}
    if kind is not None:
        result["type"] = kind
    return result


@API.method("login")
def login(this, options):
    if not isinstance(options, dict):
        raise match_failed()
    if "resume" in options:
        row = tokens.resume(options["resume"])
        return _logged_in(this, row.user, row, options["resume"], "resume")
    if "password" in options:
        kind, text = _selector(options.get("user"))
        password_kind, secret = _password(options["password"])
        _check_allowed(this, "login")
        user = _find_user(kind, text)
        # The password is checked first: an inactive user costs what a wrong password does.
        if not _password_matches(user, password_kind, secret) or not user.is_active:
            user_login_failed.send(
                sender=__name__, credentials={kind: text}, request=_request(this)
            )
            raise CommittedError(403, AMBIGUOUS)
        token, row = tokens.mint(user)
        return _logged_in(this, user, row, token, "password")
    raise MeteorError(400, "Unrecognized options for login request")


@API.method("logout")
def logout(this):
    token_hash = this.login_token
    this.set_user(None)
    if token_hash is not None:
        LoginToken.objects.filter(hashed_token=token_hash).delete()


def _current(this):
    if this.user_id is None or this.login_token is None:
        raise MeteorError(NOT_LOGGED_IN)
    row = LoginToken.objects.filter(hashed_token=this.login_token).first()
    if row is None:
        raise MeteorError(NOT_LOGGED_IN)
    return row


@API.method("getNewToken")
def get_new_token(this):
    current = _current(this)
    token, row = tokens.mint(this.user, when=current.when)
    return _logged_in(this, this.user, row, token, None)


@API.method("removeOtherTokens")
def remove_other_tokens(this):
    current = _current(this)
    LoginToken.objects.filter(user=this.user).exclude(pk=current.pk).delete()


@API.method("logoutOtherClients")
def logout_other_clients(this):
    """The single method Meteor had before 2.3: a new token, every other one revoked."""
    current = _current(this)
    token, row = tokens.mint(this.user, when=current.when)
    LoginToken.objects.filter(user=this.user).exclude(pk=row.pk).delete()
    return _logged_in(this, this.user, row, token, None)


def _valid(check):
    """Run a Django validation; its messages become a Meteor ``400`` for the client."""
    try:
        check()
    except ValidationError as exc:
        raise MeteorError(400, " ".join(exc.messages)) from None


@API.method("createUser")
def create_user(this, options):
    if not ddp_settings.ACCOUNTS_ALLOW_CREATE:
        raise MeteorError(403, "Signups forbidden")
    if not isinstance(options, dict):
        raise match_failed()
    username, email = options.get("username"), options.get("email")
    if not (isinstance(username, str) and username) and not (isinstance(email, str) and email):
        raise MeteorError(400, "Need to set a username or email")
    if "password" not in options:
        raise match_failed()
    password_kind, secret = _password(options["password"])
    _check_allowed(this, "createUser")
    model = get_user_model()
    email_field = model.get_email_field_name()
    username = username or email
    if _find_user("username", username) is not None or (email and _find_user("email", email)):
        raise MeteorError(403, AMBIGUOUS)
    user = model(**{model.USERNAME_FIELD: username, email_field: email or ""})
    if password_kind == "plain":
        # AUTH_PASSWORD_VALIDATORS can judge only a password they see: a digest, which
        # Meteor's client sends, hides it from them.
        _valid(lambda: validate_password(secret, user))
    user.password = _hash(password_kind, secret)
    # The model's own rules, as a form would check them: the username's characters, the
    # email's form, the lengths; and uniqueness once more.
    _valid(user.full_clean)
    try:
        user.save()
    except IntegrityError:
        raise MeteorError(403, AMBIGUOUS) from None
    if password_kind == "plain":
        password_changed(secret, user)  # what set_password() would have had save() do
    token, row = tokens.mint(user)
    return _logged_in(this, user, row, token, "password")


@API.method("changePassword")
def change_password(this, old_password, new_password):
    if this.user_id is None:
        raise MeteorError(401, "Must be logged in")
    old_kind, old_secret = _password(old_password)
    new_kind, new_secret = _password(new_password)
    _check_allowed(this, "changePassword")
    user = this.user
    if not _password_matches(user, old_kind, old_secret):
        raise MeteorError(403, "Incorrect password")
    user.password = _hash(new_kind, new_secret)
    # The save revokes every other token of the user, as Meteor's changePassword does.
    tokens.password_changed(user, keep=this.login_token)
    user.save(update_fields=["password"])
    if new_kind == "plain":
        password_changed(new_secret, user)
    return {"passwordChanged": True}
