"""A password hasher that counts the hashes it computes, for tests of what a check costs."""

from ddp.accounts.passwords import MeteorPBKDF2PasswordHasher


class CountingHasher(MeteorPBKDF2PasswordHasher):
    """Meteor's PBKDF2 with few iterations; ``hashes`` counts every PBKDF2 run, by any path
    (checking a password, checking a digest, making a hash)."""

    iterations = 1_000
    hashes = 0

    def encode_digest(self, digest, salt, iterations=None):
        type(self).hashes += 1
        return super().encode_digest(digest, salt, iterations)
