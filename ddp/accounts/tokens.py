"""Resume tokens: minted at login, stored hashed, expiring, revocable (PROTOCOL.md A7-A12)."""

import base64
import datetime
import hashlib
import secrets

from django.utils import timezone

from ddp import MeteorError
from ddp.api import CommittedError
from ddp.conf import ddp_settings

LOGGED_OUT = "You've been logged out by the server. Please log in again."
EXPIRED = "Your session has expired. Please log in again."


def hash_token(token):
    """Meteor's ``hashedToken``: standard base64 of the SHA-256 of the token (44 chars)."""
    return base64.b64encode(hashlib.sha256(token.encode()).digest()).decode()


def mint(user, when=None):
    """A new token for ``user``: ``(token, row)``; only its hash is stored."""
    from ddp.accounts.models import LoginToken

    # Meteor's Random.secret(): 43 characters of [a-zA-Z0-9_-].
    token = secrets.token_urlsafe(32)
    when = when or timezone.now()
    days = ddp_settings.ACCOUNTS_TOKEN_DAYS
    expires = when + datetime.timedelta(days=days if days is not None else 365 * 100)
    row = LoginToken.objects.create(
        user=user, hashed_token=hash_token(token), when=when, expires=expires
    )
    return token, row


def resume(token):
    """The stored row of ``token``; a 403 Meteor error when unknown, revoked or expired."""
    from ddp.accounts.models import LoginToken

    if not isinstance(token, str) or not token:
        raise MeteorError(400, "Match failed")
    row = LoginToken.objects.select_related("user").filter(hashed_token=hash_token(token)).first()
    if row is None or not row.user.is_active:
        raise MeteorError(403, LOGGED_OUT)
    if row.expires <= timezone.now():
        row.delete()
        raise CommittedError(403, EXPIRED)  # the expired token stays deleted
    return row


#: Expired tokens one :func:`sweep` deletes at most: each is a notice on the bus.
SWEEP_BATCH = 1000


def sweep():
    """Delete expired tokens (each deletion closes the connections that used it).

    ``ddpserver`` calls it at each registry heartbeat, at most :data:`SWEEP_BATCH` at a time.
    """
    from ddp.accounts.models import LoginToken

    expired = LoginToken.objects.filter(expires__lte=timezone.now()).order_by("expires")
    ids = list(expired.values_list("pk", flat=True)[:SWEEP_BATCH])
    if ids:
        LoginToken.objects.filter(pk__in=ids).delete()


def valid(hashes):
    """Those of the token ``hashes`` that are stored and not expired."""
    from ddp.accounts.models import LoginToken

    return set(
        LoginToken.objects.filter(hashed_token__in=hashes, expires__gt=timezone.now()).values_list(
            "hashed_token", flat=True
        )
    )


def password_changed(user, keep=None):
    """Tell the next save of ``user`` that it carries a new password hash made without
    ``set_password()`` (which tells it by itself); ``keep``: a token hash to spare, as
    Meteor's ``changePassword`` spares the connection that changes the password."""
    user._ddp_new_password = True
    user._ddp_kept_token = keep


def revoke_on_credentials(sender, instance, created=False, raw=False, update_fields=None, **kw):
    """``post_save`` of the user model: a new password or a deactivation ends every session.

    As Meteor does on a password change. The user's tokens are deleted in the save's
    transaction; each deletion closes the connections riding on it, on every server, once
    it commits. A new password is one given with ``set_password()`` (Django keeps it in
    ``_password`` until the save is over) or marked by :func:`password_changed`; a hash
    Django upgrades at a login is the same password and revokes nothing.
    """
    from ddp.accounts.models import LoginToken

    new_password = instance.__dict__.pop("_ddp_new_password", False) or (
        getattr(instance, "_password", None) is not None
    )
    kept = instance.__dict__.pop("_ddp_kept_token", None)
    if raw or created:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return
    if new_password or not getattr(instance, "is_active", True):
        LoginToken.objects.filter(user=instance).exclude(hashed_token=kept).delete()


def announce_revoked(sender, instance, using, **kwargs):
    """A deleted token closes its connections on every server, once its deletion commits."""
    from ddp.bus import producer

    producer.revoke_token(instance.hashed_token, using)
