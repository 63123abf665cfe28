"""System checks of ``ddp.accounts``."""

from django.core.checks import Warning, register


@register("ddp")
def check_password_hasher(app_configs=None, **kwargs):
    """``ddp.W001``: Meteor clients send password digests; the first hasher should keep them."""
    from ddp.accounts.passwords import can_store_digests

    if can_store_digests():
        return []
    return [
        Warning(
            "Meteor clients log in with a SHA-256 digest of the password, which the first "
            "PASSWORD_HASHERS entry cannot check or store.",
            hint="Put 'ddp.accounts.passwords.MeteorPBKDF2PasswordHasher' first in "
            "PASSWORD_HASHERS (existing hashes upgrade at the next plain-text login).",
            id="ddp.W001",
        )
    ]
