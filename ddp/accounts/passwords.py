"""Checking Meteor's password digests against Django's password hashes.

A Meteor client never sends the password: it sends ``SHA256(password)`` as 64 lowercase
hex digits (PROTOCOL.md A1). A digest can be checked against a Django hash only if that
hash was made from the same digest:

* ``BCryptSHA256PasswordHasher`` (``bcrypt_sha256$``) hashes exactly that digest, so it
  checks directly (and Meteor's own ``$2b$`` hashes import as ``bcrypt_sha256$<hash>``);
* :class:`MeteorPBKDF2PasswordHasher` (``meteor_pbkdf2_sha256$``) is Django's default
  PBKDF2 over the digest instead of the password. Put it first in ``PASSWORD_HASHERS``:
  Django's own login pages keep working (it digests what they are given), and Django
  re-hashes every older hash with it at that user's next plain-text login.

A hash made from the plain password (Django's default ``pbkdf2_sha256$``, argon2,
scrypt) cannot be checked against a digest: such a user logs in once with the password
in plain text (Django's login or admin page, or a DDP client sending the password as a
string), which upgrades the hash, and from then on Meteor clients work.
"""

import hashlib

from django.contrib.auth.hashers import (
    PBKDF2PasswordHasher,
    get_hasher,
    identify_hasher,
    is_password_usable,
)
from django.utils.crypto import constant_time_compare

#: What Meteor sends for a password: SHA-256, lowercase hex.
DIGEST_ALGORITHM = "sha-256"


def digest_of(password):
    return hashlib.sha256(password.encode()).hexdigest()


class MeteorPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2, over the SHA-256 hex digest of the password."""

    algorithm = "meteor_pbkdf2_sha256"

    def encode(self, password, salt, iterations=None):
        return self.encode_digest(digest_of(password), salt, iterations)

    def encode_digest(self, digest, salt, iterations=None):
        return super().encode(digest, salt, iterations)

    def verify_digest(self, digest, encoded):
        decoded = self.decode(encoded)
        again = self.encode_digest(digest, decoded["salt"], decoded["iterations"])
        return constant_time_compare(encoded, again)


def hasher_of(encoded):
    """The configured hasher that made ``encoded`` (possibly None); None if there is none:
    no hash, an unusable one, or one of a hasher no longer in ``PASSWORD_HASHERS``."""
    if not encoded or not is_password_usable(encoded):
        return None
    try:
        return identify_hasher(encoded)
    except ValueError:
        return None


def check_digest(encoded, digest):
    """Whether the Meteor ``digest`` matches the password hash ``encoded`` (see above).

    None when ``encoded`` (possibly None) cannot be checked against a digest at all.
    """
    hasher = hasher_of(encoded)
    if hasher is None:
        return None
    if isinstance(hasher, MeteorPBKDF2PasswordHasher):
        return hasher.verify_digest(digest, encoded)
    if hasher.algorithm == "bcrypt_sha256":
        bcrypt = hasher._load_library()
        data = encoded.split("$", 1)[1]
        return bcrypt.checkpw(digest.encode(), data.encode())
    return None


def can_store_digests():
    """Whether the preferred hasher can hash a digest we only ever see as a digest."""
    return get_hasher().algorithm in (MeteorPBKDF2PasswordHasher.algorithm, "bcrypt_sha256")


def hash_digest(digest):
    """The password hash for the Meteor ``digest``, by the preferred hasher.

    Raises ValueError if that hasher cannot hash a digest (see ``ddp.accounts.checks``).
    """
    hasher = get_hasher()
    if isinstance(hasher, MeteorPBKDF2PasswordHasher):
        return hasher.encode_digest(digest, hasher.salt())
    if hasher.algorithm == "bcrypt_sha256":
        bcrypt = hasher._load_library()
        data = bcrypt.hashpw(digest.encode(), bcrypt.gensalt(hasher.rounds))
        return f"{hasher.algorithm}${data.decode()}"
    raise ValueError("The first PASSWORD_HASHERS entry cannot store a password digest")
