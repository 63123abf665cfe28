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


def sweep():
    """Delete expired tokens (each deletion closes the connections that used it)."""
    from ddp.accounts.models import LoginToken

    LoginToken.objects.filter(expires__lte=timezone.now()).delete()


def announce_revoked(sender, instance, using, **kwargs):
    """A deleted token closes its connections on every server, once its deletion commits."""
    from ddp.bus import producer

    producer.revoke_token(instance.hashed_token, using)
